//! Bidirectional (non-causal) linear attention: `out = ΦQ (ΦKᵀ V) / (ΦQ (ΦKᵀ 1) + ε)`.
//!
//! Forward: one pass over the keys builds `KV: [m, dv]`, `kz: [m]` in float64 (FAVOR+ with a
//! running offset, rescaled when a chunk raises it), one pass over the queries writes `out`.
//! Backward (`=` into `dq, dk, dv`): the key pass again, a query pass that emits `dq` and sums
//! `KV_g = Σ φq gNᵀ`, `kz_g = Σ gD φq`, and a key pass that emits `dk`, `dv`.

use super::chunk::{feature_map, rescale, Work};
use super::{head_slices, FeatureArgs, Qkv};
use crate::dims::{Dims, Feature};
use crate::feature_map::FeatureMap;
use crate::matmul::{gemm, transpose, Tri, View};
use crate::simd;

pub fn bidirectional_forward(dims: &Dims, f: &FeatureArgs, x: Qkv, out: &mut [f32]) {
    let mut w = Work::new(dims);
    let mut omega_t = vec![0f32; dims.d * dims.m];
    let mut kv = Summary::new(dims);
    for i in 0..dims.bh {
        let (rq, rv) = head_slices(dims, i);
        let fm = feature_map(f, dims, i, &mut omega_t);
        kv.build(dims, &fm, &mut w, &x.k[rq.clone()], &x.v[rv.clone()]);
        let (t, d, dv, c) = (dims.t, dims.d, dims.dv, dims.c());
        let (q, o) = (&x.q[rq], &mut out[rv]);
        for t0 in (0..t).step_by(c) {
            let n = c.min(t - t0);
            query_chunk(&fm, &mut w, n, &q[t0 * d..], f.eps, &mut o[t0 * dv..(t0 + n) * dv]);
        }
    }
}

pub fn bidirectional_backward(
    dims: &Dims,
    f: &FeatureArgs,
    x: Qkv,
    d_out: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv_out: &mut [f32],
) {
    let (t, d, m, dv, c) = (dims.t, dims.d, dims.m, dims.dv, dims.c());
    let mut w = Work::new(dims);
    let mut omega_t = vec![0f32; d * m];
    let mut kv = Summary::new(dims);
    let mut o = vec![0f32; c * dv];
    let mut gn = vec![0f32; c * dv];
    let mut gd = vec![0f32; c];
    let mut dph = vec![0f32; c * m];
    let mut tr = vec![0f32; dv.max(c) * m];
    let mut kvg = vec![0f64; m * dv];
    let mut kzg = vec![0f64; m];
    for i in 0..dims.bh {
        let (rq, rv) = head_slices(dims, i);
        let fm = feature_map(f, dims, i, &mut omega_t);
        let (q, k, v, g) = (&x.q[rq.clone()], &x.k[rq.clone()], &x.v[rv.clone()], &d_out[rv.clone()]);
        let (dqh, dkh, dvh) = (&mut dq[rq.clone()], &mut dk[rq], &mut dv_out[rv]);
        kv.build(dims, &fm, &mut w, k, v);
        kvg.fill(0.0);
        kzg.fill(0.0);
        transpose(m, dv, &w.s32, dv, &mut tr);
        for t0 in (0..t).step_by(c) {
            let n = c.min(t - t0);
            query_chunk(&fm, &mut w, n, &q[t0 * d..], f.eps, &mut o);
            for r in 0..n {
                let den = w.den[r];
                if den == 0.0 {
                    gn[r * dv..(r + 1) * dv].fill(0.0);
                    gd[r] = 0.0;
                    continue;
                }
                let inv = 1.0 / (den + f.eps);
                let gi = &g[(t0 + r) * dv..(t0 + r + 1) * dv];
                for (x, &y) in gn[r * dv..(r + 1) * dv].iter_mut().zip(gi) {
                    *x = y * inv;
                }
                gd[r] = -simd::dot(gi, &o[r * dv..(r + 1) * dv]) * inv;
            }
            // ∂ΦQ = GN KVᵀ + gD kzᵀ
            gemm(n, m, dv, View { data: &gn, ld: dv }, View { data: &tr, ld: m }, &mut dph, m, false, Tri::Full);
            for r in 0..n {
                simd::axpy(&mut dph[r * m..(r + 1) * m], gd[r], &w.z32);
            }
            // KV_g += ΦQᵀ GN, kz_g += ΦQᵀ gD (before the feature backward reuses nothing of ΦQ)
            transpose(n, m, &w.phq, m, &mut w.kt);
            gemm(m, dv, n, View { data: &w.kt, ld: n }, View { data: &gn, ld: dv }, &mut w.delta, dv, false, Tri::Full);
            for (a, &b) in kvg.iter_mut().zip(&w.delta) {
                *a += b as f64;
            }
            for (rr, a) in kzg.iter_mut().enumerate() {
                *a += (0..n).map(|r| w.phq[r * m + rr] * gd[r]).sum::<f32>() as f64;
            }
            fm.backward(n, &q[t0 * d..], &w.uq, &w.phq, &mut dph, &mut dqh[t0 * d..(t0 + n) * d]);
        }
        let kvg32: Vec<f32> = kvg.iter().map(|&x| x as f32).collect();
        let kzg32: Vec<f32> = kzg.iter().map(|&x| x as f32).collect();
        transpose(m, dv, &kvg32, dv, &mut tr);
        for t0 in (0..t).step_by(c) {
            let n = c.min(t - t0);
            fm.project(n, &k[t0 * d..], &mut w.uk);
            w.phk[..n * m].copy_from_slice(&w.uk[..n * m]);
            fm.keys_at(n, &mut w.phk, kv.offset);
            // ∂ΦK = V KV_gᵀ + 1 kz_gᵀ, ∂V = ΦK KV_g
            gemm(
                n,
                m,
                dv,
                View { data: &v[t0 * dv..], ld: dv },
                View { data: &tr, ld: m },
                &mut dph,
                m,
                false,
                Tri::Full,
            );
            for r in 0..n {
                simd::axpy(&mut dph[r * m..(r + 1) * m], 1.0, &kzg32);
            }
            let dvc = &mut dvh[t0 * dv..(t0 + n) * dv];
            gemm(n, dv, m, View { data: &w.phk, ld: m }, View { data: &kvg32, ld: dv }, dvc, dv, false, Tri::Full);
            fm.backward(n, &k[t0 * d..], &w.uk, &w.phk, &mut dph, &mut dkh[t0 * d..(t0 + n) * d]);
        }
    }
}

/// `KV`, `kz` of one slice in float64, their float32 copies in `w.s32`, `w.z32`, and the
/// FAVOR+ offset they are expressed in.
struct Summary {
    kv: Vec<f64>,
    kz: Vec<f64>,
    offset: f32,
}

impl Summary {
    fn new(dims: &Dims) -> Summary {
        Summary { kv: vec![0.0; dims.m * dims.dv], kz: vec![0.0; dims.m], offset: 0.0 }
    }

    fn build(&mut self, dims: &Dims, fm: &FeatureMap, w: &mut Work, k: &[f32], v: &[f32]) {
        let (t, d, m, dv, c) = (dims.t, dims.d, dims.m, dims.dv, dims.c());
        self.kv.fill(0.0);
        self.kz.fill(0.0);
        let favor = fm.kind == Feature::Favor;
        self.offset = if favor { f32::NEG_INFINITY } else { 0.0 };
        for t0 in (0..t).step_by(c) {
            let n = c.min(t - t0);
            fm.project(n, &k[t0 * d..], &mut w.phk);
            let new = if favor { self.offset.max(fm.max_logit(n, &w.phk)) } else { 0.0 };
            fm.keys_at(n, &mut w.phk, new);
            transpose(n, m, &w.phk, m, &mut w.kt);
            gemm(
                m,
                dv,
                n,
                View { data: &w.kt, ld: n },
                View { data: &v[t0 * dv..], ld: dv },
                &mut w.delta,
                dv,
                false,
                Tri::Full,
            );
            let r = rescale(self.offset as f64, new as f64);
            for (a, &b) in self.kv.iter_mut().zip(&w.delta) {
                *a = *a * r + b as f64;
            }
            for (rr, a) in self.kz.iter_mut().enumerate() {
                *a = *a * r + w.kt[rr * n..(rr + 1) * n].iter().sum::<f32>() as f64;
            }
            self.offset = new;
        }
        for (a, &b) in w.s32.iter_mut().zip(&self.kv) {
            *a = b as f32;
        }
        for (a, &b) in w.z32.iter_mut().zip(&self.kz) {
            *a = b as f32;
        }
    }
}

/// `out = ΦQ KV / (ΦQ kz + ε)` for `n` query rows (features left in `w.uq`/`w.phq`, the
/// denominators in `w.den`).
fn query_chunk(fm: &FeatureMap, w: &mut Work, n: usize, q: &[f32], eps: f32, out: &mut [f32]) {
    let (m, dv) = (w.m, w.dv);
    fm.project(n, q, &mut w.uq);
    w.phq[..n * m].copy_from_slice(&w.uq[..n * m]);
    fm.queries(n, &mut w.phq);
    gemm(n, dv, m, View { data: &w.phq, ld: m }, View { data: &w.s32, ld: dv }, &mut w.num, dv, false, Tri::Full);
    for r in 0..n {
        let den = simd::dot(&w.phq[r * m..(r + 1) * m], &w.z32);
        w.den[r] = den;
        let o = &mut out[r * dv..(r + 1) * dv];
        if den == 0.0 {
            o.fill(0.0);
        } else {
            let inv = 1.0 / (den + eps);
            for (x, &y) in o.iter_mut().zip(&w.num[r * dv..(r + 1) * dv]) {
                *x = y * inv;
            }
        }
    }
}

//! Fused chunked causal backward: walks the chunks in reverse.
//!
//! Reads `q, k, v`, the input state (or none), the forward's output state (and, optionally,
//! its output `[bh, t, dv]`, which saves recomputing it), `d_out: [bh, t, dv]`
//! and the gradient of the output state (or none: zero). Writes (`=`) `dq, dk: [bh, t, d]`,
//! `dv: [bh, t, dv]` and the gradient of the input state `[bh, m, dv]`, `[bh, m]`.
//! Each chunk's start state is rebuilt from its end state by float64 subtraction of the chunk's
//! recomputed increment; when FAVOR+ raised the offset by more than `MAX_RAISE` in that chunk
//! the start state is recomputed from the input state instead. Then features, `A`, `out` and
//! `den` are recomputed and the gradients emitted (formulas in `README.md`).

use super::causal_forward::apply_increment;
use super::chunk::{
    attend, denominators, feature_map, increment, key_offset_after, load_state, mask_frames, narrow, prepare,
    prepare_keys, rescale, Work,
};
use super::{head_slices, FeatureArgs, Qkv, State};
use crate::dims::{Dims, Feature};
use crate::feature_map::FeatureMap;
use crate::matmul::{gemm, transpose, Tri, View};
use crate::simd;

/// Largest offset raise (in nats) within one chunk that is undone by subtraction: dividing by
/// `exp(−raise)` multiplies the float64 rounding of the end state by up to `e^10 ≈ 2·10⁴`.
pub(crate) const MAX_RAISE: f64 = 10.0;

/// Gradients written by the backward.
pub struct Grads<'a> {
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
    /// Gradient of the input state `[bh, m, dv]`, `[bh, m]`.
    pub ds: &'a mut [f64],
    pub dz: &'a mut [f64],
}

/// The output state given to the backward is not the one the forward produced from these
/// inputs (its offset disagrees with the keys).
#[derive(Debug, PartialEq, Eq)]
pub struct StateMismatch {
    pub slice: usize,
}

struct BwdWork {
    o: Vec<f32>,
    gn: Vec<f32>,
    gd: Vec<f32>,
    e: Vec<f32>,
    tr: Vec<f32>,
    st: Vec<f32>,
    vt: Vec<f32>,
    dphq: Vec<f32>,
    dphk: Vec<f32>,
    g32: Vec<f32>,
    gz32: Vec<f32>,
    s_in: Vec<f64>,
    z_in: Vec<f64>,
}

impl BwdWork {
    fn new(dims: &Dims) -> BwdWork {
        let (c, m, dv) = (dims.c(), dims.m, dims.dv);
        BwdWork {
            o: vec![0.0; c * dv],
            gn: vec![0.0; c * dv],
            gd: vec![0.0; c],
            e: vec![0.0; c * c],
            tr: vec![0.0; c * c.max(m)],
            st: vec![0.0; dv * m],
            vt: vec![0.0; dv * c],
            dphq: vec![0.0; c * m],
            dphk: vec![0.0; c * m],
            g32: vec![0.0; m * dv],
            gz32: vec![0.0; m],
            s_in: vec![0.0; m * dv],
            z_in: vec![0.0; m],
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn causal_backward(
    dims: &Dims,
    f: &FeatureArgs,
    x: Qkv,
    state_in: Option<State>,
    state_out: State,
    out: Option<&[f32]>,
    d_out: &[f32],
    d_state_out: Option<(&[f64], &[f64])>,
    g: Grads,
) -> Result<(), StateMismatch> {
    let (m, dv) = (dims.m, dims.dv);
    let mut w = Work::new(dims);
    let mut b = BwdWork::new(dims);
    let mut omega_t = vec![0f32; dims.d * m];
    let mut s = vec![0f64; m * dv];
    let mut z = vec![0f64; m];
    let mut starts = vec![0f32; dims.n_chunks() + 1];
    for i in 0..dims.bh {
        let (rq, rv) = head_slices(dims, i);
        let (rs, rz) = (i * m * dv..(i + 1) * m * dv, i * m..(i + 1) * m);
        s.copy_from_slice(&state_out.s[rs.clone()]);
        z.copy_from_slice(&state_out.z[rz.clone()]);
        let gs = &mut g.ds[rs.clone()];
        let gz = &mut g.dz[rz.clone()];
        match d_state_out {
            Some((ds, dz)) => {
                gs.copy_from_slice(&ds[rs.clone()]);
                gz.copy_from_slice(&dz[rz.clone()]);
            }
            None => {
                gs.fill(0.0);
                gz.fill(0.0);
            }
        }
        let init = Init {
            s: state_in.as_ref().map(|st| (&st.s[rs.clone()], &st.z[rz.clone()])),
            offset: match &state_in {
                Some(st) => st.offset[i],
                None if f.kind == Feature::Favor => f64::NEG_INFINITY,
                None => 0.0,
            },
        };
        let fm = feature_map(f, dims, i, &mut omega_t);
        chunk_offsets(dims, &fm, &mut w, &x.k[rq.clone()], init.offset as f32, &mut starts);
        let fix = end_frame(f.kind, starts[dims.n_chunks()], state_out.offset[i]).ok_or(StateMismatch { slice: i })?;
        if fix != 1.0 {
            s.iter_mut().chain(z.iter_mut()).for_each(|x| *x *= fix);
        }
        let head = Head {
            q: &x.q[rq.clone()],
            k: &x.k[rq.clone()],
            v: &x.v[rv.clone()],
            out: out.map(|o| &o[rv.clone()]),
            d_out: &d_out[rv.clone()],
        };
        let out = HeadGrads { dq: &mut g.dq[rq.clone()], dk: &mut g.dk[rq], dv: &mut g.dv[rv], gs, gz };
        backward_head(dims, &fm, &mut w, &mut b, f.eps, head, &init, &starts, &mut s, &mut z, out);
    }
    Ok(())
}

struct Init<'a> {
    s: Option<(&'a [f64], &'a [f64])>,
    offset: f64,
}

struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// The forward's output, when the caller kept it (saves recomputing it).
    out: Option<&'a [f32]>,
    d_out: &'a [f32],
}

struct HeadGrads<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    gs: &'a mut [f64],
    gz: &'a mut [f64],
}

/// The factor that moves an output state from its recorded offset to the offset these keys
/// end at. Recomputed keys may differ from the forward's in the last bit (a slice replayed
/// under a gradient tape, say), so the offsets may differ by rounding; anything more means the
/// state belongs to other inputs (`None`).
pub(crate) fn end_frame(kind: Feature, recomputed: f32, recorded: f64) -> Option<f64> {
    if kind != Feature::Favor || recomputed as f64 == recorded {
        return Some(1.0);
    }
    let gap = recomputed as f64 - recorded;
    (gap.abs() <= 1e-4 * recorded.abs().max(1.0)).then(|| (-gap).exp())
}

/// `starts[c]` = key offset at the start of chunk `c`; `starts[n_chunks]` = final offset.
pub(crate) fn chunk_offsets(dims: &Dims, fm: &FeatureMap, w: &mut Work, k: &[f32], offset_in: f32, starts: &mut [f32]) {
    let (t, d, c) = (dims.t, dims.d, dims.c());
    starts[0] = offset_in;
    for ci in 0..dims.n_chunks() {
        starts[ci + 1] = if fm.kind == Feature::Favor {
            let t0 = ci * c;
            key_offset_after(fm, w, c.min(t - t0), &k[t0 * d..], starts[ci])
        } else {
            starts[ci]
        };
    }
}

/// `(s_in, z_in)` = the state before chunk `ci`, recomputed from the input state.
#[allow(clippy::too_many_arguments)]
fn replay_keys(
    dims: &Dims,
    fm: &FeatureMap,
    w: &mut Work,
    b: &mut BwdWork,
    head: &Head,
    init: &Init,
    starts: &[f32],
    ci: usize,
) {
    let (t, d, dv, c) = (dims.t, dims.d, dims.dv, dims.c());
    match init.s {
        Some((s, z)) => {
            b.s_in.copy_from_slice(s);
            b.z_in.copy_from_slice(z);
        }
        None => {
            b.s_in.fill(0.0);
            b.z_in.fill(0.0);
        }
    }
    for cj in 0..ci {
        let t0 = cj * c;
        let n = c.min(t - t0);
        let end = prepare_keys(fm, w, n, &head.k[t0 * d..], starts[cj]);
        increment(w, n, &head.v[t0 * dv..]);
        apply_increment(w, &mut b.s_in, &mut b.z_in, rescale(starts[cj] as f64, end as f64));
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_head(
    dims: &Dims,
    fm: &FeatureMap,
    w: &mut Work,
    b: &mut BwdWork,
    eps: f32,
    head: Head,
    init: &Init,
    starts: &[f32],
    s: &mut [f64],
    z: &mut [f64],
    out: HeadGrads,
) {
    let (t, d, m, dv, c) = (dims.t, dims.d, dims.m, dims.dv, dims.c());
    for ci in (0..dims.n_chunks()).rev() {
        let t0 = ci * c;
        let n = c.min(t - t0);
        let (off_in, off_end) = (starts[ci] as f64, starts[ci + 1] as f64);
        let r = rescale(off_in, off_end);
        let replay = ci > 0 && off_end - off_in > MAX_RAISE;
        if replay {
            replay_keys(dims, fm, w, b, &head, init, starts, ci);
        }
        let (xq, xk, v) = (&head.q[t0 * d..], &head.k[t0 * d..], &head.v[t0 * dv..]);
        prepare(fm, w, n, xq, xk, starts[ci]);
        if ci == 0 {
            match init.s {
                Some((s0, z0)) => {
                    b.s_in.copy_from_slice(s0);
                    b.z_in.copy_from_slice(z0);
                }
                None => {
                    b.s_in.fill(0.0);
                    b.z_in.fill(0.0);
                }
            }
        } else if !replay {
            increment(w, n, v);
            let inv = 1.0 / r;
            for ((x, &se), &de) in b.s_in.iter_mut().zip(s.iter()).zip(&w.delta) {
                *x = (se - de as f64) * inv;
            }
            for ((x, &ze), &de) in b.z_in.iter_mut().zip(z.iter()).zip(&w.zdelta) {
                *x = (ze - de as f64) * inv;
            }
        }
        load_state(w, &b.s_in, &b.z_in);
        match head.out {
            Some(o) => {
                denominators(w, n);
                b.o[..n * dv].copy_from_slice(&o[t0 * dv..(t0 + n) * dv]);
            }
            None => attend(w, n, v, eps, &mut b.o),
        }
        chunk_grads(w, b, n, v, &head.d_out[t0 * dv..], eps, out.gs, out.gz);
        fm.backward(n, xq, &w.uq, &w.phq, &mut b.dphq, &mut out.dq[t0 * d..(t0 + n) * d]);
        fm.backward(n, xk, &w.uk, &w.phk, &mut b.dphk, &mut out.dk[t0 * d..(t0 + n) * d]);
        let dvc = &mut out.dv[t0 * dv..(t0 + n) * dv];
        // dV = diag(w) ΦK G + Aᵀ GN, with G still the gradient of the chunk's end state.
        gemm(n, dv, m, View { data: &w.phk, ld: m }, View { data: &b.g32, ld: dv }, dvc, dv, false, Tri::Full);
        for j in 0..n {
            if w.w[j] != 1.0 {
                simd::scale(&mut dvc[j * dv..(j + 1) * dv], w.w[j]);
            }
        }
        transpose(n, n, &w.a, n, &mut b.tr);
        gemm(n, dv, n, View { data: &b.tr, ld: n }, View { data: &b.gn, ld: dv }, dvc, dv, true, Tri::UpperA);
        // G ← r G + ΦQᵀ diag(s) GN, Gz ← r Gz + ΦQᵀ (s ∘ gD).
        for i in 0..n {
            if w.sq[i] != 1.0 {
                simd::scale(&mut b.gn[i * dv..(i + 1) * dv], w.sq[i]);
            }
            b.gd[i] *= w.sq[i];
        }
        transpose(n, m, &w.phq, m, &mut b.tr);
        gemm(m, dv, n, View { data: &b.tr, ld: n }, View { data: &b.gn, ld: dv }, &mut w.delta, dv, false, Tri::Full);
        for (x, &dx) in out.gs.iter_mut().zip(&w.delta) {
            *x = *x * r + dx as f64;
        }
        for (rr, x) in out.gz.iter_mut().enumerate() {
            let mut acc = 0f32;
            for i in 0..n {
                acc += w.phq[i * m + rr] * b.gd[i];
            }
            *x = *x * r + acc as f64;
        }
        s.copy_from_slice(&b.s_in);
        z.copy_from_slice(&b.z_in);
    }
}

/// From a recomputed chunk (`w`, output in `b.o`): `gn`, `gd`, `∂ΦQ` into `b.dphq`, `∂ΦK` into
/// `b.dphk`, and `b.g32`, `b.gz32` = float32 copies of the end-state gradient.
#[allow(clippy::too_many_arguments)]
fn chunk_grads(w: &mut Work, b: &mut BwdWork, n: usize, v: &[f32], g: &[f32], eps: f32, gs: &[f64], gz: &[f64]) {
    let (m, dv) = (w.m, w.dv);
    for i in 0..n {
        let den = w.den[i];
        let gi = &g[i * dv..(i + 1) * dv];
        let gn = &mut b.gn[i * dv..(i + 1) * dv];
        if den == 0.0 {
            gn.fill(0.0);
            b.gd[i] = 0.0;
        } else {
            let inv = 1.0 / (den + eps);
            for (x, &y) in gn.iter_mut().zip(gi) {
                *x = y * inv;
            }
            b.gd[i] = -simd::dot(gi, &b.o[i * dv..(i + 1) * dv]) * inv;
        }
    }
    // ∂ΦQ = diag(s)(GN Sᵀ + gD zᵀ) + E ΦK.
    transpose(m, dv, &w.s32, dv, &mut b.st);
    gemm(n, m, dv, View { data: &b.gn, ld: dv }, View { data: &b.st, ld: m }, &mut b.dphq, m, false, Tri::Full);
    for i in 0..n {
        let row = &mut b.dphq[i * m..(i + 1) * m];
        simd::axpy(row, b.gd[i], &w.z32);
        if w.sq[i] != 1.0 {
            simd::scale(row, w.sq[i]);
        }
    }
    // E = (GN Vᵀ + gD 1ᵀ) ∘ P.
    transpose(n, dv, v, dv, &mut b.vt);
    gemm(n, n, dv, View { data: &b.gn, ld: dv }, View { data: &b.vt, ld: n }, &mut b.e, n, false, Tri::LowerOut);
    for i in 0..n {
        let row = &mut b.e[i * n..(i + 1) * n];
        row[..=i].iter_mut().for_each(|x| *x += b.gd[i]);
        mask_frames(&mut row[..=i], &w.offs[..=i], w.offs[i]);
        row[i + 1..].fill(0.0);
    }
    gemm(n, m, n, View { data: &b.e, ld: n }, View { data: &w.phk, ld: m }, &mut b.dphq, m, true, Tri::LowerA);
    // ∂ΦK = diag(w)(V Gᵀ + 1 Gzᵀ) + Eᵀ ΦQ.
    narrow(&mut b.g32, gs);
    narrow(&mut b.gz32, gz);
    transpose(m, dv, &b.g32, dv, &mut b.st);
    gemm(n, m, dv, View { data: v, ld: dv }, View { data: &b.st, ld: m }, &mut b.dphk, m, false, Tri::Full);
    for j in 0..n {
        let row = &mut b.dphk[j * m..(j + 1) * m];
        simd::axpy(row, 1.0, &b.gz32);
        if w.w[j] != 1.0 {
            simd::scale(row, w.w[j]);
        }
    }
    transpose(n, n, &b.e, n, &mut b.tr);
    gemm(n, m, n, View { data: &b.tr, ld: n }, View { data: &w.phq, ld: m }, &mut b.dphk, m, true, Tri::UpperA);
}

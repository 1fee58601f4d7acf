//! What the forward and the backward share: the per-call workspace and the per-chunk
//! recomputation (features, offsets, the masked intra-chunk matrix, the attended output).

use super::FeatureArgs;
use crate::dims::{Dims, Feature};
use crate::feature_map::FeatureMap;
use crate::matmul::{gemm, transpose, Tri, View};
use crate::simd;

/// Scratch for one call, sized by the chunk, never by `t`.
pub struct Work {
    pub c: usize,
    pub d: usize,
    pub m: usize,
    pub dv: usize,
    /// Query pre-activations / features `[c, m]`.
    pub uq: Vec<f32>,
    pub phq: Vec<f32>,
    /// Key pre-activations / features `[c, m]`.
    pub uk: Vec<f32>,
    pub phk: Vec<f32>,
    /// `ΦKᵀ` `[m, c]`.
    pub phk_t: Vec<f32>,
    /// `diag(w) ΦK` transposed `[m, c]`.
    pub kt: Vec<f32>,
    /// Masked, rescaled `ΦQ ΦKᵀ` `[c, c]`.
    pub a: Vec<f32>,
    /// Key offsets `m_j`, query frame factors `s_i`, state weights `w_j` `[c]`.
    pub offs: Vec<f32>,
    pub sq: Vec<f32>,
    pub w: Vec<f32>,
    /// Numerator `[c, dv]` and denominator `[c]`.
    pub num: Vec<f32>,
    pub den: Vec<f32>,
    /// Float32 copies of the state `[m, dv]`, `[m]`, and a chunk's state increment.
    pub s32: Vec<f32>,
    pub z32: Vec<f32>,
    pub delta: Vec<f32>,
    pub zdelta: Vec<f32>,
}

impl Work {
    pub fn new(dims: &Dims) -> Work {
        let (c, d, m, dv) = (dims.c(), dims.d, dims.m, dims.dv);
        Work {
            c,
            d,
            m,
            dv,
            uq: vec![0.0; c * m],
            phq: vec![0.0; c * m],
            uk: vec![0.0; c * m],
            phk: vec![0.0; c * m],
            kt: vec![0.0; m * c],
            a: vec![0.0; c * c],
            offs: vec![0.0; c],
            sq: vec![0.0; c],
            w: vec![0.0; c],
            phk_t: vec![0.0; m * c],
            num: vec![0.0; c * dv],
            den: vec![0.0; c],
            s32: vec![0.0; m * dv],
            z32: vec![0.0; m],
            delta: vec![0.0; m * dv],
            zdelta: vec![0.0; m],
        }
    }
}

/// Packs `ωᵀ` (`[d, m]`) of slice `i` (head `i % h`) into `omega_t` and returns its feature map.
pub fn feature_map<'a>(f: &FeatureArgs<'a>, dims: &Dims, i: usize, omega_t: &'a mut [f32]) -> FeatureMap<'a> {
    let (d, m) = (dims.d, dims.m);
    let omega = f.omega.map(|om| {
        let head = i % dims.h;
        &om[head * m * d..(head + 1) * m * d]
    });
    if let Some(om) = omega {
        transpose(m, d, om, d, omega_t);
    }
    FeatureMap { kind: f.kind, omega, omega_t, d, m }
}

/// `row[j] *= exp(offs[j] − to)`. Offsets are non-decreasing and mostly equal, so the
/// factor is recomputed only where the offset changes.
pub fn mask_frames(row: &mut [f32], offs: &[f32], to: f32) {
    let (mut last, mut f) = (to, 1.0);
    for (x, &o) in row.iter_mut().zip(offs) {
        if o != last {
            last = o;
            f = frame(o, to);
        }
        if f != 1.0 {
            *x *= f;
        }
    }
}

/// `exp(a − b)` for offsets, exactly 1 when they are equal.
#[inline]
pub fn frame(a: f32, b: f32) -> f32 {
    if a == b {
        1.0
    } else {
        simd::exp_scalar(a - b)
    }
}

/// Key offset after a chunk's keys, without computing features (FAVOR+ pre-scan).
pub fn key_offset_after(fm: &FeatureMap, w: &mut Work, n: usize, xk: &[f32], offset_in: f32) -> f32 {
    fm.project(n, xk, &mut w.uk);
    offset_in.max(fm.max_logit(n, &w.uk))
}

/// Key half of `prepare`: key features and offsets, `w`, `phk_t = ΦKᵀ` and `kt = (diag(w) ΦK)ᵀ`.
/// Returns the offset after the chunk.
pub fn prepare_keys(fm: &FeatureMap, w: &mut Work, n: usize, xk: &[f32], offset_in: f32) -> f32 {
    let m = w.m;
    let nm = n * m;
    fm.project(n, xk, &mut w.uk);
    w.phk[..nm].copy_from_slice(&w.uk[..nm]);
    let m_end = fm.keys(n, &mut w.phk, offset_in, &mut w.offs);
    let stab = fm.kind == Feature::Favor;
    for j in 0..n {
        w.sq[j] = if stab { frame(offset_in, w.offs[j]) } else { 1.0 };
        w.w[j] = if stab { frame(w.offs[j], m_end) } else { 1.0 };
    }
    transpose(n, m, &w.phk, m, &mut w.phk_t);
    for r in 0..m {
        let (src, dst) = (&w.phk_t[r * n..(r + 1) * n], &mut w.kt[r * n..(r + 1) * n]);
        if stab {
            dst.iter_mut().zip(src).zip(&w.w[..n]).for_each(|((e, &x), &wj)| *e = x * wj);
        } else {
            dst.copy_from_slice(src);
        }
    }
    m_end
}

/// Features of a chunk of `n` rows, offsets, frame factors, `kt = (diag(w) ΦK)ᵀ` and
/// `a = (ΦQ ΦKᵀ) ∘ P`. Returns the offset after the chunk.
pub fn prepare(fm: &FeatureMap, w: &mut Work, n: usize, xq: &[f32], xk: &[f32], offset_in: f32) -> f32 {
    let m = w.m;
    let nm = n * m;
    fm.project(n, xq, &mut w.uq);
    w.phq[..nm].copy_from_slice(&w.uq[..nm]);
    fm.queries(n, &mut w.phq);
    let m_end = prepare_keys(fm, w, n, xk, offset_in);
    gemm(n, n, m, View { data: &w.phq, ld: m }, View { data: &w.phk_t, ld: n }, &mut w.a, n, false, Tri::LowerOut);
    let stab = fm.kind == Feature::Favor;
    for i in 0..n {
        let row = &mut w.a[i * n..(i + 1) * n];
        if stab {
            mask_frames(&mut row[..=i], &w.offs[..=i], w.offs[i]);
        }
        row[i + 1..].fill(0.0);
    }
    m_end
}

/// Float32 copies of a float64 state.
pub fn load_state(w: &mut Work, s: &[f64], z: &[f64]) {
    narrow(&mut w.s32, s);
    narrow(&mut w.z32, z);
}

/// `dst = src` rounded to float32 (equal lengths, so the loop vectorises).
pub fn narrow(dst: &mut [f32], src: &[f64]) {
    let src = &src[..dst.len()];
    for i in 0..dst.len() {
        dst[i] = src[i] as f32;
    }
}

/// `den = diag(s)(ΦQ z) + A 1` for a prepared chunk with `z32` loaded.
pub fn denominators(w: &mut Work, n: usize) {
    let m = w.m;
    for i in 0..n {
        w.den[i] =
            w.sq[i] * simd::dot(&w.phq[i * m..(i + 1) * m], &w.z32) + w.a[i * n..i * n + i + 1].iter().sum::<f32>();
    }
}

/// `num = diag(s)(ΦQ S) + A V`, `den` (see `denominators`) and `out = num / (den + ε)`
/// (0 where `den == 0`), for a prepared chunk with `s32`, `z32` loaded.
pub fn attend(w: &mut Work, n: usize, v: &[f32], eps: f32, out: &mut [f32]) {
    let (m, dv) = (w.m, w.dv);
    denominators(w, n);
    gemm(n, dv, m, View { data: &w.phq, ld: m }, View { data: &w.s32, ld: dv }, &mut w.num, dv, false, Tri::Full);
    for i in 0..n {
        if w.sq[i] != 1.0 {
            simd::scale(&mut w.num[i * dv..(i + 1) * dv], w.sq[i]);
        }
    }
    gemm(n, dv, n, View { data: &w.a, ld: n }, View { data: v, ld: dv }, &mut w.num, dv, true, Tri::LowerA);
    for i in 0..n {
        let o = &mut out[i * dv..(i + 1) * dv];
        let den = w.den[i];
        if den == 0.0 {
            o.fill(0.0);
        } else {
            let inv = 1.0 / (den + eps);
            for (x, &y) in o.iter_mut().zip(&w.num[i * dv..(i + 1) * dv]) {
                *x = y * inv;
            }
        }
    }
}

/// `delta = kt V` (`[m, dv]`) and `zdelta = kt 1` for a prepared chunk: its state increment.
pub fn increment(w: &mut Work, n: usize, v: &[f32]) {
    let (m, dv) = (w.m, w.dv);
    gemm(m, dv, n, View { data: &w.kt, ld: n }, View { data: v, ld: dv }, &mut w.delta, dv, false, Tri::Full);
    for r in 0..m {
        w.zdelta[r] = w.kt[r * n..(r + 1) * n].iter().sum();
    }
}

/// The f64 factor that moves a state from frame `from` to frame `to` (`exp(from − to)`).
pub fn rescale(from: f64, to: f64) -> f64 {
    if from == to {
        1.0
    } else {
        (from - to).exp()
    }
}

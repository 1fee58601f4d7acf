//! Fused chunked causal forward.
//!
//! Reads `q, k: [bh, t, d]`, `v: [bh, t, dv]`, the input state (or none: empty) and writes
//! `out: [bh, t, dv]` (`=`) and the output state (`=`). Per chunk: features, offsets, the
//! masked intra-chunk product, the inter-chunk product with the state, normalisation, then the
//! state moves to the chunk's last offset and takes the chunk's `ΦK_wᵀ V`. Nothing of size `t`
//! is allocated.

use super::chunk::{attend, feature_map, increment, load_state, prepare, rescale, Work};
use super::{head_slices, FeatureArgs, Qkv, State, StateMut};
use crate::dims::{Dims, Feature};

pub fn causal_forward(
    dims: &Dims,
    f: &FeatureArgs,
    x: Qkv,
    state_in: Option<State>,
    out: &mut [f32],
    state_out: StateMut,
) {
    let (m, dv) = (dims.m, dims.dv);
    let mut w = Work::new(dims);
    let mut omega_t = vec![0f32; dims.d * m];
    for i in 0..dims.bh {
        let (rq, rv) = head_slices(dims, i);
        let s = &mut state_out.s[i * m * dv..(i + 1) * m * dv];
        let z = &mut state_out.z[i * m..(i + 1) * m];
        let offset = &mut state_out.offset[i];
        match &state_in {
            Some(st) => {
                s.copy_from_slice(&st.s[i * m * dv..(i + 1) * m * dv]);
                z.copy_from_slice(&st.z[i * m..(i + 1) * m]);
                *offset = st.offset[i];
            }
            None => {
                s.fill(0.0);
                z.fill(0.0);
                *offset = if f.kind == Feature::Favor { f64::NEG_INFINITY } else { 0.0 };
            }
        }
        let fm = feature_map(f, dims, i, &mut omega_t);
        forward_head(
            dims,
            &fm,
            &mut w,
            f.eps,
            &x.q[rq.clone()],
            &x.k[rq],
            &x.v[rv.clone()],
            &mut out[rv],
            s,
            z,
            offset,
        );
    }
}

/// One slice: `state (s, z, offset)` is updated in place from input to output state.
#[allow(clippy::too_many_arguments)]
fn forward_head(
    dims: &Dims,
    fm: &crate::feature_map::FeatureMap,
    w: &mut Work,
    eps: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    s: &mut [f64],
    z: &mut [f64],
    offset: &mut f64,
) {
    let (t, d, dv, c) = (dims.t, dims.d, dims.dv, dims.c());
    let mut t0 = 0;
    while t0 < t {
        let n = c.min(t - t0);
        let off_in = *offset as f32;
        let off_end = prepare(fm, w, n, &q[t0 * d..], &k[t0 * d..], off_in);
        load_state(w, s, z);
        attend(w, n, &v[t0 * dv..], eps, &mut out[t0 * dv..(t0 + n) * dv]);
        increment(w, n, &v[t0 * dv..]);
        apply_increment(w, s, z, rescale(*offset, off_end as f64));
        *offset = off_end as f64;
        t0 += n;
    }
}

/// `S ← r S + delta`, `z ← r z + zdelta` in float64.
pub(crate) fn apply_increment(w: &Work, s: &mut [f64], z: &mut [f64], r: f64) {
    for (x, &dx) in s.iter_mut().zip(&w.delta) {
        *x = *x * r + dx as f64;
    }
    for (x, &dx) in z.iter_mut().zip(&w.zdelta) {
        *x = *x * r + dx as f64;
    }
}

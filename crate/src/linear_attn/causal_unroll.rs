//! Undoing a causal forward on the state alone: from the output state, the keys, the values and
//! the input offset, recover the input state, chunk by chunk in reverse, with the same float32
//! increments the forward added in float64 (so the subtraction is exact up to float64
//! rounding). This is what lets slice-by-slice training walk backwards without storing a state
//! per slice.
//!
//! Reads `k: [bh, t, d]`, `v: [bh, t, dv]`, the output state and `offset_in: [bh]`; writes the
//! input state (`=`). A chunk that raised the FAVOR+ offset by more than `MAX_RAISE` scaled the
//! input state below what float64 can bring back: the call then fails and the caller must keep
//! that state instead.

use super::causal_backward::{chunk_offsets, end_frame, MAX_RAISE};
use super::chunk::{feature_map, increment, prepare_keys, rescale, Work};
use super::{head_slices, FeatureArgs, State, StateMut};
use crate::dims::Dims;

#[derive(Debug, PartialEq, Eq)]
pub enum UnrollError {
    /// The output state's offset disagrees with these keys.
    StateMismatch { slice: usize },
    /// A chunk raised the offset too far for the input state to be recovered.
    Unrecoverable { slice: usize },
}

pub fn causal_unroll(
    dims: &Dims,
    f: &FeatureArgs,
    k: &[f32],
    v: &[f32],
    state_out: State,
    offset_in: &[f64],
    state_in: StateMut,
) -> Result<(), UnrollError> {
    let (t, d, m, dv, c) = (dims.t, dims.d, dims.m, dims.dv, dims.c());
    let mut w = Work::new(dims);
    let mut omega_t = vec![0f32; d * m];
    let mut starts = vec![0f32; dims.n_chunks() + 1];
    for i in 0..dims.bh {
        let (rk, rv) = head_slices(dims, i);
        let (rs, rz) = (i * m * dv..(i + 1) * m * dv, i * m..(i + 1) * m);
        let (s, z) = (&mut state_in.s[rs.clone()], &mut state_in.z[rz.clone()]);
        state_in.offset[i] = offset_in[i];
        let fm = feature_map(f, dims, i, &mut omega_t);
        chunk_offsets(dims, &fm, &mut w, &k[rk.clone()], offset_in[i] as f32, &mut starts);
        let fix = end_frame(f.kind, starts[dims.n_chunks()], state_out.offset[i])
            .ok_or(UnrollError::StateMismatch { slice: i })?;
        if offset_in[i] == f64::NEG_INFINITY {
            s.fill(0.0);
            z.fill(0.0);
            continue;
        }
        s.iter_mut().zip(&state_out.s[rs]).for_each(|(x, &y)| *x = y * fix);
        z.iter_mut().zip(&state_out.z[rz]).for_each(|(x, &y)| *x = y * fix);
        for ci in (0..dims.n_chunks()).rev() {
            let (off_in, off_end) = (starts[ci] as f64, starts[ci + 1] as f64);
            if off_end - off_in > MAX_RAISE {
                return Err(UnrollError::Unrecoverable { slice: i });
            }
            let t0 = ci * c;
            let n = c.min(t - t0);
            prepare_keys(&fm, &mut w, n, &k[rk.start + t0 * d..], starts[ci]);
            increment(&mut w, n, &v[rv.start + t0 * dv..]);
            let inv = 1.0 / rescale(off_in, off_end);
            for (x, &de) in s.iter_mut().zip(&w.delta) {
                *x = (*x - de as f64) * inv;
            }
            for (x, &de) in z.iter_mut().zip(&w.zdelta) {
                *x = (*x - de as f64) * inv;
            }
        }
    }
    Ok(())
}

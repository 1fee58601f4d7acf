//! One decoding step: a token per slice against the carried state. It is the causal forward
//! with `t = 1` (same features, same offsets, same float64 state update).

use super::{causal_forward, FeatureArgs, Qkv, State, StateMut};
use crate::dims::Dims;

/// `q, k: [bh, d]`, `v: [bh, dv]`, `out: [bh, dv]` (`=`); the state moves from `state_in` to
/// `state_out`.
pub fn recurrent_step(dims: &Dims, f: &FeatureArgs, x: Qkv, state_in: State, out: &mut [f32], state_out: StateMut) {
    let one = Dims { t: 1, chunk: 1, ..*dims };
    causal_forward(&one, f, x, Some(state_in), out, state_out);
}

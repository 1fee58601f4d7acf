//! Causal and bidirectional linear attention (derivations in `README.md`).
//!
//! All entry points take `bh` independent slices laid out `[bh, t, ·]` and states laid out
//! `[bh, m, dv]` / `[bh, m]` / `[bh]` (float64).

pub mod bidirectional;
pub mod causal_backward;
pub mod causal_forward;
pub mod causal_unroll;
pub mod chunk;
pub mod recurrent_step;

pub use bidirectional::{bidirectional_backward, bidirectional_forward};
pub use causal_backward::causal_backward;
pub use causal_forward::causal_forward;
pub use causal_unroll::causal_unroll;
pub use recurrent_step::recurrent_step;

use crate::dims::{Dims, Feature};

/// Default guard added to denominators (see "Exact zeros" in the README).
pub const EPS: f32 = 1e-16;

/// The carried state of every slice: `s: [bh, m, dv]`, `z: [bh, m]`, `offset: [bh]`.
pub struct State<'a> {
    pub s: &'a [f64],
    pub z: &'a [f64],
    pub offset: &'a [f64],
}

pub struct StateMut<'a> {
    pub s: &'a mut [f64],
    pub z: &'a mut [f64],
    pub offset: &'a mut [f64],
}

/// The feature map's settings for one call: `omega: [h, m, d]` (absent for identity maps).
#[derive(Clone, Copy)]
pub struct FeatureArgs<'a> {
    pub kind: Feature,
    pub omega: Option<&'a [f32]>,
    pub eps: f32,
}

/// `q, k: [bh, t, d]`, `v: [bh, t, dv]`.
#[derive(Clone, Copy)]
pub struct Qkv<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
}

pub(crate) fn head_slices(dims: &Dims, i: usize) -> (core::ops::Range<usize>, core::ops::Range<usize>) {
    let (t, d, dv) = (dims.t, dims.d, dims.dv);
    (i * t * d..(i + 1) * t * d, i * t * dv..(i + 1) * t * dv)
}

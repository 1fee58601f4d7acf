//! Fused chunked Performer linear attention kernels. Pure functions over slices; the only
//! pointer code is in `wasm.rs`. The math is in `linear_attn/README.md`.

// Kernels index several arrays with one token or feature index, as the formulas do.
#![allow(clippy::needless_range_loop)]

pub mod dims;
pub mod feature_map;
pub mod linear_attn;
pub mod matmul;
pub mod simd;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

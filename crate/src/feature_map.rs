//! Feature maps φ: R^d → R^M, forward and backward, on blocks of rows.
//!
//! `project` writes the pre-activations `u` (`[n, m]`); for FAVOR+ these are the logits
//! `ℓ = ω·x' − |x'|²/2` with `x' = x·d^(-1/4)`. `queries` / `keys` turn them into features
//! in place (with the stabiliser offsets), `backward` maps `∂φ` to `∂x`.

use crate::dims::Feature;
use crate::matmul::{gemm, Tri, View};
use crate::simd;

pub struct FeatureMap<'a> {
    pub kind: Feature,
    /// `ω: [m, d]`, or `None` for the identity projection (`m = d`).
    pub omega: Option<&'a [f32]>,
    /// `ωᵀ: [d, m]`, packed by the caller when `omega` is set.
    pub omega_t: &'a [f32],
    pub d: usize,
    pub m: usize,
}

impl FeatureMap<'_> {
    fn favor_scale(&self) -> f32 {
        (self.d as f32).powf(-0.25)
    }

    /// `u[n, m]` = pre-activations of `x[n, d]`.
    pub fn project(&self, n: usize, x: &[f32], u: &mut [f32]) {
        let (d, m) = (self.d, self.m);
        match self.omega {
            Some(_) => {
                gemm(n, m, d, View { data: x, ld: d }, View { data: self.omega_t, ld: m }, u, m, false, Tri::Full)
            }
            None => u[..n * m].copy_from_slice(&x[..n * d]),
        }
        if self.kind == Feature::Favor {
            let s = self.favor_scale();
            for i in 0..n {
                let xi = &x[i * d..(i + 1) * d];
                let half_sq = 0.5 * s * s * simd::dot(xi, xi);
                for e in &mut u[i * m..(i + 1) * m] {
                    *e = s * *e - half_sq;
                }
            }
        }
    }

    /// Element-wise maps (`relu`, `elu1`, `sqr`, identity), in place.
    fn elementwise(&self, u: &mut [f32]) {
        match self.kind {
            Feature::Relu => u.iter_mut().for_each(|e| *e = e.max(0.0)),
            Feature::Elu1 => u.iter_mut().for_each(|e| *e = if *e > 0.0 { *e + 1.0 } else { simd::exp_scalar(*e) }),
            Feature::Sqr => u.iter_mut().for_each(|e| *e *= *e),
            Feature::Identity | Feature::Favor => {}
        }
    }

    /// Query features in place: FAVOR+ subtracts each row's own maximum.
    pub fn queries(&self, n: usize, u: &mut [f32]) {
        let m = self.m;
        if self.kind == Feature::Favor {
            for row in u[..n * m].chunks_exact_mut(m) {
                let c = simd::max(row);
                simd::exp_shifted(row, c);
            }
        } else {
            self.elementwise(&mut u[..n * m]);
        }
    }

    /// Key features in place. FAVOR+: `offs[j]` = running maximum of the logits up to row `j`,
    /// starting from `offset_in`; row `j` becomes `exp(ℓ_j − offs[j])`. Other maps: offsets 0.
    /// Returns the offset after the last row.
    pub fn keys(&self, n: usize, u: &mut [f32], offset_in: f32, offs: &mut [f32]) -> f32 {
        let m = self.m;
        if self.kind != Feature::Favor {
            self.elementwise(&mut u[..n * m]);
            offs[..n].fill(0.0);
            return 0.0;
        }
        let mut run = offset_in;
        for (j, row) in u[..n * m].chunks_exact_mut(m).enumerate() {
            run = run.max(simd::max(row));
            offs[j] = run;
            simd::exp_shifted(row, run);
        }
        run
    }

    /// Key features in place with one shared FAVOR+ offset (bidirectional attention).
    pub fn keys_at(&self, n: usize, u: &mut [f32], offset: f32) {
        if self.kind == Feature::Favor {
            simd::exp_shifted(&mut u[..n * self.m], offset);
        } else {
            self.elementwise(&mut u[..n * self.m]);
        }
    }

    /// Largest logit of `n` rows of pre-activations (FAVOR+ pre-scan).
    pub fn max_logit(&self, n: usize, u: &[f32]) -> f32 {
        simd::max(&u[..n * self.m])
    }

    /// `dx[n, d] = ∂x` from `x`, pre-activations `u`, features `phi` and `dphi` (`[n, m]`,
    /// overwritten with `∂u`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, n: usize, x: &[f32], u: &[f32], phi: &[f32], dphi: &mut [f32], dx: &mut [f32]) {
        let (d, m) = (self.d, self.m);
        let nm = n * m;
        match self.kind {
            Feature::Favor => dphi[..nm].iter_mut().zip(&phi[..nm]).for_each(|(g, p)| *g *= p),
            Feature::Relu => {
                dphi[..nm].iter_mut().zip(&phi[..nm]).for_each(|(g, p)| *g = if *p > 0.0 { *g } else { 0.0 })
            }
            Feature::Elu1 => dphi[..nm].iter_mut().zip(&phi[..nm]).for_each(|(g, p)| *g *= p.min(1.0)),
            Feature::Sqr => dphi[..nm].iter_mut().zip(&u[..nm]).for_each(|(g, x)| *g *= 2.0 * x),
            Feature::Identity => {}
        }
        match self.omega {
            Some(om) => gemm(n, d, m, View { data: dphi, ld: m }, View { data: om, ld: d }, dx, d, false, Tri::Full),
            None => dx[..n * d].copy_from_slice(&dphi[..nm]),
        }
        if self.kind == Feature::Favor {
            let s = self.favor_scale();
            let s2 = s * s;
            for i in 0..n {
                let total: f32 = dphi[i * m..(i + 1) * m].iter().sum();
                let xi = &x[i * d..(i + 1) * d];
                for (g, &xv) in dx[i * d..(i + 1) * d].iter_mut().zip(xi) {
                    *g = s * *g - s2 * total * xv;
                }
            }
        }
    }
}

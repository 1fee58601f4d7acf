//! Native checks of the pure kernels (the TypeScript suite checks them in wasm against the
//! float64 references in depth): a naive float64 forward, a directional-derivative check of
//! the backward, chunk-size invariance and the stale-state guard.

use slim_kernels::dims::{Dims, Feature};
use slim_kernels::linear_attn::causal_backward::{Grads, StateMismatch};
use slim_kernels::linear_attn::{
    bidirectional_forward, causal_backward, causal_forward, FeatureArgs, Qkv, State, StateMut, EPS,
};

struct Lcg(u64);

impl Lcg {
    fn normal(&mut self) -> f32 {
        let mut u = || {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

struct Problem {
    dims: Dims,
    kind: Feature,
    omega: Option<Vec<f32>>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

fn problem(kind: Feature, chunk: usize, seed: u64) -> Problem {
    let dims = Dims { bh: 4, h: 2, t: 37, d: 6, m: if kind == Feature::Sqr { 6 } else { 10 }, dv: 5, chunk };
    let mut r = Lcg(seed);
    let omega = (kind != Feature::Sqr).then(|| r.vec(dims.h * dims.m * dims.d));
    let n = dims.bh * dims.t * dims.d;
    Problem { dims, kind, omega, q: r.vec(n), k: r.vec(n), v: r.vec(dims.bh * dims.t * dims.dv) }
}

struct Fwd {
    out: Vec<f32>,
    s: Vec<f64>,
    z: Vec<f64>,
    offset: Vec<f64>,
}

fn forward(p: &Problem, chunk: usize) -> Fwd {
    let dims = Dims { chunk, ..p.dims };
    let (bh, m, dv) = (dims.bh, dims.m, dims.dv);
    let mut f = Fwd {
        out: vec![f32::NAN; bh * dims.t * dv],
        s: vec![f64::NAN; bh * m * dv],
        z: vec![f64::NAN; bh * m],
        offset: vec![f64::NAN; bh],
    };
    let fa = FeatureArgs { kind: p.kind, omega: p.omega.as_deref(), eps: EPS };
    let x = Qkv { q: &p.q, k: &p.k, v: &p.v };
    causal_forward(&dims, &fa, x, None, &mut f.out, StateMut { s: &mut f.s, z: &mut f.z, offset: &mut f.offset });
    f
}

/// φ of one row in float64, without stabiliser (the ratio is invariant to it).
fn phi(p: &Problem, head: usize, x: &[f64]) -> Vec<f64> {
    let (d, m) = (p.dims.d, p.dims.m);
    let s = if p.kind == Feature::Favor { (d as f64).powf(-0.25) } else { 1.0 };
    let sq: f64 = x.iter().map(|&a| (a * s).powi(2)).sum();
    (0..m)
        .map(|r| {
            let u = match &p.omega {
                Some(om) => (0..d).map(|c| om[head * m * d + r * d + c] as f64 * x[c] * s).sum::<f64>(),
                None => x[r],
            };
            match p.kind {
                Feature::Favor => (u - sq / 2.0).exp(),
                Feature::Relu => u.max(0.0),
                Feature::Elu1 => {
                    if u > 0.0 {
                        u + 1.0
                    } else {
                        u.exp()
                    }
                }
                Feature::Sqr => u * u,
                Feature::Identity => u,
            }
        })
        .collect()
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&a| a as f64).collect()
}

fn naive_causal(p: &Problem) -> Vec<f64> {
    naive_causal_at(p, &wide(&p.q), &wide(&p.k), &wide(&p.v))
}

/// Causal attention of float64 inputs with `p`'s sizes and feature map.
fn naive_causal_at(p: &Problem, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let Dims { bh, h, t, d, dv, .. } = p.dims;
    let mut out = vec![0f64; bh * t * dv];
    for i in 0..bh {
        let fq: Vec<Vec<f64>> = (0..t).map(|j| phi(p, i % h, &q[(i * t + j) * d..][..d])).collect();
        let fk: Vec<Vec<f64>> = (0..t).map(|j| phi(p, i % h, &k[(i * t + j) * d..][..d])).collect();
        for a in 0..t {
            let mut den = 0f64;
            let mut num = vec![0f64; dv];
            for b in 0..=a {
                let w: f64 = fq[a].iter().zip(&fk[b]).map(|(x, y)| x * y).sum();
                den += w;
                for c in 0..dv {
                    num[c] += w * v[(i * t + b) * dv + c];
                }
            }
            for c in 0..dv {
                out[(i * t + a) * dv + c] = if den == 0.0 { 0.0 } else { num[c] / den };
            }
        }
    }
    out
}

fn max_rel(want: &[f64], got: &[f32]) -> f64 {
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
    want.iter().zip(got).fold(0f64, |m, (w, g)| m.max((w - *g as f64).abs())) / scale
}

const KINDS: [Feature; 4] = [Feature::Favor, Feature::Relu, Feature::Elu1, Feature::Sqr];

#[test]
fn forward_matches_naive_float64() {
    for kind in KINDS {
        let p = problem(kind, 8, 1);
        let err = max_rel(&naive_causal(&p), &forward(&p, 8).out);
        assert!(err < 1e-5, "{kind:?}: {err}");
    }
}

#[test]
fn bidirectional_matches_naive_float64() {
    for kind in KINDS {
        let p = problem(kind, 8, 2);
        let Dims { bh, h, t, d, dv, .. } = p.dims;
        let mut want = vec![0f64; bh * t * dv];
        for i in 0..bh {
            let (q, k) = (wide(&p.q), wide(&p.k));
            let fk: Vec<Vec<f64>> = (0..t).map(|j| phi(&p, i % h, &k[(i * t + j) * d..][..d])).collect();
            for a in 0..t {
                let fq = phi(&p, i % h, &q[(i * t + a) * d..][..d]);
                let ws: Vec<f64> = fk.iter().map(|f| fq.iter().zip(f).map(|(x, y)| x * y).sum()).collect();
                let den: f64 = ws.iter().sum();
                for c in 0..dv {
                    want[(i * t + a) * dv + c] =
                        (0..t).map(|b| ws[b] * p.v[(i * t + b) * dv + c] as f64).sum::<f64>() / den;
                }
            }
        }
        let mut out = vec![f32::NAN; bh * t * dv];
        let fa = FeatureArgs { kind, omega: p.omega.as_deref(), eps: EPS };
        bidirectional_forward(&p.dims, &fa, Qkv { q: &p.q, k: &p.k, v: &p.v }, &mut out);
        let err = max_rel(&want, &out);
        assert!(err < 1e-5, "{kind:?}: {err}");
    }
}

#[test]
fn chunk_size_does_not_change_results() {
    for kind in KINDS {
        let p = problem(kind, 1, 3);
        let base = forward(&p, 37);
        for chunk in [1, 4, 16, 64] {
            let f = forward(&p, chunk);
            let want: Vec<f64> = base.out.iter().map(|&x| x as f64).collect();
            assert!(max_rel(&want, &f.out) < 1e-5, "{kind:?} C={chunk}");
        }
    }
}

/// `⟨dOut, out(x + h δ)⟩` differenced centrally against `⟨∇, δ⟩` from the backward.
#[test]
fn backward_matches_directional_derivative() {
    for kind in KINDS {
        let p = problem(kind, 8, 4);
        let Dims { bh, t, d, m, dv, .. } = p.dims;
        let mut r = Lcg(5);
        let g_out = r.vec(bh * t * dv);
        let f = forward(&p, 8);
        let (mut dq, mut dk, mut dvv) =
            (vec![f32::NAN; bh * t * d], vec![f32::NAN; bh * t * d], vec![f32::NAN; bh * t * dv]);
        let (mut ds, mut dz) = (vec![f64::NAN; bh * m * dv], vec![f64::NAN; bh * m]);
        let fa = FeatureArgs { kind, omega: p.omega.as_deref(), eps: EPS };
        let so = State { s: &f.s, z: &f.z, offset: &f.offset };
        let g = Grads { dq: &mut dq, dk: &mut dk, dv: &mut dvv, ds: &mut ds, dz: &mut dz };
        causal_backward(&p.dims, &fa, Qkv { q: &p.q, k: &p.k, v: &p.v }, None, so, None, &g_out, None, g).unwrap();
        let dirs = [r.vec(bh * t * d), r.vec(bh * t * d), r.vec(bh * t * dv)];
        let moved = |x: &[f32], e: &[f32], h: f64| -> Vec<f64> {
            x.iter().zip(e).map(|(a, b)| *a as f64 + h * *b as f64).collect()
        };
        let loss = |h: f64| {
            let out =
                naive_causal_at(&p, &moved(&p.q, &dirs[0], h), &moved(&p.k, &dirs[1], h), &moved(&p.v, &dirs[2], h));
            out.iter().zip(&g_out).map(|(o, g)| o * *g as f64).sum::<f64>()
        };
        let h = 1e-5;
        let numeric = (loss(h) - loss(-h)) / (2.0 * h);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
        let analytic = dot(&dq, &dirs[0]) + dot(&dk, &dirs[1]) + dot(&dvv, &dirs[2]);
        let rel = (numeric - analytic).abs() / numeric.abs().max(1e-3);
        assert!(rel < 1e-4, "{kind:?}: numeric {numeric} analytic {analytic}");
    }
}

#[test]
fn backward_refuses_a_state_from_other_keys() {
    let p = problem(Feature::Favor, 8, 6);
    let Dims { bh, t, d, m, dv, .. } = p.dims;
    let mut other = problem(Feature::Favor, 8, 6);
    other.k.iter_mut().for_each(|x| *x *= 3.0);
    let f = forward(&other, 8);
    let (mut dq, mut dk, mut dvv) = (vec![0f32; bh * t * d], vec![0f32; bh * t * d], vec![0f32; bh * t * dv]);
    let (mut ds, mut dz) = (vec![0f64; bh * m * dv], vec![0f64; bh * m]);
    let fa = FeatureArgs { kind: Feature::Favor, omega: p.omega.as_deref(), eps: EPS };
    let g = Grads { dq: &mut dq, dk: &mut dk, dv: &mut dvv, ds: &mut ds, dz: &mut dz };
    let so = State { s: &f.s, z: &f.z, offset: &f.offset };
    let res = causal_backward(
        &p.dims,
        &fa,
        Qkv { q: &p.q, k: &p.k, v: &p.v },
        None,
        so,
        None,
        &vec![1.0; bh * t * dv],
        None,
        g,
    );
    assert_eq!(res, Err(StateMismatch { slice: 0 }));
}

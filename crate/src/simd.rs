//! The f32x4 seam: every kernel is written against `F4`. On wasm32 with `simd128` it is a
//! `v128`; everywhere else (the scalar wasm binary, native tests) it is four plain `f32`s, so
//! both builds run the same algorithm with the same rounding in the element-wise parts. A third
//! build adds `relaxed-simd`: `mul_add` becomes `f32x4.relaxed_madd` (fused multiply-add where
//! the CPU has it), the only difference from the SIMD build.

// `add`/`sub`/`mul`/`max` name lane-wise ops on purpose; `F4` has no operator traits.
#![allow(clippy::should_implement_trait)]

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct F4(v128);

    impl F4 {
        #[inline(always)]
        pub fn zero() -> F4 {
            F4(f32x4_splat(0.0))
        }
        #[inline(always)]
        pub fn splat(x: f32) -> F4 {
            F4(f32x4_splat(x))
        }
        /// Loads `s[0..4]`.
        #[inline(always)]
        pub fn load(s: &[f32]) -> F4 {
            assert!(s.len() >= 4);
            // SAFETY: length checked above; v128_load allows unaligned addresses.
            F4(unsafe { v128_load(s.as_ptr() as *const v128) })
        }
        /// Loads `p[0..4]`.
        ///
        /// # Safety
        /// `p..p + 4` must be readable.
        #[inline(always)]
        pub unsafe fn load_ptr(p: *const f32) -> F4 {
            F4(v128_load(p as *const v128))
        }
        /// Stores into `s[0..4]`.
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            assert!(s.len() >= 4);
            // SAFETY: length checked above; v128_store allows unaligned addresses.
            unsafe { v128_store(s.as_mut_ptr() as *mut v128, self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: F4) -> F4 {
            F4(f32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn sub(self, o: F4) -> F4 {
            F4(f32x4_sub(self.0, o.0))
        }
        #[inline(always)]
        pub fn mul(self, o: F4) -> F4 {
            F4(f32x4_mul(self.0, o.0))
        }
        /// `self + a * b`: two roundings, as wasm SIMD has no fused multiply-add, unless the
        /// binary is built with `relaxed-simd`, where the engine may fuse (one rounding).
        #[cfg(not(target_feature = "relaxed-simd"))]
        #[inline(always)]
        pub fn mul_add(self, a: F4, b: F4) -> F4 {
            F4(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }
        /// `self + a * b` with `f32x4.relaxed_madd`: fused where the CPU has FMA.
        #[cfg(target_feature = "relaxed-simd")]
        #[inline(always)]
        pub fn mul_add(self, a: F4, b: F4) -> F4 {
            F4(f32x4_relaxed_madd(a.0, b.0, self.0))
        }
        /// Lane-wise maximum (inputs are finite; the kernels validate them).
        #[inline(always)]
        pub fn max(self, o: F4) -> F4 {
            F4(f32x4_max(self.0, o.0))
        }
        #[inline(always)]
        pub fn hsum(self) -> f32 {
            let a = self.0;
            (f32x4_extract_lane::<0>(a) + f32x4_extract_lane::<1>(a))
                + (f32x4_extract_lane::<2>(a) + f32x4_extract_lane::<3>(a))
        }
        #[inline(always)]
        pub fn hmax(self) -> f32 {
            let a = f32x4_max(self.0, i32x4_shuffle::<2, 3, 0, 1>(self.0, self.0));
            let a = f32x4_max(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
            f32x4_extract_lane::<0>(a)
        }
        /// `exp(x)` for every lane (see `exp_parts`).
        #[inline(always)]
        pub fn exp(self) -> F4 {
            let x = f32x4_max(self.0, f32x4_splat(super::EXP_LO));
            let x = f32x4_min(x, f32x4_splat(super::EXP_HI));
            let n = f32x4_nearest(f32x4_mul(x, f32x4_splat(core::f32::consts::LOG2_E)));
            let r = f32x4_sub(x, f32x4_mul(n, f32x4_splat(super::LN2_HI)));
            let r = f32x4_sub(r, f32x4_mul(n, f32x4_splat(super::LN2_LO)));
            let mut p = f32x4_splat(super::EXP_P[0]);
            for c in &super::EXP_P[1..] {
                p = f32x4_add(f32x4_mul(p, r), f32x4_splat(*c));
            }
            let scale = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
            let y = f32x4_mul(p, scale);
            let under = f32x4_lt(self.0, f32x4_splat(super::EXP_LO));
            F4(v128_andnot(y, under))
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    #[derive(Clone, Copy)]
    pub struct F4([f32; 4]);

    impl F4 {
        #[inline(always)]
        pub fn zero() -> F4 {
            F4([0.0; 4])
        }
        #[inline(always)]
        pub fn splat(x: f32) -> F4 {
            F4([x; 4])
        }
        #[inline(always)]
        pub fn load(s: &[f32]) -> F4 {
            F4([s[0], s[1], s[2], s[3]])
        }
        /// Loads `p[0..4]`.
        ///
        /// # Safety
        /// `p..p + 4` must be readable.
        #[inline(always)]
        pub unsafe fn load_ptr(p: *const f32) -> F4 {
            F4([*p, *p.add(1), *p.add(2), *p.add(3)])
        }
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            s[..4].copy_from_slice(&self.0);
        }
        #[inline(always)]
        fn map2(self, o: F4, f: impl Fn(f32, f32) -> f32) -> F4 {
            F4([f(self.0[0], o.0[0]), f(self.0[1], o.0[1]), f(self.0[2], o.0[2]), f(self.0[3], o.0[3])])
        }
        #[inline(always)]
        pub fn add(self, o: F4) -> F4 {
            self.map2(o, |a, b| a + b)
        }
        #[inline(always)]
        pub fn sub(self, o: F4) -> F4 {
            self.map2(o, |a, b| a - b)
        }
        #[inline(always)]
        pub fn mul(self, o: F4) -> F4 {
            self.map2(o, |a, b| a * b)
        }
        #[inline(always)]
        pub fn mul_add(self, a: F4, b: F4) -> F4 {
            self.add(a.mul(b))
        }
        #[inline(always)]
        pub fn max(self, o: F4) -> F4 {
            self.map2(o, |a, b| if b > a { b } else { a })
        }
        #[inline(always)]
        pub fn hsum(self) -> f32 {
            (self.0[0] + self.0[1]) + (self.0[2] + self.0[3])
        }
        #[inline(always)]
        pub fn hmax(self) -> f32 {
            self.0[0].max(self.0[1]).max(self.0[2].max(self.0[3]))
        }
        #[inline(always)]
        pub fn exp(self) -> F4 {
            F4(self.0.map(super::exp_scalar))
        }
    }
}

pub use imp::F4;

/// Inputs below this flush to 0 (just above where `2^n` would leave the normal range).
const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// `exp(r) ≈ 1 + r + r² P(r)` on `|r| ≤ ln2/2` (Cephes `expf`), in Horner order.
const EXP_P: [f32; 8] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5, 1.0, 1.0];

/// Same algorithm as the SIMD `exp`, one lane: `x = n ln2 + r`, `exp(x) = 2^n p(r)`.
#[inline(always)]
pub fn exp_scalar(x0: f32) -> f32 {
    let x = x0.clamp(EXP_LO, EXP_HI);
    let n = (x * core::f32::consts::LOG2_E).round_ties_even();
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = EXP_P[0];
    for c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * f32::from_bits((((n as i32) + 127) as u32) << 23);
    if x0 < EXP_LO {
        0.0
    } else {
        y
    }
}

/// `Σ a_i b_i`, four lanes then a scalar tail.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let n4 = n & !3;
    let mut acc0 = F4::zero();
    let mut acc1 = F4::zero();
    let mut i = 0;
    while i + 8 <= n4 {
        acc0 = acc0.mul_add(F4::load(&a[i..]), F4::load(&b[i..]));
        acc1 = acc1.mul_add(F4::load(&a[i + 4..]), F4::load(&b[i + 4..]));
        i += 8;
    }
    if i < n4 {
        acc0 = acc0.mul_add(F4::load(&a[i..]), F4::load(&b[i..]));
        i += 4;
    }
    let mut s = acc0.add(acc1).hsum();
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

/// `y += alpha x`.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let n4 = n & !3;
    let a = F4::splat(alpha);
    let mut i = 0;
    while i < n4 {
        F4::load(&y[i..]).mul_add(a, F4::load(&x[i..])).store(&mut y[i..]);
        i += 4;
    }
    while i < n {
        y[i] += alpha * x[i];
        i += 1;
    }
}

/// `y *= alpha`.
#[inline]
pub fn scale(y: &mut [f32], alpha: f32) {
    let n4 = y.len() & !3;
    let a = F4::splat(alpha);
    let mut i = 0;
    while i < n4 {
        F4::load(&y[i..]).mul(a).store(&mut y[i..]);
        i += 4;
    }
    for e in &mut y[n4..] {
        *e *= alpha;
    }
}

/// `y = exp(y - shift)` in place.
#[inline]
pub fn exp_shifted(y: &mut [f32], shift: f32) {
    let n4 = y.len() & !3;
    let s = F4::splat(shift);
    let mut i = 0;
    while i < n4 {
        F4::load(&y[i..]).sub(s).exp().store(&mut y[i..]);
        i += 4;
    }
    for e in &mut y[n4..] {
        *e = exp_scalar(*e - shift);
    }
}

/// Whether every value is finite: `x · 0` is `±0` for finite `x` and NaN for NaN or ±inf,
/// and a sum of them stays NaN once one is.
#[inline]
pub fn all_finite(x: &[f32]) -> bool {
    let n4 = x.len() & !3;
    let zero = F4::zero();
    let mut acc = F4::zero();
    let mut i = 0;
    while i < n4 {
        acc = acc.mul_add(F4::load(&x[i..]), zero);
        i += 4;
    }
    let mut s = acc.hsum();
    for &e in &x[n4..] {
        s += e * 0.0;
    }
    s == 0.0
}

/// `max_i y_i` (`-inf` for an empty slice).
#[inline]
pub fn max(y: &[f32]) -> f32 {
    let n4 = y.len() & !3;
    let mut m = F4::splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i < n4 {
        m = m.max(F4::load(&y[i..]));
        i += 4;
    }
    let mut r = m.hmax();
    for &e in &y[n4..] {
        r = r.max(e);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_within_3_ulp_class_error() {
        let mut worst = 0f64;
        let mut x = -86.9f32;
        while x < 88.0 {
            let got = exp_scalar(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_scalar(0.0), 1.0);
        assert_eq!(exp_scalar(-200.0), 0.0);
        assert!(exp_scalar(-87.5) == 0.0);
    }

    #[test]
    fn simd_helpers_have_tails() {
        let a: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..11).map(|i| (i * 2) as f32).collect();
        assert_eq!(dot(&a, &b), (0..11).map(|i| (i * i * 2) as f32).sum::<f32>());
        let mut y = a.clone();
        axpy(&mut y, 2.0, &b);
        assert_eq!(y[10], 50.0);
        assert_eq!(max(&a), 10.0);
        assert!(all_finite(&a) && all_finite(&[]) && all_finite(&[f32::MAX, -f32::MAX, 0.0, 1e-45, 3.0]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 3, 4, 10] {
                let mut b = a.clone();
                b[at] = bad;
                assert!(!all_finite(&b), "{bad} at {at}");
            }
        }
        let mut e = vec![0.0f32; 7];
        exp_shifted(&mut e, 1.0);
        assert!(e.iter().all(|&v| (v - (-1f32).exp()).abs() < 1e-7));
    }
}

//! Small row-major matrix products, register-blocked over `F4`: a 4×8 block of `C` lives in
//! eight vector accumulators while the shared dimension streams through. The chunked kernels
//! only ever need `C (+)= A · B`; transposes are packed explicitly by the caller.

use crate::simd::F4;

/// Which part of the product the caller needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// Every entry.
    Full,
    /// Only `C[i][j]` with `j ≤ i`; other entries are left with unspecified values.
    LowerOut,
    /// `A` is lower triangular (`A[i][l] = 0` for `l > i`): skip those terms.
    LowerA,
    /// `A` is upper triangular (`A[i][l] = 0` for `l < i`): skip those terms.
    UpperA,
}

/// A row-major matrix view: `rows × cols` with leading dimension `ld`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

/// `C[m×n] = A[m×k] · B[k×n]` (`acc = false`) or `C += A · B` (`acc = true`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: View, b: View, c: &mut [f32], ldc: usize, acc: bool, tri: Tri) {
    let mut i0 = 0;
    while i0 < m {
        let r = (m - i0).min(4);
        let n_lim = if tri == Tri::LowerOut { n.min(i0 + r) } else { n };
        let ks = match tri {
            Tri::LowerA => 0..k.min(i0 + r),
            Tri::UpperA => i0.min(k)..k,
            _ => 0..k,
        };
        match r {
            4 => rows::<4>(i0, n_lim, ks, a, b, c, ldc, acc),
            3 => rows::<3>(i0, n_lim, ks, a, b, c, ldc, acc),
            2 => rows::<2>(i0, n_lim, ks, a, b, c, ldc, acc),
            _ => rows::<1>(i0, n_lim, ks, a, b, c, ldc, acc),
        }
        i0 += r;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows<const R: usize>(
    i0: usize,
    n: usize,
    ks: core::ops::Range<usize>,
    a: View,
    b: View,
    c: &mut [f32],
    ldc: usize,
    acc: bool,
) {
    let (k0, k) = (ks.start, ks.end);
    let arow: [&[f32]; R] = core::array::from_fn(|r| &a.data[(i0 + r) * a.ld..(i0 + r) * a.ld + k]);
    // The inner loops read `b[l][j0..j0 + 8]` for `l < k`, `j0 + 8 ≤ n` and `arow[r][l]`: one
    // bounds check here instead of three per step (the loop is issue-bound, not FMA-bound).
    if k > k0 {
        assert!((k - 1) * b.ld + n <= b.data.len());
    }
    let bp = b.data.as_ptr();
    let mut j0 = 0;
    while j0 + 8 <= n {
        let mut s = [[F4::zero(); 2]; R];
        for l in k0..k {
            // SAFETY: l*ld + j0 + 8 ≤ (k-1)*ld + n ≤ b.data.len() (asserted above).
            let (b0, b1) = unsafe {
                let p = bp.add(l * b.ld + j0);
                (F4::load_ptr(p), F4::load_ptr(p.add(4)))
            };
            for r in 0..R {
                // SAFETY: l < k = arow[r].len().
                let x = F4::splat(unsafe { *arow[r].get_unchecked(l) });
                s[r][0] = s[r][0].mul_add(x, b0);
                s[r][1] = s[r][1].mul_add(x, b1);
            }
        }
        for (r, sr) in s.iter().enumerate() {
            let crow = &mut c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + 8];
            if acc {
                F4::load(crow).add(sr[0]).store(crow);
                F4::load(&crow[4..]).add(sr[1]).store(&mut crow[4..]);
            } else {
                sr[0].store(crow);
                sr[1].store(&mut crow[4..]);
            }
        }
        j0 += 8;
    }
    if j0 + 4 <= n {
        let mut s = [F4::zero(); R];
        for l in k0..k {
            // SAFETY: as above, with j0 + 4 ≤ n.
            let b0 = unsafe { F4::load_ptr(bp.add(l * b.ld + j0)) };
            for r in 0..R {
                // SAFETY: l < k = arow[r].len().
                s[r] = s[r].mul_add(F4::splat(unsafe { *arow[r].get_unchecked(l) }), b0);
            }
        }
        for (r, sr) in s.iter().enumerate() {
            let crow = &mut c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + 4];
            if acc {
                F4::load(crow).add(*sr).store(crow);
            } else {
                sr.store(crow);
            }
        }
        j0 += 4;
    }
    for j in j0..n {
        for (r, ar) in arow.iter().enumerate() {
            let mut s = 0f32;
            for l in k0..k {
                s += ar[l] * b.data[l * b.ld + j];
            }
            let cij = &mut c[(i0 + r) * ldc + j];
            *cij = if acc { *cij + s } else { s };
        }
    }
}

/// `dst[cols×rows] = srcᵀ` for a row-major `src[rows×cols]` with leading dimension `ld`.
pub fn transpose(rows: usize, cols: usize, src: &[f32], ld: usize, dst: &mut [f32]) {
    for i in 0..rows {
        let row = &src[i * ld..i * ld + cols];
        for (j, &x) in row.iter().enumerate() {
            dst[j * rows + i] = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] as f64 * b[l * n + j] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_on_awkward_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (5, 13, 7), (4, 8, 3), (9, 12, 17), (64, 64, 128), (3, 5, 0)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
            let want = naive(m, n, k, &a, &b);
            let mut c = vec![f32::NAN; m * n];
            gemm(m, n, k, View { data: &a, ld: k }, View { data: &b, ld: n }, &mut c, n, false, Tri::Full);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
            }
            gemm(m, n, k, View { data: &a, ld: k }, View { data: &b, ld: n }, &mut c, n, true, Tri::Full);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() <= 2e-4 * (1.0 + y.abs()));
            }
        }
    }

    #[test]
    fn triangular_variants() {
        let (m, k) = (11, 11);
        let mut a: Vec<f32> = (0..m * k).map(|i| ((i * 3 % 7) as f32) - 3.0).collect();
        let b: Vec<f32> = (0..k * m).map(|i| ((i * 5 % 9) as f32) - 4.0).collect();
        let full = naive(m, m, k, &a, &b);
        let mut c = vec![f32::NAN; m * m];
        gemm(m, m, k, View { data: &a, ld: k }, View { data: &b, ld: m }, &mut c, m, false, Tri::LowerOut);
        for i in 0..m {
            for j in 0..=i {
                assert_eq!(c[i * m + j], full[i * m + j]);
            }
        }
        for i in 0..m {
            for l in i + 1..k {
                a[i * k + l] = 0.0;
            }
        }
        let want = naive(m, m, k, &a, &b);
        gemm(m, m, k, View { data: &a, ld: k }, View { data: &b, ld: m }, &mut c, m, false, Tri::LowerA);
        assert_eq!(c, want);
        let upper: Vec<f32> =
            (0..m * k).map(|x| if x % k >= x / k { ((x * 3 % 7) as f32) - 3.0 } else { 0.0 }).collect();
        let want = naive(m, m, k, &upper, &b);
        gemm(m, m, k, View { data: &upper, ld: k }, View { data: &b, ld: m }, &mut c, m, false, Tri::UpperA);
        assert_eq!(c, want);
    }
}

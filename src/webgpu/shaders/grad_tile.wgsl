// Tiled products of the backward kernels (grad_common.wgsl calls them when TILED; the tiles,
// `Mat` and `mma` are in tile.wgsl). Same formulas as the plain loops beside them.

/** E_ij = a_ij (v_j·gN_i + gD_i) for j ≤ i, 0 above, into oE. */
fn scoreGradsTiled(t0: u32, n: u32) {
  let dv = P.dv;
  let gn = mat(SRC_W, oGN, dv, 1u, n);
  let v = mat(SRC_V, (wid * P.t + t0) * dv, dv, 1u, n);
  for (var t = 0u; t < tileCount(n, n); t++) {
    let i0 = tileI(t, n);
    let j0 = tileJ(t, n);
    var c = zeroAcc();
    if (j0 < i0 + TM) { c = mma(c, gn, v, i0, j0, 0u, dv); }
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let j = tileCol(j0, q);
      if (tileHas(i, j, n, n)) {
        var x = 0.0;
        if (j <= i) { x = frame(W[oOffs + j], W[oOffs + i]) * (accAt(c, q) + W[oGD + i]); }
        W[oE + i * n + j] = x;
      }
    }
  }
}

/**
 * ∂φq_i = sq_i (S_in gN_i + gD_i z_in) + Σ_{j≤i} E_ij φk_j into oDpq,
 * ∂φk_j = w_j (G v_j + Gz) + Σ_{i≥j} E_ij φq_i into oDpk, and
 * ∂v_j = w_j Gᵀ φk_j + Σ_{i≥j} A_ij gN_i into DV, for the chunk that starts from the state at oS.
 */
fn featureGradsTiled(t0: u32, n: u32, oS: u32) {
  let m = P.m;
  let dv = P.dv;
  let vb = (wid * P.t + t0) * dv;
  let oZ = oS + m * dv;
  let oGz = oG + m * dv;
  let gnSq = rowScaled(mat(SRC_W, oGN, dv, 1u, n), oSq);
  let s = mat(SRC_W, oS, dv, 1u, m);
  let e = mat(SRC_W, oE, n, 1u, n);
  let pkT = mat(SRC_W, oPk, 1u, m, m); // (r, j) → φk_j[r]
  for (var t = 0u; t < tileCount(n, m); t++) {
    let i0 = tileI(t, m);
    let j0 = tileJ(t, m);
    var c = mma(zeroAcc(), gnSq, s, i0, j0, 0u, dv);
    c = mma(c, e, pkT, i0, j0, 0u, min(n, i0 + TM)); // E is 0 above the diagonal
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let r = tileCol(j0, q);
      if (tileHas(i, r, n, m)) { W[oDpq + i * m + r] = accAt(c, q) + W[oSq + i] * W[oGD + i] * W[oZ + r]; }
    }
  }
  let vW = rowScaled(mat(SRC_V, vb, dv, 1u, n), oWt);
  let g = mat(SRC_W, oG, dv, 1u, m);
  let eT = mat(SRC_W, oE, 1u, n, n); // (j, i) → E_ij
  let pqT = mat(SRC_W, oPq, 1u, m, m);
  for (var t = 0u; t < tileCount(n, m); t++) {
    let i0 = tileI(t, m);
    let j0 = tileJ(t, m);
    var c = mma(zeroAcc(), vW, g, i0, j0, 0u, dv);
    c = mma(c, eT, pqT, i0, j0, i0, n); // E_ij is 0 for i < j
    for (var q = 0u; q < 16u; q++) {
      let j = tileRow(i0, q);
      let r = tileCol(j0, q);
      if (tileHas(j, r, n, m)) { W[oDpk + j * m + r] = accAt(c, q) + W[oWt + j] * W[oGz + r]; }
    }
  }
  let pkW = rowScaled(mat(SRC_W, oPk, m, 1u, n), oWt);
  let gT = mat(SRC_W, oG, 1u, dv, dv); // (c, r) → G[r, c]
  let aT = mat(SRC_W, oA, 1u, n, n);
  let gnT = mat(SRC_W, oGN, 1u, dv, dv); // (c, i) → gN_i[c]
  for (var t = 0u; t < tileCount(n, dv); t++) {
    let i0 = tileI(t, dv);
    let j0 = tileJ(t, dv);
    var c = mma(zeroAcc(), pkW, gT, i0, j0, 0u, m);
    c = mma(c, aT, gnT, i0, j0, i0, n);
    for (var q = 0u; q < 16u; q++) {
      let j = tileRow(i0, q);
      let col = tileCol(j0, q);
      if (tileHas(j, col, n, dv)) { DV[vb + j * dv + col] = accAt(c, q); }
    }
  }
}

/** The S part of the state-gradient increment (ΦQᵀ diag(sq) GN)[r, c] through `takeGrad(o, r·dv + c, ·, rs, accumulate)`. */
fn gradIncrementTiled(n: u32, o: u32, rs: f32, accumulate: bool) {
  let m = P.m;
  let dv = P.dv;
  let pq = kScaled(mat(SRC_W, oPq, 1u, m, m), oSq); // (r, i) → sq_i φq_i[r]
  let gnT = mat(SRC_W, oGN, 1u, dv, dv);
  for (var t = 0u; t < tileCount(m, dv); t++) {
    let i0 = tileI(t, dv);
    let j0 = tileJ(t, dv);
    let c = mma(zeroAcc(), pq, gnT, i0, j0, 0u, n);
    for (var q = 0u; q < 16u; q++) {
      let r = tileRow(i0, q);
      let col = tileCol(j0, q);
      if (tileHas(r, col, m, dv)) { takeGrad(o, r * dv + col, accAt(c, q), rs, accumulate); }
    }
  }
}

/** ∂x = ωᵀ ∂ℓ (favor: minus x' Σ_r ∂ℓ_r, the sums at oSu), times d^(-1/4), into DQ (which = 0) or DK (1). */
fn featureBackwardTiled(which: u32, t0: u32, n: u32, oDp: u32) {
  let m = P.m;
  let d = P.d;
  let ds = P.dscale;
  let dp = mat(SRC_W, oDp, m, 1u, n);
  let omT = mat(SRC_W, P.omegaOff + head * m * d, 1u, d, d); // (c, r) → ω_r[c]
  for (var t = 0u; t < tileCount(n, d); t++) {
    let i0 = tileI(t, d);
    let j0 = tileJ(t, d);
    let c = mma(zeroAcc(), dp, omT, i0, j0, 0u, m);
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let col = tileCol(j0, q);
      if (tileHas(i, col, n, d)) {
        let xi = (wid * P.t + t0 + i) * d + col;
        var acc = accAt(c, q);
        if (P.feature == 0u) { acc = ds * (acc - xin(which, xi) * ds * W[oSu + i]); } else { acc *= ds; }
        if (which == 0u) { DQ[xi] = acc; } else { DK[xi] = acc; }
      }
    }
  }
}

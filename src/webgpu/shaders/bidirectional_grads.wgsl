// Shared by the bidirectional backward kernels (after grad_common.wgsl, bidirectional_common.wgsl):
// the query side of a chunk (dq and its share of KV_g = Σ φq gNᵀ, kz_g = Σ gD φq) and the key side
// (dk, dv from KV_g, kz_g).

/**
 * Query side of chunk [t0, t0 + n) against the summary at `oS`: writes dq; adds (accumulate) or
 * writes the chunk's KV_g, kz_g at word `oAcc`.
 */
fn queryGrads(t0: u32, n: u32, oS: u32, oAcc: u32, accumulate: bool) {
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  queryFeatures(t0, n);
  queryAttend(n, oS);
  upstreamGrads(t0, n);
  // ∂φq_i = KV gN_i + gD_i kz
  for (var e = lid; e < n * m; e += WG) {
    let i = e / m;
    let r = e % m;
    var s = W[oGD + i] * W[oS + mdv + r];
    for (var c = 0u; c < dv; c++) { s += W[oS + r * dv + c] * W[oGN + i * dv + c]; }
    W[oDpq + e] = s;
  }
  // KV_g += ΦQᵀ GN, kz_g += ΦQᵀ gD
  for (var e = lid; e < mdv + m; e += WG) {
    var s = 0.0;
    if (e < mdv) {
      let r = e / dv;
      let c = e % dv;
      for (var i = 0u; i < n; i++) { s += W[oPq + i * m + r] * W[oGN + i * dv + c]; }
    } else {
      let r = e - mdv;
      for (var i = 0u; i < n; i++) { s += W[oPq + i * m + r] * W[oGD + i]; }
    }
    if (accumulate) { W[oAcc + e] += s; } else { W[oAcc + e] = s; }
  }
  sync();
  featureBackward(0u, t0, n, oDpq, oUq, oPq);
}

/** Key side of chunk [t0, t0 + n), keys at offset `offIn`, with KV_g, kz_g at oG: writes dk, dv. */
fn keyGrads(t0: u32, n: u32, offIn: f32) {
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  keyFeatures(t0, n, offIn, true);
  let vb = (wid * P.t + t0) * dv;
  // ∂φk_j = KV_g v_j + kz_g, ∂v_j = KV_gᵀ φk_j
  for (var e = lid; e < n * m; e += WG) {
    let j = e / m;
    let r = e % m;
    var s = W[oG + mdv + r];
    for (var c = 0u; c < dv; c++) { s += W[oG + r * dv + c] * V[vb + j * dv + c]; }
    W[oDpk + e] = s;
  }
  for (var e = lid; e < n * dv; e += WG) {
    let j = e / dv;
    let c = e % dv;
    var s = 0.0;
    for (var r = 0u; r < m; r++) { s += W[oG + r * dv + c] * W[oPk + j * m + r]; }
    DV[vb + e] = s;
  }
  sync();
  featureBackward(1u, t0, n, oDpk, oUk, oPk);
}

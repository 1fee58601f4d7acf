// Bidirectional backward: the key summary (phases 1, 2), a query pass emitting dq and summing
// KV_g = Σ φq gNᵀ, kz_g = Σ gD φq (phase 3), then a key pass emitting dk and dv (phase 4).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let oS = setup(ids, local);
  let base = gradLayout(oS + stateWords());
  if (ids.x + ids.y * P.wgPerRow >= P.bh) { return; }
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  if (P.phase == 1u) { keyMaxPass(oS); return; }
  if (P.phase == 2u) { summaryPass(oS); return; }
  if (P.phase == 3u && P.cBegin == 0u) {
    for (var e = lid; e < mdv + m; e += WG) { W[oG + e] = 0.0; }
    sync();
  }
  for (var ci = P.cBegin; ci < P.cEnd && P.phase == 3u; ci++) {
    let t0 = ci * P.chunk;
    let n = min(P.chunk, P.t - t0);
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
      W[oG + e] += s;
    }
    sync();
    featureBackward(0u, t0, n, oDpq, oUq, oPq);
  }
  let offIn = W[oS + mdv + m];
  for (var ci = P.cBegin; ci < P.cEnd && P.phase == 4u; ci++) {
    let t0 = ci * P.chunk;
    let n = min(P.chunk, P.t - t0);
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
}

// Bidirectional backward: the key summary (phases 1, 2), a query pass emitting dq and summing
// KV_g = Σ φq gNᵀ, kz_g = Σ gD φq (phase 3), then a key pass emitting dk and dv (phase 4).
// One workgroup per slice (the chunk-parallel version: bidirectional_backward_parallel.wgsl).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let oS = setup(ids, local);
  let base = gradLayout(oS + stateWords());
  if (ids.x + ids.y * P.wgPerRow >= P.bh) { return; }
  let mdv = P.m * P.dv;
  if (P.phase == 1u) { keyMaxPass(oS); return; }
  if (P.phase == 2u) { summaryPass(oS); return; }
  if (P.phase == 3u && P.cBegin == 0u) {
    for (var e = lid; e < mdv + P.m; e += WG) { W[oG + e] = 0.0; }
    sync();
  }
  for (var ci = P.cBegin; ci < P.cEnd && P.phase == 3u; ci++) {
    let t0 = ci * P.chunk;
    queryGrads(t0, min(P.chunk, P.t - t0), oS, oG, true);
  }
  let offIn = W[oS + mdv + P.m];
  for (var ci = P.cBegin; ci < P.cEnd && P.phase == 4u; ci++) {
    let t0 = ci * P.chunk;
    keyGrads(t0, min(P.chunk, P.t - t0), offIn);
  }
}

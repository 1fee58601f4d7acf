// Bidirectional forward: out = ΦQ (ΦKᵀ V) / (ΦQ (ΦKᵀ 1) + ε), one workgroup per slice.
// Phases: 1 key maximum, 2 summary, 3 queries (see bidirectional_common.wgsl).

@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let oS = setup(ids, local);
  if (ids.x + ids.y * P.wgPerRow >= P.bh) { return; }
  if (P.phase == 1u) {
    keyMaxPass(oS);
  } else if (P.phase == 2u) {
    summaryPass(oS);
  } else {
    let dv = P.dv;
    for (var ci = P.cBegin; ci < P.cEnd; ci++) {
      let t0 = ci * P.chunk;
      let n = min(P.chunk, P.t - t0);
      queryFeatures(t0, n);
      queryAttend(n, oS);
      let ob = (wid * P.t + t0) * dv;
      for (var e = lid; e < n * dv; e += WG) { OUT[ob + e] = W[oNum + e]; }
      sync();
    }
  }
}

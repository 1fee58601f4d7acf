// Shared by the bidirectional kernels: the key summary KV = Σ φk vᵀ, kz = Σ φk over the whole
// sequence (FAVOR+ keys share one offset, the maximum logit over all keys), and the query side.
// Phases (P.phase) over chunks [cBegin, cEnd): 1 = key maximum (FAVOR+; the first dispatch also
// clears the summary), 2 = the summary, then the kernel's own query / key passes.

/** Phase 1: the running maximum key logit in the summary's offset word. */
fn keyMaxPass(oS: u32) {
  let offW = oS + P.m * P.dv + P.m;
  if (P.cBegin == 0u) {
    for (var e = lid; e < stateWords(); e += WG) { W[oS + e] = select(0.0, NEG, e == P.m * P.dv + P.m && P.feature == 0u); }
    sync();
  }
  if (P.feature == 0u) {
    for (var ci = P.cBegin; ci < P.cEnd; ci++) {
      let t0 = ci * P.chunk;
      let n = min(P.chunk, P.t - t0);
      project(1u, t0, n, oUk);
      keyRowMaxes(n);
      if (lid == 0u) {
        var run = W[offW];
        for (var i = 0u; i < n; i++) { run = max(run, W[oOffs + i]); }
        W[offW] = run;
      }
      sync();
    }
  }
}

/** Phase 2: KV, kz over chunks [cBegin, cEnd) with every key at the summary's offset. */
fn summaryPass(oS: u32) {
  let offW = oS + P.m * P.dv + P.m;
  for (var ci = P.cBegin; ci < P.cEnd; ci++) {
    let t0 = ci * P.chunk;
    let n = min(P.chunk, P.t - t0);
    keyFeatures(t0, n, W[offW], true);
    advance(t0, n, oS);
  }
}

/** den_i = φq_i·kz, out_i = φq_iᵀ KV / (den_i + ε) (0 where den_i == 0) into oDen, oNum. */
fn queryAttend(n: u32, oS: u32) {
  let m = P.m;
  let dv = P.dv;
  let oZ = oS + m * dv;
  for (var i = lid; i < n; i += WG) { W[oDen + i] = queryDot(i, oZ); }
  sync();
  for (var e = lid; e < n * dv; e += WG) {
    let i = e / dv;
    let c = e % dv;
    var s = 0.0;
    for (var r = 0u; r < m; r++) { s += W[oPq + i * m + r] * W[oS + r * dv + c]; }
    let den = W[oDen + i];
    W[oNum + e] = select(0.0, s / (den + P.eps), den != 0.0);
  }
  sync();
}

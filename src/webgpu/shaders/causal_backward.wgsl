// Fused chunked causal backward (crate/src/linear_attn/README.md, "Causal backward").
//
// Drift control: the float64 kernels undo each chunk by subtracting its increment from the end
// state. In float32 that subtraction drifts, so this kernel never subtracts: phase 1 runs the
// state forward from the input state and stores a checkpoint every `group` chunks; phase 2
// walks the groups in reverse, replays each group forward from its checkpoint into a ring of
// `group` chunk-start states, and runs the chunk backward from those. Extra memory per slice:
// (nGroups + group) states with group ≈ √(chunks), i.e. O(√(T/C)·M·D), and about one extra
// pass of state updates.

var<private> oSt: u32;
var<private> oRing: u32;
var<private> oCk: u32;

fn chunkBackward(t0: u32, n: u32, oS: u32) {
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  let oZ = oS + mdv;
  let offIn = W[oZ + m];
  queryFeatures(t0, n);
  keyFeatures(t0, n, offIn, false);
  scores(n);
  attend(t0, n, oS);
  upstreamGrads(t0, n);
  let vb = (wid * P.t + t0) * dv;
  // E_ij = a_ij (v_j·gN_i + gD_i), j ≤ i
  for (var e = lid; e < n * n; e += WG) {
    let i = e / n;
    let j = e % n;
    var x = 0.0;
    if (j <= i) {
      var s = W[oGD + i];
      for (var c = 0u; c < dv; c++) { s += V[vb + j * dv + c] * W[oGN + i * dv + c]; }
      x = frame(W[oOffs + j], W[oOffs + i]) * s;
    }
    W[oE + e] = x;
  }
  sync();
  let oGz = oG + mdv;
  // ∂φq_i = sq_i (S_in gN_i + gD_i z_in) + Σ_{j≤i} E_ij φk_j
  for (var e = lid; e < n * m; e += WG) {
    let i = e / m;
    let r = e % m;
    var s = W[oGD + i] * W[oZ + r];
    for (var c = 0u; c < dv; c++) { s += W[oS + r * dv + c] * W[oGN + i * dv + c]; }
    var a = 0.0;
    for (var j = 0u; j <= i; j++) { a += W[oE + i * n + j] * W[oPk + j * m + r]; }
    W[oDpq + e] = W[oSq + i] * s + a;
  }
  // ∂φk_j = w_j (G v_j + Gz) + Σ_{i≥j} E_ij φq_i
  for (var e = lid; e < n * m; e += WG) {
    let j = e / m;
    let r = e % m;
    var s = W[oGz + r];
    for (var c = 0u; c < dv; c++) { s += W[oG + r * dv + c] * V[vb + j * dv + c]; }
    var a = 0.0;
    for (var i = j; i < n; i++) { a += W[oE + i * n + j] * W[oPq + i * m + r]; }
    W[oDpk + e] = W[oWt + j] * s + a;
  }
  // ∂v_j = w_j Gᵀ φk_j + Σ_{i≥j} A_ij gN_i
  for (var e = lid; e < n * dv; e += WG) {
    let j = e / dv;
    let c = e % dv;
    var s = 0.0;
    for (var r = 0u; r < m; r++) { s += W[oG + r * dv + c] * W[oPk + j * m + r]; }
    var a = 0.0;
    for (var i = j; i < n; i++) { a += W[oA + i * n + j] * W[oGN + i * dv + c]; }
    DV[vb + e] = W[oWt + j] * s + a;
  }
  sync();
  // G ← exp(m_start − m_end) G + ΦQᵀ diag(sq) GN, Gz likewise with gD
  let rs = frame(offIn, W[oMisc]);
  for (var e = lid; e < mdv + m; e += WG) {
    var s = 0.0;
    if (e < mdv) {
      let r = e / dv;
      let c = e % dv;
      for (var i = 0u; i < n; i++) { s += W[oSq + i] * W[oPq + i * m + r] * W[oGN + i * dv + c]; }
    } else {
      let r = e - mdv;
      for (var i = 0u; i < n; i++) { s += W[oSq + i] * W[oPq + i * m + r] * W[oGD + i]; }
    }
    W[oG + e] = rs * W[oG + e] + s;
  }
  featureBackward(0u, t0, n, oDpq, oUq, oPq);
  featureBackward(1u, t0, n, oDpk, oUk, oPk);
}

// Dispatch phases (P.phase): 1 = run the state forward over chunks [cBegin, cEnd), storing
// checkpoints; 2 = replay chunks [cBegin, cEnd) of group gIndex from its checkpoint into the ring;
// 3 = backward of chunks [cBegin, cEnd) of group gIndex, in reverse.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let base = gradLayout(setup(ids, local));
  if (ids.x + ids.y * P.wgPerRow >= P.bh) { return; }
  let sw = stateWords();
  let mdv = P.m * P.dv;
  let offW = mdv + P.m;
  oSt = base;
  oRing = oSt + sw;
  oCk = oRing + P.group * sw;
  let nC = P.nChunks;
  let oDs = P.stateOutOff + wid * (mdv + P.m + 1u);
  if (P.phase == 1u) {
    if (P.cBegin == 0u) { loadStateIn(oSt); }
    for (var ci = P.cBegin; ci < P.cEnd; ci++) {
      let t0 = ci * P.chunk;
      let n = min(P.chunk, P.t - t0);
      if (ci % P.group == 0u) { copyState(oSt, oCk + (ci / P.group) * sw); }
      keyFeatures(t0, n, W[oSt + offW], false);
      advance(t0, n, oSt);
    }
    if (P.cEnd == nC) {
      if (lid == 0u) { W[oDs + mdv + P.m] = W[oSt + offW]; }   // m_T, checked against stateOut
      for (var e = lid; e < mdv + P.m; e += WG) {
        var g = 0.0;
        if (P.hasDState != 0u) { g = W[P.dStateOff + wid * (mdv + P.m) + e]; }
        W[oG + e] = g;
      }
      sync();
    }
  } else if (P.phase == 2u) {
    let c0 = P.gIndex * P.group;
    let c1 = min(nC, c0 + P.group);
    if (P.cBegin == c0) { copyState(oCk + P.gIndex * sw, oSt); }
    for (var ci = P.cBegin; ci < P.cEnd; ci++) {
      copyState(oSt, oRing + (ci - c0) * sw);
      if (ci + 1u < c1) {
        let t0 = ci * P.chunk;
        keyFeatures(t0, min(P.chunk, P.t - t0), W[oSt + offW], false);
        advance(t0, min(P.chunk, P.t - t0), oSt);
      }
    }
  } else {
    let c0 = P.gIndex * P.group;
    for (var ci = P.cEnd; ci > P.cBegin; ci--) {
      let t0 = (ci - 1u) * P.chunk;
      chunkBackward(t0, min(P.chunk, P.t - t0), oRing + (ci - 1u - c0) * sw);
    }
    if (P.cBegin == 0u) {
      for (var e = lid; e < mdv + P.m; e += WG) { W[oDs + e] = W[oG + e]; }
    }
  }
}

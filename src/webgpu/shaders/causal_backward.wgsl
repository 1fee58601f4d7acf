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

// Fused chunked causal forward (crate/src/linear_attn/README.md, "Causal forward").
// One workgroup per (b, h) slice. The slice's state lives at W[stateOutOff + slice·stateWords]
// (loaded from the input state by the first dispatch, updated chunk by chunk, left there as the
// output state). Each dispatch runs chunks [cBegin, cEnd).

@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  setup(ids, local);
  if (ids.x + ids.y * P.wgPerRow >= P.bh) { return; }
  let oS = P.stateOutOff + wid * stateWords();
  if (P.cBegin == 0u) { loadStateIn(oS); }
  let dv = P.dv;
  let offWord = oS + P.m * dv + P.m;
  for (var ci = P.cBegin; ci < P.cEnd; ci++) {
    let t0 = ci * P.chunk;
    let n = min(P.chunk, P.t - t0);
    let offIn = W[offWord];
    queryFeatures(t0, n);
    keyFeatures(t0, n, offIn, false);
    scores(n);
    attend(t0, n, oS);
    let ob = (wid * P.t + t0) * dv;
    for (var e = lid; e < n * dv; e += WG) { OUT[ob + e] = W[oNum + e]; }
    advance(t0, n, oS);
  }
}

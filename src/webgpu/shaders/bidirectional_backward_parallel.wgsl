// Chunk-parallel bidirectional backward: the summary in windows (phases 0–2,
// bidirectional_parallel.wgsl); phase 4, per (slice, chunk): dq and the chunk's share of
// KV_g, kz_g; phase 5, per (slice, state element): their sum over the window's chunks, added to
// the slice's total; phase 6, per (slice, chunk): dk, dv from the totals.

fn gsAt(slice: u32, k: u32) -> u32 { return summaryEnd() + (k * P.bh + slice) * stateElems(); }
fn gTotal(slice: u32) -> u32 { return gsAt(0u, P.window) + slice * stateElems(); }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = groupIndex(ids);
  if (summaryPhase(g, local)) { return; }
  let ns = stateElems();
  if (P.phase == 5u) {
    if (g >= P.bh * scanBlocks()) { return; }
    let s = g / scanBlocks();
    let e = (g % scanBlocks()) * WG + local;
    if (e < ns) {
      var acc = select(W[gTotal(s) + e], 0.0, P.cBegin == 0u);
      for (var k = 0u; k < P.cEnd - P.cBegin; k++) { acc += W[gsAt(s, k) + e]; }
      W[gTotal(s) + e] = acc;
    }
    return;
  }
  if (chunkPrologue(g, local)) { return; }
  gradLayout(oEnd);
  let k = g / P.bh;
  let ci = P.cBegin + k;
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  if (P.phase == 4u) {
    queryGrads(t0, n, runAt(wid), gsAt(wid, k), false);
    return;
  }
  for (var e = lid; e < ns; e += WG) { W[oG + e] = W[gTotal(wid) + e]; }
  sync();
  keyGrads(t0, n, W[runAt(wid) + ns]);
}

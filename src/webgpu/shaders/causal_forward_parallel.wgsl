// Chunk-parallel causal forward (shared parts and the chunk-state layout in chunk_parallel.wgsl):
// the same results as causal_forward.wgsl — same per-token offsets, same compensated state sums —
// with one workgroup per (slice, chunk) instead of per slice, for GPUs, where B·H workgroups
// alone leave most of the machine idle. Three dispatches per window of chunks:
//   phase 0, per (slice, chunk): the chunk's state increment in its own frame;
//   phase 1, per (slice, state element): the scan over the window's chunks (compensated pairs),
//            leaving the state before each chunk; the running state (the output state at
//            stateOutOff) carries it to the next window;
//   phase 3, per (slice, chunk): the chunk's outputs from the state before it, as the causal
//            kernel computes them; the first chunk's workgroup commits the window's end offset.
// (Phase numbers as in the other chunk-parallel kernels: 2 would be a commit of its own.)
// Memory: bh·window chunk scratch regions and chunk states, independent of T.

@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = groupIndex(ids);
  let ns = stateElems();
  if (P.phase == 1u) {
    if (g >= P.bh * scanBlocks()) { return; }
    let s = g / scanBlocks();
    let e = (g % scanBlocks()) * WG + local;
    let oS = P.stateOutOff + s * stateWords();
    var src = oS;
    if (P.cBegin == 0u) { src = select(NONE, P.stateInOff + s * stateWords(), P.hasState != 0u); }
    let r = scanChunks(s, e, loadRun(src, e));
    storeRun(oS, e, r, false);
    if (e == 0u) { W[offNext(s)] = r.off; }
    return;
  }
  if (chunkPrologue(g, local)) { return; }
  let k = g / P.bh;
  let ci = P.cBegin + k;
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  let oC = csAt(wid, k);
  queryFeatures(t0, n);
  keyFeaturesFromLogits(n, W[oC + ns], false); // phase 0 left the key logits in this slot
  scores(n);
  attend(t0, n, oC);
  let ob = (wid * P.t + t0) * P.dv;
  for (var e = lid; e < n * P.dv; e += WG) { OUT[ob + e] = W[oNum + e]; }
  if (k == 0u && lid == 0u) { W[P.stateOutOff + wid * stateWords() + ns] = W[offNext(wid)]; }
}

// Chunk-parallel causal backward (shared parts and the chunk-state layout in chunk_parallel.wgsl;
// the per-slice version and its drift control in causal_backward.wgsl). The sequence goes in
// windows of chunks: first forward, keeping the state at the start of every window (checkpoints:
// ⌈chunks/window⌉ states per slice); then backward, window by window from the last:
//   phase 0, per (slice, chunk): the chunk's state increment in its own frame;
//   phase 1 (forward pass), per (slice, state element): scan from the running state, storing it
//            as the window's checkpoint first; phase 2 commits the end offset;
//   phase 3 (backward pass), per (slice, state element): scan from the window's checkpoint,
//            leaving the state before each chunk (nothing is undone by subtraction);
//   phase 4, per (slice, chunk): what the chunk's queries add to the state gradient, ΔG_c (in the
//            frame of the state before the chunk), from the chunk's forward recomputed in the
//            scratch slot where phase 0 left the key logits;
//   phase 5, per (slice, state element): the reverse scan G_before = e^{m_before − m_after} G_after
//            + ΔG_c from the gradient carried from the later window (∂state_out for the last),
//            leaving G_after of each chunk in its slot;
//   phase 6, per (slice, chunk): the chunk's backward from its start state and G_after, reusing
//            the chunk's forward that phase 4 recomputed in the same scratch slot.
// Regions after the chunk states: ΔG / G_after per (slice, window chunk), the carried gradient
// per slice, the running state per slice, the checkpoints per (window, slice). Output as the
// per-slice kernel: the input state's gradient and m_T at stateOutOff + slice·(m·dv + m + 1).

fn gsAt(slice: u32, k: u32) -> u32 { return chunkParallelEnd() + (k * P.bh + slice) * stateElems(); }
fn gCarry(slice: u32) -> u32 { return gsAt(0u, P.window) + slice * stateElems(); }
fn runAt(slice: u32) -> u32 { return gCarry(P.bh) + slice * stateWords(); }
fn ckAt(slice: u32, w: u32) -> u32 { return runAt(P.bh) + (w * P.bh + slice) * stateWords(); }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = groupIndex(ids);
  let ns = stateElems();
  let w = P.cBegin / P.window;
  let phase = P.phase;
  if (phase == 1u || phase == 3u || phase == 5u) {
    if (g >= P.bh * scanBlocks()) { return; }
    let s = g / scanBlocks();
    let e = (g % scanBlocks()) * WG + local;
    if (phase == 1u) {
      var src = runAt(s);
      if (P.cBegin == 0u) { src = select(NONE, P.stateInOff + s * stateWords(), P.hasState != 0u); }
      let start = loadRun(src, e);
      storeRun(ckAt(s, w), e, start, true);
      let r = scanChunks(s, e, start);
      storeRun(runAt(s), e, r, false);
      if (e == 0u) { W[offNext(s)] = r.off; }
    } else if (phase == 3u) {
      _ = scanChunks(s, e, loadRun(ckAt(s, w), e));
    } else {
      reverseScan(s, e, w);
    }
    return;
  }
  if (phase == 2u) {
    if (g < P.bh && local == 0u) { W[runAt(g) + ns] = W[offNext(g)]; }
    return;
  }
  if (chunkPrologue(g, local)) { return; }
  let k = g / P.bh;
  let ci = P.cBegin + k;
  gradLayout(oEnd);
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  let oC = csAt(wid, k);
  let oGs = gsAt(wid, k);
  if (phase == 4u) {
    chunkRecompute(t0, n, oC, true); // phase 0 left the key logits in this slot
    stateGradIncrement(n, oGs, 1.0, false);
    return;
  }
  // Phase 6 runs in the same scratch slot as phase 4 (slot g = k·bh + slice), which left the
  // chunk's recomputed forward there; only phase 5's scan ran in between, outside the slots.
  for (var e = lid; e < ns; e += WG) { W[oG + e] = W[oGs + e]; }
  sync();
  chunkGrads(t0, n, oC);
}

/** Phase 5 for element `e` of slice `s` in window `w`. */
fn reverseScan(s: u32, e: u32, w: u32) {
  let ns = stateElems();
  let nIn = P.cEnd - P.cBegin;
  let mT = W[runAt(s) + ns];
  var gr = 0.0;
  var endOff = mT;
  if (P.cEnd == P.nChunks) {
    if (P.hasDState != 0u && e < ns) { gr = W[P.dStateOff + s * ns + e]; }
  } else {
    if (e < ns) { gr = W[gCarry(s) + e]; }
    endOff = W[ckAt(s, w + 1u) + ns];
  }
  var offAfter = endOff;
  for (var kk = 0u; kk < nIn; kk++) {
    let k = nIn - 1u - kk;
    let offBefore = W[csAt(s, k) + ns];
    if (e < ns) {
      let o = gsAt(s, k) + e;
      let dg = W[o];
      W[o] = gr;
      gr = frame(offBefore, offAfter) * gr + dg;
    }
    offAfter = offBefore;
  }
  if (e < ns) { W[gCarry(s) + e] = gr; }
  if (P.cBegin == 0u) {
    let oDs = P.stateOutOff + s * (ns + 1u);
    if (e < ns) { W[oDs + e] = gr; }
    if (e == 0u) { W[oDs + ns] = mT; }
  }
}

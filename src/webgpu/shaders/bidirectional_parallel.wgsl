// Chunk-parallel bidirectional kernels (after chunk_parallel.wgsl, bidirectional_common.wgsl):
// the key summary KV, kz at the largest key logit is built in windows of chunks — phase 0, per
// (slice, chunk): the chunk's increment in its own frame (chunkIncrement); phase 1, per (slice,
// state element): the scan that adds the window's chunks to the running summary; phase 2, per
// slice: commits the window's end offset — after which the running summary is the one the
// per-slice kernels build (every key at the final offset), at runAt(slice) in state layout.

fn runAt(slice: u32) -> u32 { return chunkParallelEnd() + slice * stateWords(); }
/** First word after the running summaries. */
fn summaryEnd() -> u32 { return runAt(P.bh); }

/** Phases 1 and 2 (phase 0 is `chunkIncrement`); false for other phases. */
fn summaryPhase(g: u32, local: u32) -> bool {
  if (P.phase == 1u) {
    if (g >= P.bh * scanBlocks()) { return true; }
    let s = g / scanBlocks();
    let e = (g % scanBlocks()) * WG + local;
    let r = scanChunks(s, e, loadRun(select(runAt(s), NONE, P.cBegin == 0u), e));
    storeRun(runAt(s), e, r, false);
    if (e == 0u) { W[offNext(s)] = r.off; }
    return true;
  }
  if (P.phase == 2u) {
    if (g < P.bh && local == 0u) { W[runAt(g) + stateElems()] = W[offNext(g)]; }
    return true;
  }
  return false;
}

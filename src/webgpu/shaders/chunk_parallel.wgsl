// Shared by the chunk-parallel causal kernels (prepended after common.wgsl): a workgroup per
// (slice, chunk) for the per-chunk work, a workgroup per (slice, block of state elements) for the
// scans over chunks. A call walks the sequence in windows of `P.window` chunks [cBegin, cEnd).
//
// Chunk state (slice s, k-th chunk of the window) at csOff + (k·bh + s)·csWords():
//   [S or ΔS (m·dv), z or Δz (m), offset before the chunk, L_c] — a state's layout up to its
//   offset, so the chunk functions read it as the state the chunk starts from. After the chunk
//   states, one word per slice: the offset after the window, written by a scan and committed to
//   the running state by a later dispatch (a scan's workgroups all read the running offset first).
//
// The increment of chunk c needs nothing from earlier chunks: with L_c its largest key logit
// (favor; 0 otherwise), w_j φk_j = exp(u_j − m_end) = e^{L_c − m_end} exp(u_j − L_c) whatever the
// running maxima in between, so ΔS_c is computed in the frame L_c and rescaled by the scan.

fn stateElems() -> u32 { return P.m * P.dv + P.m; }
fn csWords() -> u32 { return stateElems() + 2u; }
fn csAt(slice: u32, k: u32) -> u32 { return P.csOff + (k * P.bh + slice) * csWords(); }
fn offNext(slice: u32) -> u32 { return P.csOff + P.window * P.bh * csWords() + slice; }
/** First word after the chunk states and offsets (kernel-specific regions follow). */
fn chunkParallelEnd() -> u32 { return offNext(P.bh); }

/**
 * Start of a per-chunk phase for workgroup g = k·bh + slice (the window's k-th chunk, scratch slot
 * g): sets the workgroup up and runs phase 0 (the chunk's increment). True when the caller has
 * nothing left to do (phase 0 done, or g past the window's chunks).
 */
fn chunkPrologue(g: u32, local: u32) -> bool {
  if (g >= P.bh * (P.cEnd - P.cBegin)) { return true; }
  setupSlot(g % P.bh, g, local);
  if (P.phase != 0u) { return false; }
  chunkIncrement(P.cBegin + g / P.bh, g / P.bh);
  return true;
}

/** Chunk `ci`'s increment in its own frame into chunk state slot k (ΔS, Δz, then L_c). */
fn chunkIncrement(ci: u32, k: u32) {
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  let oC = csAt(wid, k);
  keyFeatures(t0, n, NEG, false);
  stateIncrement(t0, n, TAKE_STORE, oC, 1.0);
  if (lid == 0u) { W[oC + stateElems() + 1u] = W[oMisc]; }
}

/** One element of a running state: a compensated pair and the state's offset. */
struct Run { hi: f32, lo: f32, off: f32 }

/** Element `e` of the state at word `o` (state layout; the empty state when `o` is NONE). */
fn loadRun(o: u32, e: u32) -> Run {
  let ns = stateElems();
  if (o == NONE) { return Run(0.0, 0.0, select(0.0, NEG, P.feature == 0u)); }
  var r = Run(0.0, 0.0, W[o + ns]);
  if (e < ns) { r.hi = W[o + e]; r.lo = W[o + ns + 1u + e]; }
  return r;
}

const NONE: u32 = 0xffffffffu;

/** Element `e` of the state at word `o`; the offset (from e = 0) only when `withOffset`. */
fn storeRun(o: u32, e: u32, r: Run, withOffset: bool) {
  let ns = stateElems();
  if (e < ns) { W[o + e] = r.hi; W[o + ns + 1u + e] = r.lo; }
  if (withOffset && e == 0u) { W[o + ns] = r.off; }
}

/**
 * Element `e` of slice `slice`'s state through the window's chunks from `start`: leaves the
 * state before each chunk (as hi + lo) and its offset in the chunk states; returns the end state.
 */
fn scanChunks(slice: u32, e: u32, start: Run) -> Run {
  let ns = stateElems();
  var r = start;
  for (var k = 0u; k < P.cEnd - P.cBegin; k++) {
    let oC = csAt(slice, k);
    let L = W[oC + ns + 1u];
    let mEnd = max(r.off, L);
    if (e < ns) {
      let inc = frame(L, mEnd) * W[oC + e];
      let rs = frame(r.off, mEnd);
      W[oC + e] = r.hi + r.lo;
      if (P.compensate != 0u) {
        let p = twoSum(rs * r.hi, rs * r.lo, inc);
        r.hi = p.x;
        r.lo = p.y;
      } else {
        r.hi = rs * r.hi + inc;
      }
    }
    if (e == 0u) { W[oC + ns] = r.off; }
    r.off = mEnd;
  }
  return r;
}

/**
 * Workgroups per slice of a scan phase: workgroup g scans elements [(g % blocks)·WG, …) of slice
 * g / blocks, one per invocation (the functions above skip elements past the state's end).
 */
fn scanBlocks() -> u32 { return (stateElems() + WG - 1u) / WG; }

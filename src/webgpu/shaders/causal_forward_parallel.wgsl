// Chunk-parallel causal forward: the same results as causal_forward.wgsl (same per-token offsets,
// same compensated state sums) with one workgroup per (slice, chunk) instead of per slice, for
// GPUs, where B·H workgroups alone leave most of the machine idle.
//
// A call walks the sequence in windows of `window` chunks; each window is three dispatches:
//   phase 0, a workgroup per (slice, chunk): the chunk's state increment in the frame of its own
//            largest key logit L_c (favor; 0 otherwise): ΔS_c = Σ_j exp(u_j − L_c) φ… v_jᵀ, i.e.
//            the causal kernel's Σ_j w_j φk_j v_jᵀ with the running offset started from −∞;
//   phase 1, a workgroup per (slice, block of state elements): the scan over the window's chunks,
//            each invocation owning one element of S or z as a compensated (hi, lo) pair:
//            m_c = max(m_{c−1}, L_c), S ← e^{m_{c−1}−m_c} S + e^{L_c−m_c} ΔS_c, and leaves the
//            state before each chunk (and its offset) where ΔS_c was;
//   phase 2, a workgroup per (slice, chunk): the chunk's outputs from the state before it, as the
//            causal kernel computes them (running offsets from m_{c−1}).
// Since w_j φk_j = exp(u_j − m_end) whatever the running maxima in between, phase 0 needs no
// knowledge of earlier chunks. Memory: per window, bh·window chunk scratch regions and chunk
// states (m·dv + m + 2 words each), independent of T.
//
// Chunk state (slice s, k-th chunk of the window) at csOff + (k·bh + s)·csWords():
//   [S or ΔS (m·dv), z or Δz (m), L_c, offset before the chunk]; after them, one word per slice:
//   the offset after the window (committed to the running state by phase 2).
// The running state of slice s between windows is the output state at stateOutOff + s·stateWords().

@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;

fn csWords() -> u32 { return P.m * P.dv + P.m + 2u; }
fn csAt(slice: u32, k: u32) -> u32 { return P.csOff + (k * P.bh + slice) * csWords(); }
fn offNext(slice: u32) -> u32 { return P.csOff + P.window * P.bh * csWords() + slice; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = groupIndex(ids);
  let nIn = P.cEnd - P.cBegin;
  let mdv = P.m * P.dv;
  let ns = mdv + P.m;
  if (P.phase == 1u) {
    let blocks = (ns + WG - 1u) / WG;
    if (g >= P.bh * blocks) { return; }
    scan(g / blocks, (g % blocks) * WG + local, nIn);
    return;
  }
  if (g >= P.bh * nIn) { return; }
  let slice = g % P.bh;
  let k = g / P.bh;
  let ci = P.cBegin + k;
  setupSlot(slice, g, local);
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  let oC = csAt(slice, k);
  if (P.phase == 0u) {
    keyFeatures(t0, n, NEG, false);
    for (var e = lid; e < ns; e += WG) { W[oC + e] = increment(e, t0, n); }
    if (lid == 0u) { W[oC + ns] = W[oMisc]; }
    return;
  }
  queryFeatures(t0, n);
  keyFeatures(t0, n, W[oC + ns + 1u], false);
  scores(n);
  attend(t0, n, oC);
  let ob = (wid * P.t + t0) * P.dv;
  for (var e = lid; e < n * P.dv; e += WG) { OUT[ob + e] = W[oNum + e]; }
  if (k == 0u && lid == 0u) { W[P.stateOutOff + slice * stateWords() + ns] = W[offNext(slice)]; }
}

/** Phase 1 for element `e` of slice `slice`'s state over the window's `nIn` chunks. */
fn scan(slice: u32, e: u32, nIn: u32) {
  let ns = P.m * P.dv + P.m;
  let sw = stateWords();
  let oS = P.stateOutOff + slice * sw;
  var off: f32;
  var hi = 0.0;
  var lo = 0.0;
  if (P.cBegin == 0u) {
    off = select(0.0, NEG, P.feature == 0u);
    if (P.hasState != 0u) {
      let oI = P.stateInOff + slice * sw;
      off = W[oI + ns];
      if (e < ns) { hi = W[oI + e]; lo = W[oI + ns + 1u + e]; }
    }
  } else {
    off = W[oS + ns];
    if (e < ns) { hi = W[oS + e]; lo = W[oS + ns + 1u + e]; }
  }
  for (var k = 0u; k < nIn; k++) {
    let oC = csAt(slice, k);
    let L = W[oC + ns];
    let mEnd = max(off, L);
    if (e < ns) {
      let inc = frame(L, mEnd) * W[oC + e];
      let rs = frame(off, mEnd);
      W[oC + e] = hi + lo;
      if (P.compensate != 0u) {
        let p = twoSum(rs * hi, rs * lo, inc);
        hi = p.x;
        lo = p.y;
      } else {
        hi = rs * hi + inc;
      }
    }
    if (e == 0u) { W[oC + ns + 1u] = off; }
    off = mEnd;
  }
  if (e < ns) {
    W[oS + e] = hi;
    W[oS + ns + 1u + e] = lo;
  }
  if (e == 0u) { W[offNext(slice)] = off; }
}

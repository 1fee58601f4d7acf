// Shared by every slim-performer kernel (prepended to each kernel's source by shaders/index.ts).
// The contract is crate/src/linear_attn/README.md. One workgroup owns one (b, h) slice; its
// invocations cooperate on each chunk through the slice's region of the work buffer `W`
// (storage, not workgroup memory: a chunk's features are C·M floats, more than the 16 KiB of
// workgroup memory the compatibility level guarantees), separated by barriers. Chunks run in
// order inside the kernel's loop; a call is split into several dispatches of a few chunks each
// (chunks [cBegin, cEnd) per dispatch, everything carried in W between them), which keeps each
// dispatch short (GPU watchdogs) and under Mesa llvmpipe's limit of 65 535 loop iterations per
// outermost loop of an invocation.

struct Params {
  bh: u32, h: u32, t: u32, d: u32,
  m: u32, dv: u32, chunk: u32, feature: u32,      // feature: 0 favor, 1 relu, 2 elu1, 3 sqr, 4 identity
  hasOmega: u32, hasState: u32, hasDState: u32, group: u32,  // group: chunks per checkpoint (backward)
  omegaOff: u32, stateInOff: u32, dStateOff: u32, stateOutOff: u32,
  scratchOff: u32, sliceWords: u32, eps: f32, dscale: f32,   // dscale: d^(-1/4) for favor, else 1
  nGroups: u32, wgPerRow: u32, compensate: u32, phase: u32,
  cBegin: u32, cEnd: u32, gIndex: u32, nChunks: u32,        // this dispatch: chunks [cBegin, cEnd) of phase
  csOff: u32, window: u32, pad1: u32, pad2: u32,             // chunk states and chunks per window (causal_forward_parallel)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> W: array<f32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> K: array<f32>;
@group(0) @binding(4) var<storage, read> V: array<f32>;

override WG: u32 = 64u;

/** Stands for the offset of an empty FAVOR+ state (-∞): exp(NEG − m) is 0 for any finite m. */
const NEG: f32 = -3.0e38;

var<private> lid: u32;
var<private> wid: u32;
var<private> head: u32;
// Per-slice layout (absolute word indices into W), set by `layout`.
var<private> oUq: u32;
var<private> oPq: u32;
var<private> oUk: u32;
var<private> oPk: u32;
var<private> oNrm: u32;
var<private> oOffs: u32;
var<private> oSq: u32;
var<private> oWt: u32;
var<private> oA: u32;
var<private> oDen: u32;
var<private> oNum: u32;
var<private> oMisc: u32;
var<private> oEnd: u32;

fn sync() {
  storageBarrier();
  workgroupBarrier();
}

fn md() -> u32 { return P.m * P.dv; }
/** Words of one state: S [m, dv], z [m], offset, and (compensated sums) S_lo, z_lo. */
fn stateWords() -> u32 { return 2u * (P.m * P.dv + P.m) + 1u; }

/** The workgroup's index in a dispatch of a (wgPerRow × ·) grid. */
fn groupIndex(ids: vec3<u32>) -> u32 { return ids.x + ids.y * P.wgPerRow; }

/** Chunk scratch shared by all kernels, one region per workgroup = slice; returns the first free word. */
fn setup(ids: vec3<u32>, local: u32) -> u32 {
  let g = groupIndex(ids);
  return setupSlot(g, g, local);
}

/** As `setup` for a workgroup working on `slice` with scratch region `slot`. */
fn setupSlot(slice: u32, slot: u32, local: u32) -> u32 {
  lid = local;
  wid = slice;
  head = wid % P.h;
  let c = P.chunk;
  let cm = c * P.m;
  var o = P.scratchOff + slot * P.sliceWords;
  oUq = o; o += cm;
  oPq = o; o += cm;
  oUk = o; o += cm;
  oPk = o; o += cm;
  oNrm = o; o += c;
  oOffs = o; o += c;
  oSq = o; o += c;
  oWt = o; o += c;
  oA = o; o += c * c;
  oDen = o; o += c;
  oNum = o; o += c * P.dv;
  oMisc = o; o += 4u;
  oEnd = o;
  return o;
}

/** exp(a − b) for offsets, exactly 1 when they are equal. */
fn frame(a: f32, b: f32) -> f32 {
  if (a == b) { return 1.0; }
  return exp(max(a - b, -200.0));
}

fn phiOf(u: f32) -> f32 {
  switch P.feature {
    case 1u: { return max(u, 0.0); }
    case 2u: { if (u > 0.0) { return u + 1.0; } return exp(u); }
    case 3u: { return u * u; }
    default: { return u; }
  }
}

fn dPhiOf(u: f32) -> f32 {
  switch P.feature {
    case 1u: { return select(0.0, 1.0, u > 0.0); }
    case 2u: { if (u > 0.0) { return 1.0; } return exp(u); }
    case 3u: { return 2.0 * u; }
    default: { return 1.0; }
  }
}

fn xin(which: u32, idx: u32) -> f32 {
  if (which == 0u) { return Q[idx]; }
  return K[idx];
}

/** Logits of tokens [t0, t0 + n) of q (which = 0) or k (1) into W[oU + i·m + r]. */
fn project(which: u32, t0: u32, n: u32, oU: u32) {
  let d = P.d;
  let m = P.m;
  let ds = P.dscale;
  let favor = P.feature == 0u;
  if (favor) {
    for (var i = lid; i < n; i += WG) {
      let xb = (wid * P.t + t0 + i) * d;
      var s = 0.0;
      for (var c = 0u; c < d; c++) { let x = xin(which, xb + c) * ds; s += x * x; }
      W[oNrm + i] = 0.5 * s;
    }
    sync();
  }
  if (TILED && P.hasOmega != 0u) {
    projectTiled(which, t0, n, oU);
    sync();
    return;
  }
  for (var e = lid; e < n * m; e += WG) {
    let i = e / m;
    let r = e % m;
    let xb = (wid * P.t + t0 + i) * d;
    var u = 0.0;
    if (P.hasOmega != 0u) {
      let ob = P.omegaOff + (head * m + r) * d;
      for (var c = 0u; c < d; c++) { u += W[ob + c] * (xin(which, xb + c) * ds); }
    } else {
      u = xin(which, xb + r) * ds;
    }
    if (favor) { u -= W[oNrm + i]; }
    W[oU + e] = u;
  }
  sync();
}

/** Query features of a chunk: favor uses the per-token maximum logit as its offset. */
fn queryFeatures(t0: u32, n: u32) {
  let m = P.m;
  project(0u, t0, n, oUq);
  if (P.feature == 0u) {
    for (var i = lid; i < n; i += WG) {
      var c = W[oUq + i * m];
      for (var r = 1u; r < m; r++) { c = max(c, W[oUq + i * m + r]); }
      for (var r = 0u; r < m; r++) { W[oPq + i * m + r] = exp(W[oUq + i * m + r] - c); }
    }
  } else {
    for (var e = lid; e < n * m; e += WG) { W[oPq + e] = phiOf(W[oUq + e]); }
  }
  sync();
}

/**
 * Key features of a chunk. Causal (fixed = false): favor offsets m_j are the running maximum
 * from `offIn`; sq_j = exp(offIn − m_j), w_j = exp(m_j − m_end); W[oMisc] = m_end.
 * Bidirectional (fixed = true): every key uses the offset `offIn`.
 */
// W[oOffs + i] = max_r of key logits row i (rows 0..n of oUk), then a barrier.
fn keyRowMaxes(n: u32) {
  let m = P.m;
  for (var i = lid; i < n; i += WG) {
    var c = W[oUk + i * m];
    for (var r = 1u; r < m; r++) { c = max(c, W[oUk + i * m + r]); }
    W[oOffs + i] = c;
  }
  sync();
}

fn keyFeatures(t0: u32, n: u32, offIn: f32, fixed: bool) {
  project(1u, t0, n, oUk);
  keyFeaturesFromLogits(n, offIn, fixed);
}

/** As `keyFeatures` with the chunk's key logits already at oUk (left by an earlier phase in this scratch slot). */
fn keyFeaturesFromLogits(n: u32, offIn: f32, fixed: bool) {
  let m = P.m;
  if (P.feature == 0u) {
    if (!fixed) {
      keyRowMaxes(n);
      if (lid == 0u) {
        var run = offIn;
        for (var i = 0u; i < n; i++) { run = max(run, W[oOffs + i]); W[oOffs + i] = run; }
        W[oMisc] = run;
      }
      sync();
    } else {
      for (var i = lid; i < n; i += WG) { W[oOffs + i] = offIn; }
      if (lid == 0u) { W[oMisc] = offIn; }
      sync();
    }
    let mEnd = W[oMisc];
    for (var e = lid; e < n * m; e += WG) { W[oPk + e] = exp(W[oUk + e] - W[oOffs + e / m]); }
    for (var i = lid; i < n; i += WG) {
      W[oSq + i] = frame(offIn, W[oOffs + i]);
      W[oWt + i] = frame(W[oOffs + i], mEnd);
    }
  } else {
    for (var e = lid; e < n * m; e += WG) { W[oPk + e] = phiOf(W[oUk + e]); }
    for (var i = lid; i < n; i += WG) { W[oOffs + i] = 0.0; W[oSq + i] = 1.0; W[oWt + i] = 1.0; }
    if (lid == 0u) { W[oMisc] = 0.0; }
  }
  sync();
}

/** A_ij = a_ij (φq_i·φk_j) for j ≤ i, 0 above the diagonal (n × n, row stride n). */
fn scores(n: u32) {
  let m = P.m;
  if (TILED) {
    scoresTiled(n);
    sync();
    return;
  }
  for (var e = lid; e < n * n; e += WG) {
    let i = e / n;
    let j = e % n;
    var a = 0.0;
    if (j <= i) {
      for (var r = 0u; r < m; r++) { a += W[oPq + i * m + r] * W[oPk + j * m + r]; }
      a *= frame(W[oOffs + j], W[oOffs + i]);
    }
    W[oA + e] = a;
  }
  sync();
}

/** φq_i · W[o .. o + m) (query features at oPq). */
fn queryDot(i: u32, o: u32) -> f32 {
  var s = 0.0;
  for (var r = 0u; r < P.m; r++) { s += W[oPq + i * P.m + r] * W[o + r]; }
  return s;
}

/**
 * den_i = sq_i (φq_i·z) + Σ_{j≤i} A_ij and out_i = (sq_i φq_iᵀ S + Σ_{j≤i} A_ij v_j)/(den_i + ε)
 * (0 where den_i == 0) into W[oDen], W[oNum] for the state at word `oS`.
 */
fn attend(t0: u32, n: u32, oS: u32) {
  let m = P.m;
  let dv = P.dv;
  let oZ = oS + m * dv;
  for (var i = lid; i < n; i += WG) {
    let s = queryDot(i, oZ);
    var a = 0.0;
    for (var j = 0u; j <= i; j++) { a += W[oA + i * n + j]; }
    W[oDen + i] = W[oSq + i] * s + a;
  }
  sync();
  if (TILED) {
    attendTiled(t0, n, oS);
    sync();
    return;
  }
  let vb = (wid * P.t + t0) * dv;
  for (var e = lid; e < n * dv; e += WG) {
    let i = e / dv;
    let c = e % dv;
    var s = 0.0;
    for (var r = 0u; r < m; r++) { s += W[oPq + i * m + r] * W[oS + r * dv + c]; }
    var a = 0.0;
    for (var j = 0u; j <= i; j++) { a += W[oA + i * n + j] * V[vb + j * dv + c]; }
    let den = W[oDen + i];
    var o = 0.0;
    if (den != 0.0) { o = (W[oSq + i] * s + a) / (den + P.eps); }
    W[oNum + e] = o;
  }
  sync();
}

/** x ← x + y as a compensated (hi, lo) pair (Neumaier); returns (hi, lo). */
fn twoSum(hi: f32, lo: f32, y: f32) -> vec2<f32> {
  let s = hi + y;
  var err: f32;
  if (abs(hi) >= abs(y)) { err = (hi - s) + y; } else { err = (y - s) + hi; }
  return vec2<f32>(s, lo + err);
}

/**
 * Element `e` of the chunk's state increment (S then z, in the frame of the chunk's last offset):
 * Σ_j w_j φk_j[r] v_j[c] for e = r·dv + c < m·dv, Σ_j w_j φk_j[r] for e = m·dv + r.
 */
fn increment(e: u32, t0: u32, n: u32) -> f32 {
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  var inc = 0.0;
  if (e < mdv) {
    let r = e / dv;
    let c = e % dv;
    let vb = (wid * P.t + t0) * dv;
    for (var j = 0u; j < n; j++) { inc += W[oWt + j] * W[oPk + j * m + r] * V[vb + j * dv + c]; }
  } else {
    let r = e - mdv;
    for (var j = 0u; j < n; j++) { inc += W[oWt + j] * W[oPk + j * m + r]; }
  }
  return inc;
}

/** What `takeIncrement` does with element `e` of an increment: store it at word o + e, or advance the state at o. */
const TAKE_STORE: u32 = 0u;
const TAKE_ADVANCE: u32 = 1u;

/** Element `e` of a chunk's increment `inc` into word `o` + e (TAKE_STORE) or into the state at `o` rescaled by `rs` (TAKE_ADVANCE). */
fn takeIncrement(mode: u32, o: u32, e: u32, inc: f32, rs: f32) {
  if (mode == TAKE_STORE) {
    W[o + e] = inc;
  } else if (P.compensate != 0u) {
    let lo = o + P.m * P.dv + P.m + 1u;
    let p = twoSum(rs * W[o + e], rs * W[lo + e], inc);
    W[o + e] = p.x;
    W[lo + e] = p.y;
  } else {
    W[o + e] = rs * W[o + e] + inc;
  }
}

/** The chunk's whole increment (S then z, see `increment`) through `takeIncrement(mode, o, e, ·, rs)`. */
fn stateIncrement(t0: u32, n: u32, mode: u32, o: u32, rs: f32) {
  let mdv = P.m * P.dv;
  var first = 0u;
  if (TILED) {
    incrementTiled(t0, n, mode, o, rs);
    first = mdv;
  }
  for (var e = first + lid; e < mdv + P.m; e += WG) { takeIncrement(mode, o, e, increment(e, t0, n), rs); }
}

/**
 * State at `oS` moves to the chunk's last offset and takes the chunk's increment:
 * S ← exp(off − m_end) S + Σ_j w_j φk_j v_jᵀ, z likewise, off ← m_end.
 */
fn advance(t0: u32, n: u32, oS: u32) {
  let oOff = oS + P.m * P.dv + P.m;
  let mEnd = W[oMisc];
  let rs = frame(W[oOff], mEnd);
  stateIncrement(t0, n, TAKE_ADVANCE, oS, rs);
  sync();
  if (lid == 0u) { W[oOff] = mEnd; }
  sync();
}

/** Copies a state (stateWords()) from word `src` to word `dst`. */
fn copyState(src: u32, dst: u32) {
  for (var e = lid; e < stateWords(); e += WG) { W[dst + e] = W[src + e]; }
  sync();
}

/** Loads the input state of this slice into `dst` (empty state when there is none). */
fn loadStateIn(dst: u32) {
  let n = stateWords();
  let empty = select(0.0, NEG, P.feature == 0u);
  let off = P.m * P.dv + P.m;
  for (var e = lid; e < n; e += WG) {
    var x = 0.0;
    if (P.hasState != 0u) {
      x = W[P.stateInOff + wid * n + e];
    } else if (e == off) {
      x = empty;
    }
    W[dst + e] = x;
  }
  sync();
}

// Tiled products for the chunk kernels (prepended after common.wgsl). With the pipeline constant
// TILED set (the host sets it for workgroups of 64 invocations or more), every per-chunk product
// of the forward and backward (features' projections, φQ·φKᵀ, ·V, the state contributions and
// their gradients) runs here instead of in the plain one-element-per-invocation loops.
//
// Each product is C = A·Bᵀ: two operands given as rows of a matrix by strides (`Mat`: element
// (i, k) at off + i·rs + k·cs in one of the bindings, optionally times a per-row or per-k
// scale), so transposes, masks and scalings need no copies. C goes in output tiles of TM × TM:
// the workgroup stages TK-wide column blocks of A's and B's rows in workgroup memory (zero
// outside the operands), then each of the first TS² invocations accumulates a 4 × 4 block in
// registers: rows i0 + lid / TS + TS·a, columns j0 + lid % TS + TS·b (neighbouring invocations
// read neighbouring words of the staged tiles). Accumulation is f32 over k in order, like the
// plain loops; only the association across k-blocks differs.
//
// Workgroup memory: 2·TK·TM floats (4 KiB at TS = 8, 8 KiB at TS = 16), within the 16 KiB the
// compatibility level guarantees. Every argument that sets a loop bound (tile origins, k ranges,
// row counts) must be workgroup-uniform: the staging loops hold barriers.

override TILED: bool = false;
/** Invocations per side of the tile's invocation grid: 8 (64 compute), or 16 for workgroups of 256 and more. */
override TS: u32 = 8u;
const TK: u32 = 16u;
/** Output tile side. */
override TM: u32 = 4u * TS;

var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

/** Bindings an operand can live in. */
const SRC_W: u32 = 0u;
const SRC_Q: u32 = 1u;
const SRC_K: u32 = 2u;
const SRC_V: u32 = 3u;
const NO_SCALE: u32 = 0xffffffffu;

fn operand(src: u32, idx: u32) -> f32 {
  switch src {
    case 1u: { return Q[idx]; }
    case 2u: { return K[idx]; }
    case 3u: { return V[idx]; }
    default: { return W[idx]; }
  }
}

/**
 * Rows i < n of a matrix in binding `src`: element (i, k) at off + i·rs + k·cs, times
 * W[scale + i] (scaleK = 0) or W[scale + k] (scaleK = 1) unless scale is NO_SCALE.
 */
struct Mat { src: u32, off: u32, rs: u32, cs: u32, n: u32, scale: u32, scaleK: u32 }

fn mat(src: u32, off: u32, rs: u32, cs: u32, n: u32) -> Mat { return Mat(src, off, rs, cs, n, NO_SCALE, 0u); }
fn rowScaled(a: Mat, s: u32) -> Mat { return Mat(a.src, a.off, a.rs, a.cs, a.n, s, 0u); }
fn kScaled(a: Mat, s: u32) -> Mat { return Mat(a.src, a.off, a.rs, a.cs, a.n, s, 1u); }

/** Rows [r0, r0 + TM) × columns [k0, k0 + TK) of `a` (zero at rows ≥ a.n or columns ≥ k1) into tile `which` as [k][row]. */
fn stage(a: Mat, r0: u32, k0: u32, k1: u32, which: u32) {
  let kMajor = a.cs == 1u; // consecutive invocations read consecutive words of the operand
  for (var e = lid; e < TK * TM; e += WG) {
    var r = e % TM;
    var k = e / TM;
    if (kMajor) {
      r = e / TK;
      k = e % TK;
    }
    let i = r0 + r;
    let kk = k0 + k;
    var x = 0.0;
    if (i < a.n && kk < k1) {
      x = operand(a.src, a.off + i * a.rs + kk * a.cs);
      if (a.scale != NO_SCALE) { x *= W[a.scale + select(i, kk, a.scaleK != 0u)]; }
    }
    if (which == 0u) { tileA[k * TM + r] = x; } else { tileB[k * TM + r] = x; }
  }
}

/** A TM × TM output tile's share of one invocation: rows a, columns b of its 4 × 4 block. */
alias Acc = array<vec4<f32>, 4>;

fn zeroAcc() -> Acc { return Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0)); }

/** acc + Σ_{k0 ≤ k < k1} A(i, k) B(j, k) over the tile at rows [i0, i0 + TM), columns [j0, j0 + TM). */
fn mma(acc: Acc, a: Mat, b: Mat, i0: u32, j0: u32, k0: u32, k1: u32) -> Acc {
  var c = acc;
  let ti = lid / TS;
  let tj = lid % TS;
  for (var kb = k0; kb < k1; kb += TK) {
    stage(a, i0, kb, k1, 0u);
    stage(b, j0, kb, k1, 1u);
    workgroupBarrier();
    if (lid < TS * TS) {
      for (var k = 0u; k < TK; k++) {
        let o = k * TM;
        let x = vec4<f32>(tileA[o + ti], tileA[o + ti + TS], tileA[o + ti + 2u * TS], tileA[o + ti + 3u * TS]);
        let y = vec4<f32>(tileB[o + tj], tileB[o + tj + TS], tileB[o + tj + 2u * TS], tileB[o + tj + 3u * TS]);
        c[0] += x.x * y;
        c[1] += x.y * y;
        c[2] += x.z * y;
        c[3] += x.w * y;
      }
    }
    workgroupBarrier();
  }
  return c;
}

/** Row and column of element q (0..16) of this invocation's block in the tile at (i0, j0). */
fn tileRow(i0: u32, q: u32) -> u32 { return i0 + lid / TS + TS * (q / 4u); }
fn tileCol(j0: u32, q: u32) -> u32 { return j0 + lid % TS + TS * (q % 4u); }
fn accAt(c: Acc, q: u32) -> f32 { return c[q / 4u][q % 4u]; }

/** Whether this invocation computes and element (i, j) lies in [0, rows) × [0, cols). */
fn tileHas(i: u32, j: u32, rows: u32, cols: u32) -> bool { return lid < TS * TS && i < rows && j < cols; }

/** Tiles of a rows × cols product: tile t at (tileI(t, cols), tileJ(t, cols)), t < tileCount. */
fn tileCount(rows: u32, cols: u32) -> u32 { return ((rows + TM - 1u) / TM) * ((cols + TM - 1u) / TM); }
fn tileI(t: u32, cols: u32) -> u32 { return (t / ((cols + TM - 1u) / TM)) * TM; }
fn tileJ(t: u32, cols: u32) -> u32 { return (t % ((cols + TM - 1u) / TM)) * TM; }

// ---- The forward's products (called by common.wgsl's functions when TILED).

/** Logits u = d^(-1/4) x·ωᵀ (favor: minus the norms at oNrm) of tokens [t0, t0 + n) of q / k (which 0 / 1) into oU. */
fn projectTiled(which: u32, t0: u32, n: u32, oU: u32) {
  let d = P.d;
  let m = P.m;
  let x = mat(SRC_Q + which, (wid * P.t + t0) * d, d, 1u, n);
  let om = mat(SRC_W, P.omegaOff + head * m * d, d, 1u, m);
  for (var t = 0u; t < tileCount(n, m); t++) {
    let i0 = tileI(t, m);
    let j0 = tileJ(t, m);
    let c = mma(zeroAcc(), x, om, i0, j0, 0u, d);
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let r = tileCol(j0, q);
      if (tileHas(i, r, n, m)) {
        var u = P.dscale * accAt(c, q);
        if (P.feature == 0u) { u -= W[oNrm + i]; }
        W[oU + i * m + r] = u;
      }
    }
  }
}

/** As `scores`: A_ij = a_ij (φq_i·φk_j) for j ≤ i, 0 above; tiles wholly above the diagonal skip the product. */
fn scoresTiled(n: u32) {
  let m = P.m;
  let pq = mat(SRC_W, oPq, m, 1u, n);
  let pk = mat(SRC_W, oPk, m, 1u, n);
  for (var t = 0u; t < tileCount(n, n); t++) {
    let i0 = tileI(t, n);
    let j0 = tileJ(t, n);
    var c = zeroAcc();
    if (j0 < i0 + TM) { c = mma(c, pq, pk, i0, j0, 0u, m); }
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let j = tileCol(j0, q);
      if (tileHas(i, j, n, n)) {
        var a = 0.0;
        if (j <= i) { a = accAt(c, q) * frame(W[oOffs + j], W[oOffs + i]); }
        W[oA + i * n + j] = a;
      }
    }
  }
}

/** As `attend`'s numerator: out_i = (sq_i φq_iᵀ S + Σ_{j≤i} A_ij v_j)/(den_i + ε) into oNum (den at oDen). */
fn attendTiled(t0: u32, n: u32, oS: u32) {
  let m = P.m;
  let dv = P.dv;
  let pq = rowScaled(mat(SRC_W, oPq, m, 1u, n), oSq);
  let st = mat(SRC_W, oS, 1u, dv, dv); // (c, r) → S[r, c]
  let sc = mat(SRC_W, oA, n, 1u, n);
  let vt = mat(SRC_V, (wid * P.t + t0) * dv, 1u, dv, dv); // (c, j) → v_j[c]
  for (var t = 0u; t < tileCount(n, dv); t++) {
    let i0 = tileI(t, dv);
    let j0 = tileJ(t, dv);
    var c = mma(zeroAcc(), pq, st, i0, j0, 0u, m);
    c = mma(c, sc, vt, i0, j0, 0u, min(n, i0 + TM)); // A is 0 above the diagonal
    for (var q = 0u; q < 16u; q++) {
      let i = tileRow(i0, q);
      let col = tileCol(j0, q);
      if (tileHas(i, col, n, dv)) {
        let den = W[oDen + i];
        W[oNum + i * dv + col] = select(0.0, accAt(c, q) / (den + P.eps), den != 0.0);
      }
    }
  }
}

/**
 * The S part of the chunk's state increment, Σ_j w_j φk_j[r] v_j[c], handed to
 * `takeIncrement(mode, o, r·dv + c, inc, rs)` for every (r, c).
 */
fn incrementTiled(t0: u32, n: u32, mode: u32, o: u32, rs: f32) {
  let m = P.m;
  let dv = P.dv;
  let pk = kScaled(mat(SRC_W, oPk, 1u, m, m), oWt); // (r, j) → w_j φk_j[r]
  let vt = mat(SRC_V, (wid * P.t + t0) * dv, 1u, dv, dv);
  for (var t = 0u; t < tileCount(m, dv); t++) {
    let i0 = tileI(t, dv);
    let j0 = tileJ(t, dv);
    let c = mma(zeroAcc(), pk, vt, i0, j0, 0u, n);
    for (var q = 0u; q < 16u; q++) {
      let r = tileRow(i0, q);
      let col = tileCol(j0, q);
      if (tileHas(r, col, m, dv)) { takeIncrement(mode, o, r * dv + col, accAt(c, q), rs); }
    }
  }
}

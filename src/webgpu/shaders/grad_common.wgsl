// Shared by the backward kernels (prepended after common.wgsl).

@group(0) @binding(5) var<storage, read> DOUT: array<f32>;
@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;
@group(0) @binding(7) var<storage, read_write> DK: array<f32>;
@group(0) @binding(8) var<storage, read_write> DV: array<f32>;

var<private> oG: u32;    // G [m, dv] then Gz [m]
var<private> oGN: u32;   // gN [c, dv]
var<private> oGD: u32;   // gD [c]
var<private> oE: u32;    // E [c, c]
var<private> oDpq: u32;  // ∂φq, then ∂ℓ/∂u [c, m]
var<private> oDpk: u32;  // ∂φk, then ∂ℓ/∂u [c, m]
var<private> oSu: u32;   // Σ_r ∂ℓ/∂u [c] (favor, tiled feature backward)

/** Gradient scratch after the chunk scratch; returns the first free word. */
fn gradLayout(base: u32) -> u32 {
  let c = P.chunk;
  var o = base;
  oG = o; o += P.m * P.dv + P.m;
  oGN = o; o += c * P.dv;
  oGD = o; o += c;
  oE = o; o += c * c;
  oDpq = o; o += c * P.m;
  oDpk = o; o += c * P.m;
  oSu = o; o += c;
  return o;
}

/** gN_i = g_i/(den_i + ε), gD_i = −(g_i·out_i)/(den_i + ε), both 0 where den_i == 0 (out in oNum). */
fn upstreamGrads(t0: u32, n: u32) {
  let dv = P.dv;
  let gb = (wid * P.t + t0) * dv;
  for (var i = lid; i < n; i += WG) {
    let den = W[oDen + i];
    var gd = 0.0;
    if (den != 0.0) {
      var s = 0.0;
      for (var c = 0u; c < dv; c++) { s += DOUT[gb + i * dv + c] * W[oNum + i * dv + c]; }
      gd = -s / (den + P.eps);
    }
    W[oGD + i] = gd;
  }
  for (var e = lid; e < n * dv; e += WG) {
    let den = W[oDen + e / dv];
    W[oGN + e] = select(0.0, DOUT[gb + e] / (den + P.eps), den != 0.0);
  }
  sync();
}

/**
 * Pulls ∂φ (at oDp, [n, m]) back through the feature map into DQ (which = 0) or DK (1):
 * favor ∂ℓ = ∂φ φ, ∂x' = ωᵀ∂ℓ − x' Σ_r ∂ℓ_r, ∂x = d^(-1/4) ∂x'; others ∂u = f'(u) ∂φ, ∂x = ωᵀ∂u.
 */
fn featureBackward(which: u32, t0: u32, n: u32, oDp: u32, oU: u32, oPh: u32) {
  let m = P.m;
  let d = P.d;
  let favor = P.feature == 0u;
  for (var e = lid; e < n * m; e += WG) {
    var g = W[oDp + e];
    if (favor) { g *= W[oPh + e]; } else { g *= dPhiOf(W[oU + e]); }
    W[oDp + e] = g;
  }
  sync();
  if (TILED && P.hasOmega != 0u) {
    if (favor) {
      for (var i = lid; i < n; i += WG) {
        var su = 0.0;
        for (var r = 0u; r < m; r++) { su += W[oDp + i * m + r]; }
        W[oSu + i] = su;
      }
      sync();
    }
    featureBackwardTiled(which, t0, n, oDp);
    sync();
    return;
  }
  let ds = P.dscale;
  for (var e = lid; e < n * d; e += WG) {
    let i = e / d;
    let c = e % d;
    var acc = 0.0;
    if (P.hasOmega != 0u) {
      for (var r = 0u; r < m; r++) { acc += W[P.omegaOff + (head * m + r) * d + c] * W[oDp + i * m + r]; }
    } else {
      acc = W[oDp + i * m + c];
    }
    let xi = (wid * P.t + t0) * d + e;
    if (favor) {
      var su = 0.0;
      for (var r = 0u; r < m; r++) { su += W[oDp + i * m + r]; }
      acc = ds * (acc - xin(which, xi) * ds * su);
    } else {
      acc *= ds;
    }
    if (which == 0u) { DQ[xi] = acc; } else { DK[xi] = acc; }
  }
  sync();
}

/** Element `e` of a state-gradient increment `inc` into word o + e, added to it rescaled by `rs` when `accumulate`. */
fn takeGrad(o: u32, e: u32, inc: f32, rs: f32, accumulate: bool) {
  if (accumulate) { W[o + e] = rs * W[o + e] + inc; } else { W[o + e] = inc; }
}

/** The whole state-gradient increment (G then Gz, see `gradIncrement`) through `takeGrad`. */
fn stateGradIncrement(n: u32, o: u32, rs: f32, accumulate: bool) {
  let mdv = P.m * P.dv;
  var first = 0u;
  if (TILED) {
    gradIncrementTiled(n, o, rs, accumulate);
    first = mdv;
  }
  for (var e = first + lid; e < mdv + P.m; e += WG) { takeGrad(o, e, gradIncrement(e, n), rs, accumulate); }
}

/**
 * Element `e` of what a chunk's queries add to the gradient of the state it starts from (in that
 * state's frame): (ΦQᵀ diag(sq) GN)[r, c] for e = r·dv + c < m·dv, (ΦQᵀ diag(sq) gD)[r] after.
 */
fn gradIncrement(e: u32, n: u32) -> f32 {
  let m = P.m;
  let dv = P.dv;
  let mdv = m * dv;
  var s = 0.0;
  if (e < mdv) {
    let r = e / dv;
    let c = e % dv;
    for (var i = 0u; i < n; i++) { s += W[oSq + i] * W[oPq + i * m + r] * W[oGN + i * dv + c]; }
  } else {
    let r = e - mdv;
    for (var i = 0u; i < n; i++) { s += W[oSq + i] * W[oPq + i * m + r] * W[oGD + i]; }
  }
  return s;
}

/**
 * Backward of the causal chunk [t0, t0 + n) that starts from the state at word `oS` (state
 * layout: S, z, offset), with G at oG the gradient of the state after the chunk: writes the
 * chunk's dq, dk, dv and leaves in G the gradient of the state before it.
 */
fn chunkBackward(t0: u32, n: u32, oS: u32) {
  chunkRecompute(t0, n, oS, false);
  chunkGrads(t0, n, oS);
}

/**
 * The chunk's forward again, from the state at `oS`, with what its gradients need: features,
 * offsets, scores, den, out, and gN, gD from the upstream gradient (all in the chunk scratch).
 * `keyLogits`: the key logits are at oUk already.
 */
fn chunkRecompute(t0: u32, n: u32, oS: u32, keyLogits: bool) {
  let offIn = W[oS + P.m * P.dv + P.m];
  queryFeatures(t0, n);
  if (keyLogits) { keyFeaturesFromLogits(n, offIn, false); } else { keyFeatures(t0, n, offIn, false); }
  scores(n);
  attend(t0, n, oS);
  upstreamGrads(t0, n);
}

/** The rest of `chunkBackward`, from the scratch `chunkRecompute` left. */
fn chunkGrads(t0: u32, n: u32, oS: u32) {
  let rs = frame(W[oS + P.m * P.dv + P.m], W[oMisc]);
  scoreGrads(t0, n);
  featureGrads(t0, n, oS);
  // G ← exp(m_start − m_end) G + ΦQᵀ diag(sq) GN, Gz likewise with gD
  stateGradIncrement(n, oG, rs, true);
  featureBackward(0u, t0, n, oDpq, oUq, oPq);
  featureBackward(1u, t0, n, oDpk, oUk, oPk);
}

/** E_ij = a_ij (v_j·gN_i + gD_i), j ≤ i (0 above) into oE. */
fn scoreGrads(t0: u32, n: u32) {
  if (TILED) {
    scoreGradsTiled(t0, n);
    sync();
    return;
  }
  let dv = P.dv;
  let vb = (wid * P.t + t0) * dv;
  for (var e = lid; e < n * n; e += WG) {
    let i = e / n;
    let j = e % n;
    var x = 0.0;
    if (j <= i) {
      var s = W[oGD + i];
      for (var c = 0u; c < dv; c++) { s += V[vb + j * dv + c] * W[oGN + i * dv + c]; }
      x = frame(W[oOffs + j], W[oOffs + i]) * s;
    }
    W[oE + e] = x;
  }
  sync();
}

/** ∂φq into oDpq, ∂φk into oDpk and ∂v into DV for the chunk that starts from the state at oS (E at oE). */
fn featureGrads(t0: u32, n: u32, oS: u32) {
  if (TILED) {
    featureGradsTiled(t0, n, oS);
    sync();
    return;
  }
  let m = P.m;
  let dv = P.dv;
  let oZ = oS + m * dv;
  let vb = (wid * P.t + t0) * dv;
  let oGz = oG + m * dv;
  // ∂φq_i = sq_i (S_in gN_i + gD_i z_in) + Σ_{j≤i} E_ij φk_j
  for (var e = lid; e < n * m; e += WG) {
    let i = e / m;
    let r = e % m;
    var s = W[oGD + i] * W[oZ + r];
    for (var c = 0u; c < dv; c++) { s += W[oS + r * dv + c] * W[oGN + i * dv + c]; }
    var a = 0.0;
    for (var j = 0u; j <= i; j++) { a += W[oE + i * n + j] * W[oPk + j * m + r]; }
    W[oDpq + e] = W[oSq + i] * s + a;
  }
  // ∂φk_j = w_j (G v_j + Gz) + Σ_{i≥j} E_ij φq_i
  for (var e = lid; e < n * m; e += WG) {
    let j = e / m;
    let r = e % m;
    var s = W[oGz + r];
    for (var c = 0u; c < dv; c++) { s += W[oG + r * dv + c] * V[vb + j * dv + c]; }
    var a = 0.0;
    for (var i = j; i < n; i++) { a += W[oE + i * n + j] * W[oPq + i * m + r]; }
    W[oDpk + e] = W[oWt + j] * s + a;
  }
  // ∂v_j = w_j Gᵀ φk_j + Σ_{i≥j} A_ij gN_i
  for (var e = lid; e < n * dv; e += WG) {
    let j = e / dv;
    let c = e % dv;
    var s = 0.0;
    for (var r = 0u; r < m; r++) { s += W[oG + r * dv + c] * W[oPk + j * m + r]; }
    var a = 0.0;
    for (var i = j; i < n; i++) { a += W[oA + i * n + j] * W[oGN + i * dv + c]; }
    DV[vb + e] = W[oWt + j] * s + a;
  }
  sync();
}

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

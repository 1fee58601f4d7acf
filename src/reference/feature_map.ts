/**
 * Feature maps of one head, float64 (see crate/src/linear_attn/README.md, "Feature maps").
 * `logits` are ℓ (favor) or the projection u (relu, elu1, sqr); features are
 * φ = exp(ℓ − c_row) for favor (c_row given by the caller) and φ = f(u) otherwise.
 */
import type { FeatureMap } from '../kernels/types.ts';
import type { Arr } from './util.ts';
import { ArgError } from '../kernels/validate.ts';

/**
 * Logits of `x: [t, d]` with `omega: [m, d]` (rows ω_r) or the identity (m = d):
 * favor ℓ_r = ω_r·x' − |x'|²/2 with x' = x·d^(-1/4); otherwise u_r = ω_r·x (or x_r).
 */
export function refFeatureMap(x: Arr, omega: Arr | undefined, feature: FeatureMap, d: number, m: number): { logits: Float64Array } {
  if (x.length % d !== 0) throw new ArgError(`x has length ${x.length}, not a multiple of d = ${d}`);
  if (omega === undefined && (feature === 'favor' || m !== d)) {
    throw new ArgError('omega is required (favor, or m != d)');
  }
  if (omega !== undefined && omega.length !== m * d) throw new ArgError(`omega has length ${omega.length}, expected ${m * d}`);
  const t = x.length / d;
  const scale = feature === 'favor' ? d ** -0.25 : 1;
  const logits = new Float64Array(t * m); // [t, m]
  const xs = new Float64Array(d); // x' of one row
  for (let i = 0; i < t; i++) {
    let sq = 0;
    for (let c = 0; c < d; c++) {
      xs[c] = x[i * d + c] * scale;
      sq += xs[c] * xs[c];
    }
    for (let r = 0; r < m; r++) {
      let u = 0;
      if (omega === undefined) u = xs[r];
      else for (let c = 0; c < d; c++) u += omega[r * d + c] * xs[c];
      logits[i * m + r] = feature === 'favor' ? u - sq / 2 : u;
    }
  }
  return { logits };
}

/** Row maxima of `logits: [t, m]` (the favor query offsets cq_i). */
export function rowMax(logits: Float64Array, t: number, m: number): Float64Array {
  const out = new Float64Array(t); // [t]
  for (let i = 0; i < t; i++) {
    let best = -Infinity;
    for (let r = 0; r < m; r++) best = Math.max(best, logits[i * m + r]);
    out[i] = best;
  }
  return out;
}

/** Scalar feature of one logit (non-favor maps). */
function phiOf(feature: FeatureMap, u: number): number {
  switch (feature) {
    case 'relu':
      return u > 0 ? u : 0;
    case 'elu1':
      return u > 0 ? u + 1 : Math.exp(u);
    case 'sqr':
      return u * u;
    default:
      throw new Error(`phiOf: no scalar form for ${feature}`);
  }
}

/** dφ/du of one logit (non-favor maps; relu has derivative 0 at 0). */
function dPhiOf(feature: FeatureMap, u: number): number {
  switch (feature) {
    case 'relu':
      return u > 0 ? 1 : 0;
    case 'elu1':
      return u > 0 ? 1 : Math.exp(u);
    case 'sqr':
      return 2 * u;
    default:
      throw new Error(`dPhiOf: no scalar form for ${feature}`);
  }
}

/**
 * Features `[t, m]` from logits `[t, m]`. For favor `rowOffset[i]` is the offset subtracted in
 * row i (φ = exp(ℓ − rowOffset_i)); it is ignored by the other maps.
 */
export function applyFeature(logits: Float64Array, feature: FeatureMap, t: number, m: number, rowOffset?: Float64Array): Float64Array {
  const phi = new Float64Array(t * m); // [t, m]
  for (let i = 0; i < t; i++) {
    for (let r = 0; r < m; r++) {
      const l = logits[i * m + r];
      if (feature === 'favor') {
        if (rowOffset === undefined) throw new ArgError('applyFeature: favor needs row offsets');
        phi[i * m + r] = Math.exp(l - rowOffset[i]);
      } else {
        phi[i * m + r] = phiOf(feature, l);
      }
    }
  }
  return phi;
}

/**
 * Pulls `dPhi: [t, m]` back to `dx: [t, d]` through the feature map, offsets held constant.
 * favor: ∂ℓ_r = ∂φ_r φ_r, ∂x' = ωᵀ∂ℓ − x' Σ_r ∂ℓ_r, ∂x = d^(-1/4) ∂x'.
 * others: ∂u = f'(u) ∂φ, ∂x = ωᵀ∂u (or ∂u without ω).
 */
export function featureBackward(
  x: Arr,
  omega: Arr | undefined,
  feature: FeatureMap,
  d: number,
  m: number,
  logits: Float64Array,
  phi: Float64Array,
  dPhi: Float64Array,
): Float64Array {
  const t = x.length / d;
  const dx = new Float64Array(t * d); // [t, d]
  const du = new Float64Array(m); // ∂ℓ or ∂u of one row
  for (let i = 0; i < t; i++) {
    let duSum = 0;
    for (let r = 0; r < m; r++) {
      const k = i * m + r;
      du[r] = feature === 'favor' ? dPhi[k] * phi[k] : dPhi[k] * dPhiOf(feature, logits[k]);
      duSum += du[r];
    }
    for (let c = 0; c < d; c++) {
      let acc = 0;
      if (omega === undefined) acc = du[c];
      else for (let r = 0; r < m; r++) acc += omega[r * d + c] * du[r];
      if (feature === 'favor') {
        const scale = d ** -0.25;
        const xs = x[i * d + c] * scale;
        acc = scale * (acc - xs * duSum);
      }
      dx[i * d + c] = acc;
    }
  }
  return dx;
}

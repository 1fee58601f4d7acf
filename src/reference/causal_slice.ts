/**
 * What the causal float64 twins share (crate/src/linear_attn/README.md, "Causal forward"):
 * argument checks, and one `(b, h)` slice mapped to features with its stabiliser frame.
 * The slice kernels see the stabiliser only through `keyOffset` (m_j) and `offsetIn`:
 * a_ij = exp(m_j − m_i), s_i = exp(offset_in − m_i). Maps without a stabiliser (relu, elu1,
 * sqr, precomputed features) use the 0 frame (every m_j = 0, offset_in = 0), so
 * a_ij = s_i = 1 and the state's offset is passed through unchanged.
 */
import type { AttnState, Dims, FeatureSpec, StateGrad } from '../kernels/types.ts';
import { applyFeature, refFeatureMap, rowMax } from './feature_map.ts';
import { type Arr, block, checkDims, checkFeatureSpec, checkLength, checkState, emptyState, headOmega, rescale } from './util.ts';

export const DEFAULT_EPS = 1e-16;

export interface RefCausalArgs extends FeatureSpec {
  q: Arr;
  k: Arr;
  v: Arr;
  dims: Dims;
  state?: AttnState;
  eps?: number;
}

export interface RefCausalFeaturesArgs {
  /** `[b, h, t, m]` query features */
  phiQ: Arr;
  /** `[b, h, t, m]` key features */
  phiK: Arr;
  v: Arr;
  dims: Dims;
  state?: AttnState;
  eps?: number;
}

/** One `(b, h)` slice in feature space. */
export interface CausalSlice {
  T: number;
  M: number;
  D: number;
  eps: number;
  phiQ: Float64Array; // [T, M]
  phiK: Float64Array; // [T, M]
  v: Float64Array; // [T, D]
  keyOffset: Float64Array; // [T] running key offsets m_j
  offsetIn: number; // frame of the input state
  S: Float64Array; // [M, D] input state
  z: Float64Array; // [M]
}

export interface SliceForward {
  out: Float64Array; // [T, D]
  den: Float64Array; // [T]
  S: Float64Array; // [M, D] output state, frame `offset`
  z: Float64Array; // [M]
  offset: number; // m_T (offset_in when T = 0)
}

export interface SliceGrad {
  dPhiQ: Float64Array; // [T, M]
  dPhiK: Float64Array; // [T, M]
  dv: Float64Array; // [T, D]
  dS: Float64Array; // [M, D] gradient wrt the input state
  dz: Float64Array; // [M]
}

export function lastOffset(sl: CausalSlice): number {
  return sl.T > 0 ? sl.keyOffset[sl.T - 1] : sl.offsetIn;
}

export function dot(x: Float64Array, xi: number, y: Float64Array, yi: number, n: number): number {
  let acc = 0;
  for (let r = 0; r < n; r++) acc += x[xi + r] * y[yi + r];
  return acc;
}

/** Output state: S_out = exp(offset_in − m_T) S_in + Σ_j exp(m_j − m_T) φk_j v_jᵀ, z likewise. */
export function outputState(sl: CausalSlice): { S: Float64Array; z: Float64Array; offset: number } {
  const { T, M, D, phiK, v, keyOffset } = sl;
  const mT = lastOffset(sl);
  const carry = rescale(sl.offsetIn, mT);
  const S = new Float64Array(M * D); // [M, D]
  const z = new Float64Array(M); // [M]
  for (let r = 0; r < M; r++) {
    z[r] = carry * sl.z[r];
    for (let c = 0; c < D; c++) S[r * D + c] = carry * sl.S[r * D + c];
  }
  for (let j = 0; j < T; j++) {
    const w = rescale(keyOffset[j], mT);
    for (let r = 0; r < M; r++) {
      const f = w * phiK[j * M + r];
      z[r] += f;
      for (let c = 0; c < D; c++) S[r * D + c] += f * v[j * D + c];
    }
  }
  return { S, z, offset: mT };
}

/** Masked T×T matrix A_ij = a_ij (φq_i·φk_j) for j ≤ i, 0 above the diagonal. */
export function maskedScores(sl: CausalSlice): Float64Array {
  const { T, M, phiQ, phiK, keyOffset } = sl;
  const A = new Float64Array(T * T); // [T, T]
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      A[i * T + j] = rescale(keyOffset[j], keyOffset[i]) * dot(phiQ, i * M, phiK, j * M, M);
    }
  }
  return A;
}

/** Fused-path slice plus what the feature-map backward needs. */
export interface FusedSlice {
  sl: CausalSlice;
  q: Float64Array; // [T, d]
  k: Float64Array; // [T, d]
  omega: Float64Array | undefined; // [M, d]
  logitsQ: Float64Array; // [T, M]
  logitsK: Float64Array; // [T, M]
}

export function checkCausalArgs(a: RefCausalArgs): AttnState {
  checkDims(a.dims);
  const { b, h, t, d, dv } = a.dims;
  checkFeatureSpec(a.feature, a.omega, a.dims);
  checkLength('q', a.q, b * h * t * d);
  checkLength('k', a.k, b * h * t * d);
  checkLength('v', a.v, b * h * t * dv);
  if (a.state === undefined) return emptyState(a.dims, a.feature);
  checkState('state', a.state, a.dims);
  return a.state;
}

/** Maps slice (bi, hi) of the fused inputs to features, with favor offsets. */
export function fusedSlice(a: RefCausalArgs, state: AttnState, bi: number, hi: number): FusedSlice {
  const { h, t, d, m, dv } = a.dims;
  const bh = bi * h + hi;
  const q = block(a.q, bh * t * d, t * d);
  const k = block(a.k, bh * t * d, t * d);
  const omega = headOmega(a.omega, hi, m, d);
  const logitsQ = refFeatureMap(q, omega, a.feature, d, m).logits;
  const logitsK = refFeatureMap(k, omega, a.feature, d, m).logits;
  const keyOffset = new Float64Array(t); // m_j
  let offsetIn = 0;
  let phiQ: Float64Array;
  let phiK: Float64Array;
  if (a.feature === 'favor') {
    offsetIn = state.offset[bh];
    const keyMax = rowMax(logitsK, t, m);
    let running = offsetIn;
    for (let j = 0; j < t; j++) {
      running = Math.max(running, keyMax[j]);
      keyOffset[j] = running;
    }
    phiQ = applyFeature(logitsQ, 'favor', t, m, rowMax(logitsQ, t, m));
    phiK = applyFeature(logitsK, 'favor', t, m, keyOffset);
  } else {
    phiQ = applyFeature(logitsQ, a.feature, t, m);
    phiK = applyFeature(logitsK, a.feature, t, m);
  }
  const sl: CausalSlice = {
    T: t,
    M: m,
    D: dv,
    eps: a.eps ?? DEFAULT_EPS,
    phiQ,
    phiK,
    v: block(a.v, bh * t * dv, t * dv),
    keyOffset,
    offsetIn,
    S: block(state.S, bh * m * dv, m * dv),
    z: block(state.z, bh * m, m),
  };
  return { sl, q, k, omega, logitsQ, logitsK };
}

export function checkFeaturesArgs(a: RefCausalFeaturesArgs): AttnState {
  checkDims(a.dims);
  const { b, h, t, m, dv } = a.dims;
  checkLength('phiQ', a.phiQ, b * h * t * m);
  checkLength('phiK', a.phiK, b * h * t * m);
  checkLength('v', a.v, b * h * t * dv);
  if (a.state === undefined) return emptyState(a.dims, 'features');
  checkState('state', a.state, a.dims);
  return a.state;
}

/** Slice (bi, hi) of precomputed features, 0 frame. */
export function featuresSlice(a: RefCausalFeaturesArgs, state: AttnState, bh: number): CausalSlice {
  const { t, m, dv } = a.dims;
  return {
    T: t,
    M: m,
    D: dv,
    eps: a.eps ?? DEFAULT_EPS,
    phiQ: block(a.phiQ, bh * t * m, t * m),
    phiK: block(a.phiK, bh * t * m, t * m),
    v: block(a.v, bh * t * dv, t * dv),
    keyOffset: new Float64Array(t),
    offsetIn: 0,
    S: block(state.S, bh * m * dv, m * dv),
    z: block(state.z, bh * m, m),
  };
}

/** Upstream gradient wrt the output state, zeros when absent. */
export function upstreamState(dims: Dims, dState: StateGrad | undefined): StateGrad {
  const { b, h, m, dv } = dims;
  if (dState === undefined) return { S: new Float64Array(b * h * m * dv), z: new Float64Array(b * h * m) };
  checkLength('dState.S', dState.S, b * h * m * dv);
  checkLength('dState.z', dState.z, b * h * m);
  return dState;
}

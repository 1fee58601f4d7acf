/**
 * Float64 reference for causal linear attention with a carried state
 * (crate/src/linear_attn/README.md, "Causal forward" and "Causal backward").
 *
 * Every public function loops over the `(b, h)` slices and hands one slice, already mapped to
 * features, to a slice kernel. The slice kernels see the stabiliser only through
 * `keyOffset` (m_j) and `offsetIn`: a_ij = exp(m_j − m_i), s_i = exp(offset_in − m_i). Maps
 * without a stabiliser (relu, elu1, sqr, precomputed features) use the 0 frame (every m_j = 0,
 * offset_in = 0), so a_ij = s_i = 1 and the state's offset is passed through unchanged.
 */
import type { AttnState, Dims, FeatureSpec, StateGrad } from '../types.ts';
import { applyFeature, featureBackward, refFeatureMap, rowMax } from './featureMap.ts';
import {
  type Arr,
  block,
  checkDims,
  checkFeatureSpec,
  checkLength,
  checkState,
  emptyState,
  headOmega,
  rescale,
} from './util.ts';

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
interface CausalSlice {
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

interface SliceForward {
  out: Float64Array; // [T, D]
  den: Float64Array; // [T]
  S: Float64Array; // [M, D] output state, frame `offset`
  z: Float64Array; // [M]
  offset: number; // m_T (offset_in when T = 0)
}

interface SliceGrad {
  dPhiQ: Float64Array; // [T, M]
  dPhiK: Float64Array; // [T, M]
  dv: Float64Array; // [T, D]
  dS: Float64Array; // [M, D] gradient wrt the input state
  dz: Float64Array; // [M]
}

function lastOffset(sl: CausalSlice): number {
  return sl.T > 0 ? sl.keyOffset[sl.T - 1] : sl.offsetIn;
}

function dot(x: Float64Array, xi: number, y: Float64Array, yi: number, n: number): number {
  let acc = 0;
  for (let r = 0; r < n; r++) acc += x[xi + r] * y[yi + r];
  return acc;
}

/** Output state: S_out = exp(offset_in − m_T) S_in + Σ_j exp(m_j − m_T) φk_j v_jᵀ, z likewise. */
function outputState(sl: CausalSlice): { S: Float64Array; z: Float64Array; offset: number } {
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
function maskedScores(sl: CausalSlice): Float64Array {
  const { T, M, phiQ, phiK, keyOffset } = sl;
  const A = new Float64Array(T * T); // [T, T]
  for (let i = 0; i < T; i++) {
    for (let j = 0; j <= i; j++) {
      A[i * T + j] = rescale(keyOffset[j], keyOffset[i]) * dot(phiQ, i * M, phiK, j * M, M);
    }
  }
  return A;
}

/** Quadratic form: num = diag(s) ΦQ S_in + A V, den = diag(s) ΦQ z_in + A 1. */
function sliceForwardQuadratic(sl: CausalSlice): SliceForward {
  const { T, M, D, phiQ, v, keyOffset, eps } = sl;
  const A = maskedScores(sl);
  const out = new Float64Array(T * D); // [T, D]
  const den = new Float64Array(T); // [T]
  const num = new Float64Array(D); // one row
  for (let i = 0; i < T; i++) {
    const s = rescale(sl.offsetIn, keyOffset[i]);
    let d = 0;
    num.fill(0);
    for (let r = 0; r < M; r++) {
      const f = s * phiQ[i * M + r];
      d += f * sl.z[r];
      for (let c = 0; c < D; c++) num[c] += f * sl.S[r * D + c];
    }
    for (let j = 0; j <= i; j++) {
      const aij = A[i * T + j];
      d += aij;
      for (let c = 0; c < D; c++) num[c] += aij * v[j * D + c];
    }
    den[i] = d;
    for (let c = 0; c < D; c++) out[i * D + c] = d === 0 ? 0 : num[c] / (d + eps);
  }
  return { out, den, ...outputState(sl) };
}

/** Recurrent form: move the running state to frame m_j, add φk_j v_jᵀ, read it with φq_j. */
function sliceForwardRecurrent(sl: CausalSlice): SliceForward {
  const { T, M, D, phiQ, phiK, v, keyOffset, eps } = sl;
  const S = Float64Array.from(sl.S); // [M, D] running state
  const z = Float64Array.from(sl.z); // [M]
  let frame = sl.offsetIn;
  const out = new Float64Array(T * D); // [T, D]
  const den = new Float64Array(T); // [T]
  for (let j = 0; j < T; j++) {
    const f = rescale(frame, keyOffset[j]);
    frame = keyOffset[j];
    for (let r = 0; r < M; r++) {
      z[r] = f * z[r] + phiK[j * M + r];
      for (let c = 0; c < D; c++) S[r * D + c] = f * S[r * D + c] + phiK[j * M + r] * v[j * D + c];
    }
    const d = dot(phiQ, j * M, z, 0, M);
    den[j] = d;
    for (let c = 0; c < D; c++) {
      let n = 0;
      for (let r = 0; r < M; r++) n += phiQ[j * M + r] * S[r * D + c];
      out[j * D + c] = d === 0 ? 0 : n / (d + eps);
    }
  }
  return { out, den, S, z, offset: frame };
}

/**
 * Backward of one slice from the per-token formulas (offsets are constants):
 *   gN_i = g_i/(den_i+ε), gD_i = −(g_i·out_i)/(den_i+ε), both 0 when den_i == 0
 *   ∂φq_i = s_i (S_in gN_i + gD_i z_in) + Σ_{j≤i} a_ij φk_j (v_j·gN_i + gD_i)
 *   ∂φk_j = Σ_{i≥j} a_ij φq_i (v_j·gN_i + gD_i) + w_j (G v_j + Gz)
 *   ∂v_j  = Σ_{i≥j} a_ij (φq_i·φk_j) gN_i + w_j Gᵀ φk_j,        w_j = exp(m_j − m_T)
 *   ∂S_in = exp(offset_in − m_T) G + Σ_i s_i φq_i gN_iᵀ,          ∂z_in likewise with gD_i
 */
function sliceBackward(sl: CausalSlice, g: Float64Array, G: Float64Array, Gz: Float64Array): SliceGrad {
  const { T, M, D, phiQ, phiK, v, keyOffset, eps } = sl;
  const fwd = sliceForwardQuadratic(sl);
  const mT = lastOffset(sl);

  const gN = new Float64Array(T * D); // [T, D]
  const gD = new Float64Array(T); // [T]
  for (let i = 0; i < T; i++) {
    if (fwd.den[i] === 0) continue;
    const inv = 1 / (fwd.den[i] + eps);
    let go = 0;
    for (let c = 0; c < D; c++) {
      gN[i * D + c] = g[i * D + c] * inv;
      go += g[i * D + c] * fwd.out[i * D + c];
    }
    gD[i] = -go * inv;
  }

  const dPhiQ = new Float64Array(T * M); // [T, M]
  const dPhiK = new Float64Array(T * M); // [T, M]
  const dv = new Float64Array(T * D); // [T, D]
  const dS = new Float64Array(M * D); // [M, D]
  const dz = new Float64Array(M); // [M]

  const carry = rescale(sl.offsetIn, mT);
  for (let r = 0; r < M; r++) {
    dz[r] = carry * Gz[r];
    for (let c = 0; c < D; c++) dS[r * D + c] = carry * G[r * D + c];
  }

  for (let i = 0; i < T; i++) {
    const s = rescale(sl.offsetIn, keyOffset[i]);
    // state terms of query i
    for (let r = 0; r < M; r++) {
      dPhiQ[i * M + r] += s * (dot(sl.S, r * D, gN, i * D, D) + gD[i] * sl.z[r]);
      dz[r] += s * phiQ[i * M + r] * gD[i];
      for (let c = 0; c < D; c++) dS[r * D + c] += s * phiQ[i * M + r] * gN[i * D + c];
    }
    // pair terms (i, j ≤ i)
    for (let j = 0; j <= i; j++) {
      const a = rescale(keyOffset[j], keyOffset[i]);
      const e = a * (dot(v, j * D, gN, i * D, D) + gD[i]); // a_ij (v_j·gN_i + gD_i)
      const qk = a * dot(phiQ, i * M, phiK, j * M, M); // a_ij (φq_i·φk_j)
      for (let r = 0; r < M; r++) {
        dPhiQ[i * M + r] += e * phiK[j * M + r];
        dPhiK[j * M + r] += e * phiQ[i * M + r];
      }
      for (let c = 0; c < D; c++) dv[j * D + c] += qk * gN[i * D + c];
    }
  }

  // output-state terms of key j
  for (let j = 0; j < T; j++) {
    const w = rescale(keyOffset[j], mT);
    for (let r = 0; r < M; r++) {
      dPhiK[j * M + r] += w * (dot(G, r * D, v, j * D, D) + Gz[r]);
      for (let c = 0; c < D; c++) dv[j * D + c] += w * G[r * D + c] * phiK[j * M + r];
    }
  }
  return { dPhiQ, dPhiK, dv, dS, dz };
}

/**
 * Backward in recurrent form with stored states: the forward keeps every S_j, z_j (frame m_j),
 * then one reverse sweep carries G = ∂L/∂S_j. O(T·M·D) memory, O(T·M·D) time, so it reaches
 * long sequences the quadratic form cannot, and it never undoes a state by subtraction.
 *   G ← G + φq_j gN_jᵀ, Gz ← Gz + gD_j φq_j; ∂φq_j = S_j gN_j + gD_j z_j;
 *   ∂φk_j = G v_j + Gz; ∂v_j = Gᵀ φk_j; then G, Gz ← exp(m_{j−1} − m_j) G, Gz.
 */
function sliceBackwardRecurrent(sl: CausalSlice, g: Float64Array, Gout: Float64Array, Gzout: Float64Array): SliceGrad {
  const { T, M, D, phiQ, phiK, v, keyOffset, eps } = sl;
  const states = new Float64Array(T * M * D); // [T, M, D]
  const zs = new Float64Array(T * M); // [T, M]
  const S = Float64Array.from(sl.S);
  const z = Float64Array.from(sl.z);
  const carry = new Float64Array(T); // exp(m_{j-1} − m_j)
  let frame = sl.offsetIn;
  for (let j = 0; j < T; j++) {
    carry[j] = rescale(frame, keyOffset[j]);
    frame = keyOffset[j];
    for (let r = 0; r < M; r++) {
      z[r] = carry[j] * z[r] + phiK[j * M + r];
      for (let c = 0; c < D; c++) S[r * D + c] = carry[j] * S[r * D + c] + phiK[j * M + r] * v[j * D + c];
    }
    states.set(S, j * M * D);
    zs.set(z, j * M);
  }
  const G = Float64Array.from(Gout); // [M, D]
  const Gz = Float64Array.from(Gzout); // [M]
  const dPhiQ = new Float64Array(T * M);
  const dPhiK = new Float64Array(T * M);
  const dv = new Float64Array(T * D);
  const gN = new Float64Array(D);
  for (let j = T - 1; j >= 0; j--) {
    const den = dot(phiQ, j * M, zs, j * M, M);
    gN.fill(0);
    let gD = 0;
    if (den !== 0) {
      const inv = 1 / (den + eps);
      let go = 0;
      for (let c = 0; c < D; c++) {
        let num = 0;
        for (let r = 0; r < M; r++) num += phiQ[j * M + r] * states[j * M * D + r * D + c];
        gN[c] = g[j * D + c] * inv;
        go += g[j * D + c] * num * inv;
      }
      gD = -go * inv;
    }
    for (let r = 0; r < M; r++) {
      const fq = phiQ[j * M + r];
      Gz[r] += gD * fq;
      for (let c = 0; c < D; c++) G[r * D + c] += fq * gN[c];
      dPhiQ[j * M + r] = dot(states, j * M * D + r * D, gN, 0, D) + gD * zs[j * M + r];
      dPhiK[j * M + r] = dot(G, r * D, v, j * D, D) + Gz[r];
    }
    for (let c = 0; c < D; c++) {
      let acc = 0;
      for (let r = 0; r < M; r++) acc += G[r * D + c] * phiK[j * M + r];
      dv[j * D + c] = acc;
    }
    for (let r = 0; r < M; r++) {
      Gz[r] *= carry[j];
      for (let c = 0; c < D; c++) G[r * D + c] *= carry[j];
    }
  }
  return { dPhiQ, dPhiK, dv, dS: G, dz: Gz };
}

/** Fused-path slice plus what the feature-map backward needs. */
interface FusedSlice {
  sl: CausalSlice;
  q: Float64Array; // [T, d]
  k: Float64Array; // [T, d]
  omega: Float64Array | undefined; // [M, d]
  logitsQ: Float64Array; // [T, M]
  logitsK: Float64Array; // [T, M]
}

function checkCausalArgs(a: RefCausalArgs): AttnState {
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
function fusedSlice(a: RefCausalArgs, state: AttnState, bi: number, hi: number): FusedSlice {
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

function checkFeaturesArgs(a: RefCausalFeaturesArgs): AttnState {
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
function featuresSlice(a: RefCausalFeaturesArgs, state: AttnState, bh: number): CausalSlice {
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

/** Runs `forward` on every slice and assembles out `[b, h, t, dv]` and the output state. */
function runForward(
  dims: Dims,
  inState: AttnState,
  stabilised: boolean,
  sliceOf: (bi: number, hi: number) => CausalSlice,
  forward: (sl: CausalSlice) => SliceForward,
): { out: Float64Array; state: AttnState } {
  const { b, h, t, m, dv } = dims;
  const out = new Float64Array(b * h * t * dv);
  const state = emptyState(dims, 'features');
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < h; hi++) {
      const bh = bi * h + hi;
      const f = forward(sliceOf(bi, hi));
      out.set(f.out, bh * t * dv);
      state.S.set(f.S, bh * m * dv);
      state.z.set(f.z, bh * m);
      state.offset[bh] = stabilised ? f.offset : inState.offset[bh];
    }
  }
  return { out, state };
}

/** Upstream gradient wrt the output state, zeros when absent. */
function upstreamState(dims: Dims, dState: StateGrad | undefined): StateGrad {
  const { b, h, m, dv } = dims;
  if (dState === undefined) return { S: new Float64Array(b * h * m * dv), z: new Float64Array(b * h * m) };
  checkLength('dState.S', dState.S, b * h * m * dv);
  checkLength('dState.z', dState.z, b * h * m);
  return dState;
}

/** Causal forward, quadratic masked form (full T×T matrix per slice). */
export function refCausalForward(a: RefCausalArgs): { out: Float64Array; state: AttnState } {
  const state = checkCausalArgs(a);
  return runForward(
    a.dims,
    state,
    a.feature === 'favor',
    (bi, hi) => fusedSlice(a, state, bi, hi).sl,
    sliceForwardQuadratic,
  );
}

/** Causal forward, token-by-token recurrent form (S, z updated per token). */
export function refCausalForwardRecurrent(a: RefCausalArgs): { out: Float64Array; state: AttnState } {
  const state = checkCausalArgs(a);
  return runForward(
    a.dims,
    state,
    a.feature === 'favor',
    (bi, hi) => fusedSlice(a, state, bi, hi).sl,
    sliceForwardRecurrent,
  );
}

/**
 * Causal backward. `dOut: [b, h, t, dv]`, `dState`: upstream gradient wrt the output state.
 * Returns dq, dk, dv and the gradient wrt the input state (S, z).
 */
function causalBackwardWith(
  a: RefCausalArgs & { dOut: Arr; dState?: StateGrad },
  sliceGrad: (sl: CausalSlice, g: Float64Array, G: Float64Array, Gz: Float64Array) => SliceGrad,
): {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dState: StateGrad;
} {
  const state = checkCausalArgs(a);
  const { b, h, t, d, m, dv } = a.dims;
  checkLength('dOut', a.dOut, b * h * t * dv);
  const up = upstreamState(a.dims, a.dState);
  const dq = new Float64Array(b * h * t * d);
  const dk = new Float64Array(b * h * t * d);
  const dV = new Float64Array(b * h * t * dv);
  const dState: StateGrad = { S: new Float64Array(b * h * m * dv), z: new Float64Array(b * h * m) };
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < h; hi++) {
      const bh = bi * h + hi;
      const fs = fusedSlice(a, state, bi, hi);
      const g = sliceGrad(
        fs.sl,
        block(a.dOut, bh * t * dv, t * dv),
        block(up.S, bh * m * dv, m * dv),
        block(up.z, bh * m, m),
      );
      dq.set(featureBackward(fs.q, fs.omega, a.feature, d, m, fs.logitsQ, fs.sl.phiQ, g.dPhiQ), bh * t * d);
      dk.set(featureBackward(fs.k, fs.omega, a.feature, d, m, fs.logitsK, fs.sl.phiK, g.dPhiK), bh * t * d);
      dV.set(g.dv, bh * t * dv);
      dState.S.set(g.dS, bh * m * dv);
      dState.z.set(g.dz, bh * m);
    }
  }
  return { dq, dk, dv: dV, dState };
}

export function refCausalBackward(a: RefCausalArgs & { dOut: Arr; dState?: StateGrad }): {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dState: StateGrad;
} {
  return causalBackwardWith(a, sliceBackward);
}

/** Same gradients as {@link refCausalBackward}, recurrent form with stored states (long T). */
export function refCausalBackwardRecurrent(a: RefCausalArgs & { dOut: Arr; dState?: StateGrad }): {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dState: StateGrad;
} {
  return causalBackwardWith(a, sliceBackwardRecurrent);
}

/** Causal forward on precomputed features `[b, h, t, m]` (0 frame; the offset is passed through). */
export function refCausalForwardFeatures(a: RefCausalFeaturesArgs): { out: Float64Array; state: AttnState } {
  const state = checkFeaturesArgs(a);
  return runForward(
    a.dims,
    state,
    false,
    (bi, hi) => featuresSlice(a, state, bi * a.dims.h + hi),
    sliceForwardQuadratic,
  );
}

/** Backward of {@link refCausalForwardFeatures}. */
export function refCausalBackwardFeatures(a: RefCausalFeaturesArgs & { dOut: Arr; dState?: StateGrad }): {
  dPhiQ: Float64Array;
  dPhiK: Float64Array;
  dv: Float64Array;
  dState: StateGrad;
} {
  const state = checkFeaturesArgs(a);
  const { b, h, t, m, dv } = a.dims;
  checkLength('dOut', a.dOut, b * h * t * dv);
  const up = upstreamState(a.dims, a.dState);
  const dPhiQ = new Float64Array(b * h * t * m);
  const dPhiK = new Float64Array(b * h * t * m);
  const dV = new Float64Array(b * h * t * dv);
  const dState: StateGrad = { S: new Float64Array(b * h * m * dv), z: new Float64Array(b * h * m) };
  for (let bh = 0; bh < b * h; bh++) {
    const g = sliceBackward(
      featuresSlice(a, state, bh),
      block(a.dOut, bh * t * dv, t * dv),
      block(up.S, bh * m * dv, m * dv),
      block(up.z, bh * m, m),
    );
    dPhiQ.set(g.dPhiQ, bh * t * m);
    dPhiK.set(g.dPhiK, bh * t * m);
    dV.set(g.dv, bh * t * dv);
    dState.S.set(g.dS, bh * m * dv);
    dState.z.set(g.dz, bh * m);
  }
  return { dPhiQ, dPhiK, dv: dV, dState };
}

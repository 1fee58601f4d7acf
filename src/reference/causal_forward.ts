/**
 * Float64 twins of `causalForward` and `causalForwardFeatures`: quadratic (masked T×T) and
 * token-by-token recurrent forms over every `(b, h)` slice (see ./causal_slice.ts).
 */
import type { AttnState, Dims } from '../kernels/types.ts';
import {
  type CausalSlice,
  checkCausalArgs,
  checkFeaturesArgs,
  dot,
  featuresSlice,
  fusedSlice,
  maskedScores,
  outputState,
  type RefCausalArgs,
  type RefCausalFeaturesArgs,
  type SliceForward,
} from './causal_slice.ts';
import { emptyState, rescale } from './util.ts';

/** Quadratic form: num = diag(s) ΦQ S_in + A V, den = diag(s) ΦQ z_in + A 1. */
export function sliceForwardQuadratic(sl: CausalSlice): SliceForward {
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

/** Causal forward, quadratic masked form (full T×T matrix per slice). */
export function refCausalForward(a: RefCausalArgs): { out: Float64Array; state: AttnState } {
  const state = checkCausalArgs(a);
  return runForward(a.dims, state, a.feature === 'favor', (bi, hi) => fusedSlice(a, state, bi, hi).sl, sliceForwardQuadratic);
}

/** Causal forward, token-by-token recurrent form (S, z updated per token). */
export function refCausalForwardRecurrent(a: RefCausalArgs): { out: Float64Array; state: AttnState } {
  const state = checkCausalArgs(a);
  return runForward(a.dims, state, a.feature === 'favor', (bi, hi) => fusedSlice(a, state, bi, hi).sl, sliceForwardRecurrent);
}

/** Causal forward on precomputed features `[b, h, t, m]` (0 frame; the offset is passed through). */
export function refCausalForwardFeatures(a: RefCausalFeaturesArgs): { out: Float64Array; state: AttnState } {
  const state = checkFeaturesArgs(a);
  return runForward(a.dims, state, false, (bi, hi) => featuresSlice(a, state, bi * a.dims.h + hi), sliceForwardQuadratic);
}

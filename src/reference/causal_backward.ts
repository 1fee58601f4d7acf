/**
 * Float64 twins of `causalBackward` and `causalBackwardFeatures` ("Causal backward" in
 * crate/src/linear_attn/README.md): gradients of the inputs and of the input state, from the
 * quadratic form or the recurrent form with stored states (see ./causal_slice.ts).
 */
import type { StateGrad } from '../kernels/types.ts';
import {
  type CausalSlice,
  checkCausalArgs,
  checkFeaturesArgs,
  dot,
  featuresSlice,
  fusedSlice,
  lastOffset,
  type RefCausalArgs,
  type RefCausalFeaturesArgs,
  type SliceGrad,
  upstreamState,
} from './causal_slice.ts';
import { sliceForwardQuadratic } from './causal_forward.ts';
import { featureBackward } from './feature_map.ts';
import { type Arr, block, checkLength, rescale } from './util.ts';

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
      const g = sliceGrad(fs.sl, block(a.dOut, bh * t * dv, t * dv), block(up.S, bh * m * dv, m * dv), block(up.z, bh * m, m));
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
    const g = sliceBackward(featuresSlice(a, state, bh), block(a.dOut, bh * t * dv, t * dv), block(up.S, bh * m * dv, m * dv), block(up.z, bh * m, m));
    dPhiQ.set(g.dPhiQ, bh * t * m);
    dPhiK.set(g.dPhiK, bh * t * m);
    dV.set(g.dv, bh * t * dv);
    dState.S.set(g.dS, bh * m * dv);
    dState.z.set(g.dz, bh * m);
  }
  return { dPhiQ, dPhiK, dv: dV, dState };
}

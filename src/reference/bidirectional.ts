/**
 * Float64 reference for bidirectional linear attention (crate/src/linear_attn/README.md,
 * "Bidirectional"): out_i = φq_iᵀ (ΦKᵀ V) / (φq_i·(ΦKᵀ 1) + ε), 0 when the denominator is 0.
 * FAVOR+ queries use their own row offset, keys one offset: the maximum ℓ over all keys.
 */
import type { Dims, FeatureSpec } from '../kernels/types.ts';
import { DEFAULT_EPS } from './causal_slice.ts';
import { applyFeature, featureBackward, refFeatureMap, rowMax } from './feature_map.ts';
import { type Arr, block, checkDims, checkFeatureSpec, checkLength, headOmega } from './util.ts';

export interface RefBidirectionalArgs extends FeatureSpec {
  q: Arr;
  k: Arr;
  v: Arr;
  dims: Dims;
  eps?: number;
}

interface BiSlice {
  q: Float64Array; // [T, d]
  k: Float64Array; // [T, d]
  v: Float64Array; // [T, D]
  omega: Float64Array | undefined; // [M, d]
  logitsQ: Float64Array; // [T, M]
  logitsK: Float64Array; // [T, M]
  phiQ: Float64Array; // [T, M]
  phiK: Float64Array; // [T, M]
  KV: Float64Array; // [M, D] ΦKᵀ V
  kz: Float64Array; // [M] ΦKᵀ 1
  out: Float64Array; // [T, D]
  den: Float64Array; // [T]
}

function checkArgs(a: RefBidirectionalArgs): void {
  checkDims(a.dims);
  const { b, h, t, d, dv } = a.dims;
  checkFeatureSpec(a.feature, a.omega, a.dims);
  checkLength('q', a.q, b * h * t * d);
  checkLength('k', a.k, b * h * t * d);
  checkLength('v', a.v, b * h * t * dv);
}

function forwardSlice(a: RefBidirectionalArgs, bi: number, hi: number): BiSlice {
  const { h, t, d, m, dv } = a.dims;
  const eps = a.eps ?? DEFAULT_EPS;
  const bh = bi * h + hi;
  const q = block(a.q, bh * t * d, t * d);
  const k = block(a.k, bh * t * d, t * d);
  const v = block(a.v, bh * t * dv, t * dv);
  const omega = headOmega(a.omega, hi, m, d);
  const logitsQ = refFeatureMap(q, omega, a.feature, d, m).logits;
  const logitsK = refFeatureMap(k, omega, a.feature, d, m).logits;
  let phiQ: Float64Array;
  let phiK: Float64Array;
  if (a.feature === 'favor') {
    const keyMax = Math.max(...rowMax(logitsK, t, m));
    phiQ = applyFeature(logitsQ, 'favor', t, m, rowMax(logitsQ, t, m));
    phiK = applyFeature(logitsK, 'favor', t, m, new Float64Array(t).fill(keyMax));
  } else {
    phiQ = applyFeature(logitsQ, a.feature, t, m);
    phiK = applyFeature(logitsK, a.feature, t, m);
  }

  const KV = new Float64Array(m * dv);
  const kz = new Float64Array(m);
  for (let j = 0; j < t; j++) {
    for (let r = 0; r < m; r++) {
      kz[r] += phiK[j * m + r];
      for (let c = 0; c < dv; c++) KV[r * dv + c] += phiK[j * m + r] * v[j * dv + c];
    }
  }

  const out = new Float64Array(t * dv);
  const den = new Float64Array(t);
  for (let i = 0; i < t; i++) {
    let dd = 0;
    for (let r = 0; r < m; r++) dd += phiQ[i * m + r] * kz[r];
    den[i] = dd;
    for (let c = 0; c < dv; c++) {
      let n = 0;
      for (let r = 0; r < m; r++) n += phiQ[i * m + r] * KV[r * dv + c];
      out[i * dv + c] = dd === 0 ? 0 : n / (dd + eps);
    }
  }
  return { q, k, v, omega, logitsQ, logitsK, phiQ, phiK, KV, kz, out, den };
}

/** Bidirectional forward; out `[b, h, t, dv]`. */
export function refBidirectionalForward(a: RefBidirectionalArgs): { out: Float64Array } {
  checkArgs(a);
  const { b, h, t, dv } = a.dims;
  const out = new Float64Array(b * h * t * dv);
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < h; hi++) out.set(forwardSlice(a, bi, hi).out, (bi * h + hi) * t * dv);
  }
  return { out };
}

/**
 * Bidirectional backward (offsets constant): ∂φq_i = KV gN_i + gD_i kz,
 * ∂φk_j = KV_g v_j + kz_g, ∂v_j = KV_gᵀ φk_j with KV_g = Σ_i φq_i gN_iᵀ, kz_g = Σ_i gD_i φq_i.
 */
export function refBidirectionalBackward(a: RefBidirectionalArgs & { dOut: Arr }): {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
} {
  checkArgs(a);
  const { b, h, t, d, m, dv } = a.dims;
  checkLength('dOut', a.dOut, b * h * t * dv);
  const eps = a.eps ?? DEFAULT_EPS;
  const dq = new Float64Array(b * h * t * d);
  const dk = new Float64Array(b * h * t * d);
  const dV = new Float64Array(b * h * t * dv);
  for (let bi = 0; bi < b; bi++) {
    for (let hi = 0; hi < h; hi++) {
      const bh = bi * h + hi;
      const s = forwardSlice(a, bi, hi);
      const g = block(a.dOut, bh * t * dv, t * dv); // [T, D]

      const dPhiQ = new Float64Array(t * m);
      const KVg = new Float64Array(m * dv);
      const kzg = new Float64Array(m);
      for (let i = 0; i < t; i++) {
        if (s.den[i] === 0) continue;
        const inv = 1 / (s.den[i] + eps);
        let go = 0;
        for (let c = 0; c < dv; c++) go += g[i * dv + c] * s.out[i * dv + c];
        const gD = -go * inv;
        for (let r = 0; r < m; r++) {
          const pq = s.phiQ[i * m + r];
          let acc = gD * s.kz[r];
          for (let c = 0; c < dv; c++) {
            const gN = g[i * dv + c] * inv;
            acc += s.KV[r * dv + c] * gN;
            KVg[r * dv + c] += pq * gN;
          }
          dPhiQ[i * m + r] = acc;
          kzg[r] += gD * pq;
        }
      }

      const dPhiK = new Float64Array(t * m);
      const dvs = new Float64Array(t * dv);
      for (let j = 0; j < t; j++) {
        for (let r = 0; r < m; r++) {
          let acc = kzg[r];
          for (let c = 0; c < dv; c++) {
            acc += KVg[r * dv + c] * s.v[j * dv + c];
            dvs[j * dv + c] += KVg[r * dv + c] * s.phiK[j * m + r];
          }
          dPhiK[j * m + r] = acc;
        }
      }

      dq.set(featureBackward(s.q, s.omega, a.feature, d, m, s.logitsQ, s.phiQ, dPhiQ), bh * t * d);
      dk.set(featureBackward(s.k, s.omega, a.feature, d, m, s.logitsK, s.phiK, dPhiK), bh * t * d);
      dV.set(dvs, bh * t * dv);
    }
  }
  return { dq, dk, dv: dV };
}

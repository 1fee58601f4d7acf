/**
 * Float64 references for the correctness gate (small sizes only).
 * Linear: FAVOR+ features exactly as crate/src/linear_attn/README.md, without the stabiliser
 * (it cancels between numerator and denominator): φ(x)_r = exp(ω_r·x' − |x'|²/2), x' = x·d^(-1/4),
 * out_i = Σ_{j≤i} (φq_i·φk_j) v_j / Σ_{j≤i} φq_i·φk_j.
 * Softmax: out_i = Σ_{j≤i} softmax_j(q_i·k_j/√d) v_j.
 */
import type { BenchCase, Inputs } from './types.ts';

/** φ for one row: x [d] at xOff, omega [m,d] at wOff → out [m] (float64). */
function favor64(x: Float32Array, xOff: number, w: Float32Array, wOff: number, m: number, d: number, out: Float64Array) {
  const s = d ** -0.25;
  let sq = 0;
  for (let e = 0; e < d; e++) sq += (x[xOff + e] * s) ** 2;
  for (let r = 0; r < m; r++) {
    let u = 0;
    for (let e = 0; e < d; e++) u += w[wOff + r * d + e] * x[xOff + e] * s;
    out[r] = Math.exp(u - sq / 2);
  }
}

export function linearReference(c: BenchCase, x: Inputs): Float64Array {
  const { b, h, t, d, dv, m } = c;
  const out = new Float64Array(b * h * t * dv);
  const fq = new Float64Array(m);
  const fk = new Float64Array(m);
  for (let bh = 0; bh < b * h; bh++) {
    const head = bh % h;
    const S = new Float64Array(m * dv);
    const z = new Float64Array(m);
    for (let i = 0; i < t; i++) {
      const row = bh * t + i;
      favor64(x.k, row * d, x.omega, head * m * d, m, d, fk);
      favor64(x.q, row * d, x.omega, head * m * d, m, d, fq);
      for (let r = 0; r < m; r++) {
        z[r] += fk[r];
        for (let e = 0; e < dv; e++) S[r * dv + e] += fk[r] * x.v[row * dv + e];
      }
      let den = 0;
      for (let r = 0; r < m; r++) den += fq[r] * z[r];
      for (let e = 0; e < dv; e++) {
        let num = 0;
        for (let r = 0; r < m; r++) num += fq[r] * S[r * dv + e];
        out[row * dv + e] = num / den;
      }
    }
  }
  return out;
}

export function softmaxReference(c: BenchCase, x: Inputs): Float64Array {
  const { b, h, t, d, dv } = c;
  const out = new Float64Array(b * h * t * dv);
  const p = new Float64Array(t);
  const scale = 1 / Math.sqrt(d);
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = 0; i < t; i++) {
      const qi = (bh * t + i) * d;
      let mx = -Infinity;
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let e = 0; e < d; e++) s += x.q[qi + e] * x.k[(bh * t + j) * d + e];
        p[j] = s * scale;
        if (p[j] > mx) mx = p[j];
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) sum += p[j] = Math.exp(p[j] - mx);
      for (let e = 0; e < dv; e++) {
        let acc = 0;
        for (let j = 0; j <= i; j++) acc += p[j] * x.v[(bh * t + j) * dv + e];
        out[(bh * t + i) * dv + e] = acc / sum;
      }
    }
  }
  return out;
}

/** sqrt(Σ(a−r)² / Σr²); NaN anywhere → Infinity. */
export function relRms(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const e = a[i] - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
  }
  const r = Math.sqrt(num / den);
  return Number.isFinite(r) ? r : Infinity;
}

export const GATE_TOLERANCE = 1e-3;

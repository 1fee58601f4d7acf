/**
 * js-recurrent: causal linear attention as a plain-JS recurrence, one token at a time
 * (Float32Array in/out, float64 state). Per head and token i:
 *   φq, φk = FAVOR+ features (no stabiliser), S += φk vᵀ [M,D], z += φk [M],
 *   out_i = Sᵀφq / (φq·z).
 * Forward only (fwd+bwd: n/a). Peak memory: the bytes it allocates (output, state, scratch).
 */
import type { BenchCase, Inputs, Measured, Method, Mode } from '../harness/types.ts';
import { Tally } from '../harness/memory.ts';

interface Ctx {
  c: BenchCase;
  x: Inputs;
}

function run(c: BenchCase, x: Inputs, tally = new Tally()): Float32Array {
  const { b, h, t: T, d, m: M, dv: D } = c;
  const s = d ** -0.25;
  const out = tally.f32(b * h * T * D);
  const S = tally.f64(M * D);
  const z = tally.f64(M);
  const fq = tally.f64(M);
  const fk = tally.f64(M);
  const { q, k, v, omega } = x;
  const feature = (src: Float32Array, off: number, wOff: number, dst: Float64Array) => {
    let sq = 0;
    for (let e = 0; e < d; e++) sq += src[off + e] * src[off + e];
    const half = (sq * s * s) / 2;
    for (let r = 0; r < M; r++) {
      let u = 0;
      const w = wOff + r * d;
      for (let e = 0; e < d; e++) u += omega[w + e] * src[off + e];
      dst[r] = Math.exp(u * s - half);
    }
  };
  for (let bh = 0; bh < b * h; bh++) {
    const wOff = (bh % h) * M * d;
    S.fill(0);
    z.fill(0);
    for (let i = 0; i < T; i++) {
      const row = bh * T + i;
      feature(k, row * d, wOff, fk);
      feature(q, row * d, wOff, fq);
      const vo = row * D;
      let den = 0;
      for (let r = 0; r < M; r++) {
        const a = fk[r];
        z[r] += a;
        den += fq[r] * z[r];
        const so = r * D;
        for (let e = 0; e < D; e++) S[so + e] += a * v[vo + e];
      }
      const inv = 1 / den;
      for (let e = 0; e < D; e++) {
        let acc = 0;
        for (let r = 0; r < M; r++) acc += fq[r] * S[r * D + e];
        out[vo + e] = acc * inv;
      }
    }
  }
  return out;
}

/**
 * Flops per head and token: features 2·(2Md + 2d + 2M) (xω, |x|², sub+exp; x' scaling folded)
 * + state 2MD + z M + den 2M + readout 2MD + divide D.
 */
function flops(c: BenchCase, mode: Mode): number {
  if (mode !== 'fwd') return NaN;
  const { t: T, d, m: M, dv: D } = c;
  const perToken = 2 * (2 * M * d + 2 * d + 2 * M) + 4 * M * D + 3 * M + D;
  return c.b * c.h * T * perToken;
}

export const jsRecurrent: Method<Ctx> = {
  name: 'js-recurrent',
  about: 'plain-JS token-by-token recurrence (Float32Array in/out, Float64Array state), forward only',
  reference: 'linear',
  dependsOnM: true,
  modes: ['fwd'],
  supports: () => true,
  setup: (c, x) => ({ c, x }),
  fwd: (ctx) => run(ctx.c, ctx.x),
  async measure(ctx): Promise<Measured> {
    const tally = new Tally();
    const t0 = performance.now();
    run(ctx.c, ctx.x, tally);
    return { peakBytes: tally.bytes, ms: performance.now() - t0, warmed: true };
  },
  flops,
  dispose() {},
};

/**
 * Float64 twin of the GELU op (`src/tfjs/ops/activation.ts`): y = x·Φ(x), dx = dy·(Φ(x) + x·φ(x)),
 * with erf accurate to about 1e-13 (Taylor series below |x| = 2.5, erfc's continued fraction above).
 */
import type { Arr } from './util.ts';

export function refErf(x: number): number {
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  let r: number;
  if (a < 2.5) {
    // erf a = 2/√π Σ (−1)ⁿ a^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc a = e^(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …)))), evaluated from the tail
    let f = a;
    for (let k = 120; k >= 1; k--) f = a + k / 2 / f;
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

const cdf = (x: number) => 0.5 * (1 + refErf(x * Math.SQRT1_2));

export function refGelu(x: Arr): Float64Array {
  return Float64Array.from(x, (v) => v * cdf(v));
}

export function refGeluBackward(x: Arr, dy: Arr): Float64Array {
  return Float64Array.from(x, (v, i) => dy[i] * (cdf(v) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI)));
}

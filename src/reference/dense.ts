/**
 * Float64 twin of the dense op (`src/tfjs/ops/dense.ts`): rows `x: [n, in]`, `w: [in, out]`
 * (or `[out, in]` with `transposeW`), optional `b: [out]`.
 *
 *   forward   y[r, o] = Σ_i x[r, i]·W[i, o] + b[o]
 *   backward  dx[r, i] = Σ_o dy[r, o]·W[i, o];  dW[i, o] = Σ_r x[r, i]·dy[r, o];  db[o] = Σ_r dy[r, o]
 */
import type { Arr } from './util.ts';
import { checkLength } from './util.ts';

export interface RefDenseArgs {
  x: Arr;
  w: Arr;
  b?: Arr;
  n: number;
  in: number;
  out: number;
  transposeW?: boolean;
}

const weight = (a: RefDenseArgs) => (a.transposeW ? (i: number, o: number) => a.w[o * a.in + i] : (i: number, o: number) => a.w[i * a.out + o]);

function check(a: RefDenseArgs): void {
  checkLength('x', a.x, a.n * a.in);
  checkLength('w', a.w, a.in * a.out);
  if (a.b !== undefined) checkLength('b', a.b, a.out);
}

/** `y: [n, out]`. */
export function refDense(a: RefDenseArgs): Float64Array {
  check(a);
  const W = weight(a);
  const y = new Float64Array(a.n * a.out);
  for (let r = 0; r < a.n; r++) {
    for (let o = 0; o < a.out; o++) {
      let s = a.b ? a.b[o] : 0;
      for (let i = 0; i < a.in; i++) s += a.x[r * a.in + i] * W(i, o);
      y[r * a.out + o] = s;
    }
  }
  return y;
}

/** Gradients for the upstream `dy: [n, out]`; `dw` in the layout of `w`. */
export function refDenseBackward(a: RefDenseArgs, dy: Arr): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  check(a);
  checkLength('dy', dy, a.n * a.out);
  const W = weight(a);
  const dx = new Float64Array(a.n * a.in);
  const dw = new Float64Array(a.in * a.out);
  const db = new Float64Array(a.out);
  for (let r = 0; r < a.n; r++) {
    for (let o = 0; o < a.out; o++) {
      const g = dy[r * a.out + o];
      db[o] += g;
      for (let i = 0; i < a.in; i++) {
        dx[r * a.in + i] += g * W(i, o);
        dw[a.transposeW ? o * a.in + i : i * a.out + o] += a.x[r * a.in + i] * g;
      }
    }
  }
  return { dx, dw, db };
}

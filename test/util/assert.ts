/** Numeric comparison helpers for tests. */

export interface ErrorStats {
  /** max |got − ref| */
  maxAbs: number;
  /** max |ref| */
  refMaxAbs: number;
  /** rms(got − ref) / rms(ref) */
  relRms: number;
}

export function errorStats(ref: ArrayLike<number>, got: ArrayLike<number>): ErrorStats {
  let maxAbs = 0;
  let refMaxAbs = 0;
  let se = 0;
  let sr = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = got[i] - ref[i];
    maxAbs = Math.max(maxAbs, Math.abs(e));
    refMaxAbs = Math.max(refMaxAbs, Math.abs(ref[i]));
    se += e * e;
    sr += ref[i] * ref[i];
  }
  const relRms = se === 0 ? 0 : Math.sqrt(se / sr);
  return { maxAbs, refMaxAbs, relRms };
}

/** ‖got − ref‖ / ‖ref‖: 0 when equal, Infinity when anything is not finite (or ref is 0 and got is not). */
export function relErr(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  const r = errorStats(ref, got).relRms;
  return Number.isFinite(r) ? r : Infinity;
}

/**
 * Throws unless `got` matches `ref` elementwise: |got − ref| ≤ tol·max|ref| + atol everywhere
 * (a NaN anywhere fails). The message reports the max-abs and relative RMS errors.
 */
export function assertClose(name: string, ref: ArrayLike<number>, got: ArrayLike<number>, tol: number, atol = 0): void {
  if (ref.length !== got.length) throw new Error(`${name}: length ${got.length}, expected ${ref.length}`);
  const s = errorStats(ref, got);
  const ok = s.maxAbs <= tol * s.refMaxAbs + atol; // false for NaN
  if (!ok) {
    throw new Error(
      `${name}: max abs err ${s.maxAbs.toExponential(3)} (max |ref| ${s.refMaxAbs.toExponential(3)}), ` +
        `rel rms err ${s.relRms.toExponential(3)}, tol ${tol}${atol ? ` + atol ${atol}` : ''}`,
    );
  }
}

/** Central finite differences of `f` at `x` (x is restored afterwards). */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + h;
    const fp = f(x);
    x[i] = x0 - h;
    const fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

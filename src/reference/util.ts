/**
 * Small helpers shared by the float64 reference kernels: argument checks, slicing one `(b, h)`
 * block out of a row-major tensor, and state construction.
 */
import type { AttnState, Dims, FeatureMap } from '../kernels/types.ts';
import { ArgError } from '../kernels/validate.ts';

export type Arr = Float32Array | Float64Array;

/** Throws unless `x` exists and holds exactly `expected` numbers. */
export function checkLength(name: string, x: ArrayLike<number> | undefined, expected: number): void {
  if (x === undefined || x === null) throw new ArgError(`${name} is missing`);
  if (x.length !== expected) {
    throw new ArgError(`${name} has length ${x.length}, expected ${expected}`);
  }
}

/** Throws unless every size is a non-negative integer (t may be 0). */
export function checkDims(dims: Dims): void {
  for (const key of ['b', 'h', 't', 'd', 'm', 'dv'] as const) {
    const n = dims[key];
    if (!Number.isInteger(n) || n < 0) throw new ArgError(`dims.${key} must be a non-negative integer, got ${n}`);
  }
}

/** Checks `omega` against the feature map: required for favor; without it m must equal d. */
export function checkFeatureSpec(feature: FeatureMap, omega: Arr | undefined, dims: Dims): void {
  if (!['favor', 'relu', 'elu1', 'sqr'].includes(feature)) throw new ArgError(`feature: unknown map '${feature}'`);
  if (omega === undefined) {
    if (feature === 'favor') throw new ArgError('omega is required for the favor feature map');
    if (dims.m !== dims.d) throw new ArgError(`omega is absent, so dims.m (${dims.m}) must equal dims.d (${dims.d})`);
  } else {
    checkLength('omega', omega, dims.h * dims.m * dims.d);
  }
}

/** Checks a state's three arrays against `[b, h, m, dv]`, `[b, h, m]`, `[b, h]`. */
export function checkState(name: string, state: AttnState, dims: Dims): void {
  checkLength(`${name}.S`, state.S, dims.b * dims.h * dims.m * dims.dv);
  checkLength(`${name}.z`, state.z, dims.b * dims.h * dims.m);
  checkLength(`${name}.offset`, state.offset, dims.b * dims.h);
}

/** Empty state: S = z = 0, offset = -Infinity for favor and 0 otherwise. */
export function emptyState(dims: Dims, feature: FeatureMap | 'features'): AttnState {
  const nbh = dims.b * dims.h;
  return {
    S: new Float64Array(nbh * dims.m * dims.dv),
    z: new Float64Array(nbh * dims.m),
    offset: new Float64Array(nbh).fill(feature === 'favor' ? -Infinity : 0),
  };
}

/** Copy of `x[start, start + len)` as float64. */
export function block(x: ArrayLike<number>, start: number, len: number): Float64Array {
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = x[start + i];
  return out;
}

/** Head `hi` of `omega: [h, m, d]` as float64 `[m, d]`, or undefined. */
export function headOmega(omega: Arr | undefined, hi: number, m: number, d: number): Float64Array | undefined {
  return omega === undefined ? undefined : block(omega, hi * m * d, m * d);
}

/** Factor that moves a quantity from frame `from` to frame `to`: exp(from − to), 1 if equal (also ±∞). */
export function rescale(from: number, to: number): number {
  return from === to ? 1 : Math.exp(from - to);
}

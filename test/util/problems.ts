/** Random problems shared by the kernel suites: seeded inputs, states, upstream gradients. */
import type { AttnState, Dims, FeatureMap, StateGrad } from '../../src/kernels/types.ts';
import { randomProjection } from '../../src/features/index.ts';
import { refCausalBackwardRecurrent, refCausalForward, refCausalForwardRecurrent } from '../../src/reference/index.ts';
import { assertClose } from './assert.ts';
import { Rng } from './rng.ts';

export interface Problem {
  feature: FeatureMap;
  dims: Dims;
  omega?: Float32Array; // [h, m, d]
  q: Float32Array; // [b, h, t, d]
  k: Float32Array; // [b, h, t, d]
  v: Float32Array; // [b, h, t, dv]
}

export const FEATURES: FeatureMap[] = ['favor', 'relu', 'elu1', 'sqr'];

/** `omega` for favor always, for relu/elu1 when `m ≠ d`; sqr and `m = d` maps use the identity. */
export function makeProblem(feature: FeatureMap, dims: Dims, seed: number): Problem {
  const rng = new Rng(seed);
  const { b, h, t, d, m, dv } = dims;
  const useOmega = feature === 'favor' || m !== d;
  const omega = useOmega ? randomProjection({ h, m, d, seed: seed + 1 }) : undefined;
  const f32 = (n: number) => Float32Array.from(rng.normals(n));
  return { feature, dims, omega, q: f32(b * h * t * d), k: f32(b * h * t * d), v: f32(b * h * t * dv) };
}

/** A state reached by running the float64 reference over a random prefix of `t0` tokens. */
export function prefixState(p: Problem, t0: number, seed: number): AttnState {
  const pre = makeProblem(p.feature, { ...p.dims, t: t0 }, seed);
  return refCausalForward({ ...pre, omega: p.omega }).state;
}

export function upstream(dims: Dims, seed: number): { dOut: Float32Array; dState: StateGrad } {
  const rng = new Rng(seed);
  const { b, h, t, m, dv } = dims;
  return {
    dOut: Float32Array.from(rng.normals(b * h * t * dv)),
    dState: { S: rng.normals(b * h * m * dv), z: rng.normals(b * h * m) },
  };
}

/** Compares two states after moving `got` into `ref`'s frame (offsets are rounded to f32 in the kernels). */
export function assertStateClose(name: string, ref: AttnState, got: AttnState, dims: Dims, tol: number): void {
  const { m, dv } = dims;
  const S = Float64Array.from(got.S);
  const z = Float64Array.from(got.z);
  for (let i = 0; i < ref.offset.length; i++) {
    const a = got.offset[i];
    const b = ref.offset[i];
    if (!(a === b || Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)))) {
      throw new Error(`${name}.offset[${i}]: ${a} vs ${b}`);
    }
    const f = a === b ? 1 : Math.exp(a - b);
    for (let j = i * m * dv; j < (i + 1) * m * dv; j++) S[j] *= f;
    for (let j = i * m; j < (i + 1) * m; j++) z[j] *= f;
  }
  assertClose(`${name}.S`, ref.S, S, tol);
  assertClose(`${name}.z`, ref.z, z, tol);
}

/** Tokens `[t0, t1)` of `x: [b·h, t, w]`. */
export function sliceT<T extends Float32Array | Float64Array>(x: T, bh: number, t: number, w: number, t0: number, t1: number): T {
  const out = new (x.constructor as new (n: number) => T)(bh * (t1 - t0) * w);
  for (let i = 0; i < bh; i++) out.set(x.subarray((i * t + t0) * w, (i * t + t1) * w), i * (t1 - t0) * w);
  return out;
}

/** Concatenates `[bh, ta, w]` and `[bh, tb, w]` along t. */
export function concatT(a: Float32Array, ta: number, c: Float32Array, tb: number, bh: number, w: number): Float32Array {
  const out = new Float32Array(bh * (ta + tb) * w);
  for (let i = 0; i < bh; i++) {
    out.set(a.subarray(i * ta * w, (i + 1) * ta * w), i * (ta + tb) * w);
    out.set(c.subarray(i * tb * w, (i + 1) * tb * w), i * (ta + tb) * w + ta * w);
  }
  return out;
}

/**
 * The drift problem of test/linear_attn/drift.test.ts (every backend): T = 65 536 with late
 * outlier keys 10⁴ times larger than the rest — every state a backward rebuilds before them is
 * the end state minus terms 10⁴ (relu) to 10⁸ (sqr) times larger than itself, so rounding there
 * would show — with its float64 stored-state reference (which never subtracts). `clean`: the
 * tokens before the first outlier.
 */
export function driftProblem(feature: FeatureMap) {
  const dims = { b: 1, h: 1, t: 65_536, d: 16, m: 16, dv: 8 };
  const outliers = [40_000, 50_001, 60_000, 65_000];
  const p = makeProblem(feature, dims, 101);
  for (const j of outliers) for (let c = 0; c < dims.d; c++) p.k[j * dims.d + c] *= 1e4;
  const { dOut, dState } = upstream(dims, 102);
  return { p, dims, dOut, dState, clean: outliers[0], ref: refCausalForwardRecurrent(p), rg: refCausalBackwardRecurrent({ ...p, dOut, dState }) };
}

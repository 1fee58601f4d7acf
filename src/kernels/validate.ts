/**
 * Argument checks shared by every backend. Each error names the function, the argument and
 * what was expected, and nothing is touched before all checks pass.
 */
import type { AttnState, Dims, FeatureMap, StateGrad } from './types.ts';

export const FEATURE_MAPS: readonly FeatureMap[] = ['favor', 'relu', 'elu1', 'sqr'];

export class ArgError extends TypeError {
  override name = 'ArgError';
}

const fail = (fn: string, msg: string): never => {
  throw new ArgError(`${fn}: ${msg}`);
};

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (ArrayBuffer.isView(x)) return `${x.constructor.name}(${(x as Float32Array).length})`;
  if (Array.isArray(x)) return `Array(${x.length})`;
  return typeof x === 'object' ? ((x as object).constructor?.name ?? 'object') : `${typeof x} ${String(x)}`;
}

export function posInt(fn: string, name: string, x: unknown): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x <= 0) fail(fn, `${name} must be a positive integer, got ${describe(x)}`);
  return x as number;
}

export function checkDims(fn: string, dims: unknown): Dims {
  if (typeof dims !== 'object' || dims === null) fail(fn, `dims must be an object {b, h, t, d, m, dv}, got ${describe(dims)}`);
  const o = dims as Record<string, unknown>;
  for (const key of ['b', 'h', 't', 'd', 'm', 'dv']) posInt(fn, `dims.${key}`, o[key]);
  return o as unknown as Dims;
}

type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** `x` must be a `ctor` of `shape` (named axes) with finite values (`-Infinity` allowed if asked). */
export function checkArray<T extends Float32Array | Float64Array>(
  fn: string,
  name: string,
  x: unknown,
  ctor: FloatCtor,
  shape: Record<string, number>,
  opts: { allowNegInf?: boolean; finite?: boolean } = {},
): T {
  const axes = Object.keys(shape);
  const n = axes.reduce((p, a) => p * shape[a], 1);
  const want = `a ${ctor.name} of shape [${axes.join(', ')}] = [${axes.map((a) => shape[a]).join(', ')}] (${n} elements)`;
  if (!(x instanceof ctor)) fail(fn, `${name} must be ${want}, got ${describe(x)}`);
  const a = x as T;
  if (a.length !== n) fail(fn, `${name} must be ${want}, got length ${a.length}`);
  if (opts.finite !== false) checkFinite(fn, name, a, opts.allowNegInf);
  return a;
}

/**
 * Refuses a NaN or ±inf (`-Infinity` too unless `allowNegInf`) by name and index. Backends that
 * check values themselves (the wasm kernels, after copying their inputs in) call this only to
 * name the value they found, and pass `finite: false` to {@link checkArray}.
 */
export function checkFinite(fn: string, name: string, a: Float32Array | Float64Array, allowNegInf = false): void {
  for (let i = 0; i < a.length; i++) {
    const e = a[i];
    if (!Number.isFinite(e) && !(allowNegInf && e === -Infinity)) {
      fail(fn, `${name}[${i}] is ${e}; ${name} must hold finite values`);
    }
  }
}

export function checkFeature(fn: string, feature: unknown): FeatureMap {
  if (!FEATURE_MAPS.includes(feature as FeatureMap)) {
    fail(fn, `feature must be one of ${FEATURE_MAPS.map((f) => `'${f}'`).join(', ')}, got ${describe(feature)}`);
  }
  return feature as FeatureMap;
}

/** `omega: [h, m, d]`, required for favor; without it `m` must equal `d`. */
export function checkOmega(fn: string, feature: FeatureMap, omega: unknown, dims: Dims): Float32Array | undefined {
  if (omega === undefined || omega === null) {
    if (feature === 'favor') fail(fn, `omega ([h, m, d] Float32Array of random features) is required for feature 'favor'`);
    if (dims.m !== dims.d) fail(fn, `without omega the features are the inputs themselves, so dims.m (${dims.m}) must equal dims.d (${dims.d})`);
    return undefined;
  }
  return checkArray<Float32Array>(fn, 'omega', omega, Float32Array, { h: dims.h, m: dims.m, d: dims.d });
}

export function checkState(fn: string, name: string, s: unknown, dims: Dims, feature: FeatureMap | 'identity'): AttnState {
  if (typeof s !== 'object' || s === null) fail(fn, `${name} must be an object {S, z, offset}, got ${describe(s)}`);
  const o = s as Record<string, unknown>;
  const { b, h, m, dv } = dims;
  const S = checkArray<Float64Array>(fn, `${name}.S`, o.S, Float64Array, { b, h, m, dv });
  const z = checkArray<Float64Array>(fn, `${name}.z`, o.z, Float64Array, { b, h, m });
  const offset = checkArray<Float64Array>(fn, `${name}.offset`, o.offset, Float64Array, { b, h }, { allowNegInf: true });
  if (feature !== 'favor') {
    const i = offset.findIndex((x) => x !== 0);
    if (i >= 0) fail(fn, `${name}.offset[${i}] is ${offset[i]}; only 'favor' states carry a non-zero offset`);
  }
  return { S, z, offset };
}

export function checkStateGrad(fn: string, name: string, g: unknown, dims: Dims): StateGrad {
  if (typeof g !== 'object' || g === null) fail(fn, `${name} must be an object {S, z}, got ${describe(g)}`);
  const o = g as Record<string, unknown>;
  const { b, h, m, dv } = dims;
  return {
    S: checkArray<Float64Array>(fn, `${name}.S`, o.S, Float64Array, { b, h, m, dv }),
    z: checkArray<Float64Array>(fn, `${name}.z`, o.z, Float64Array, { b, h, m }),
  };
}

export function checkChunk(fn: string, chunk: unknown): number {
  return chunk === undefined ? 64 : posInt(fn, 'chunk', chunk);
}

export function checkEps(fn: string, eps: unknown): number {
  if (eps === undefined) return 1e-16;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) fail(fn, `eps must be a finite number ≥ 0, got ${describe(eps)}`);
  return eps as number;
}

/** Refuses work that cannot fit in a 4 GiB wasm32 address space, before allocating anything. */
export function checkFits(fn: string, bytes: number, limit: number): void {
  if (bytes > limit) {
    fail(
      fn,
      `this call needs about ${(bytes / 1024 ** 3).toFixed(2)} GiB of wasm memory, more than the ${(limit / 1024 ** 3).toFixed(0)} GiB a wasm32 instance can address; split the batch or the sequence`,
    );
  }
}

/**
 * A causal forward over `t ≥ 1` tokens with FAVOR+ features always ends at a finite key offset,
 * so a `stateOut` whose offset is `-Infinity` (an empty state, `emptyState(dims, 'favor')`)
 * cannot be the state the forward returned. Refused here: the kernels' own offset comparison
 * would read an infinite gap as a change of frame and return gradients of the wrong problem.
 */
export function checkStateOutFilled(fn: string, stateOut: AttnState, feature: FeatureMap | 'identity'): void {
  if (feature !== 'favor') return;
  const i = stateOut.offset.findIndex((o) => !Number.isFinite(o));
  if (i >= 0) {
    fail(
      fn,
      `stateOut.offset[${i}] is ${stateOut.offset[i]} (an empty state), but a 'favor' forward over t ≥ 1 tokens ends at a finite offset; ` +
        'stateOut must be the state causalForward returned for these q, k, v (same stateIn, same chunk)',
    );
  }
}

/** The refusal of a `stateOut` whose offset disagrees with the keys (wasm status −6, WebGPU's own check). */
export function stateMismatch(fn: string, detail: string): ArgError {
  return new ArgError(
    `${fn}: stateOut is not the state the forward produced from these q, k (its offset disagrees with the keys${detail ? `: ${detail}` : ''}); ` +
      'expected the state causalForward returned for these q, k, v (with the same stateIn / offsetIn and chunk)',
  );
}

/** The error for finite inputs whose result overflows float32 (every backend raises this one). */
export function notFinite(fn: string): ArgError {
  return new ArgError(
    `${fn}: the result is not finite although q, k and v are: they are too large for float32 (favor features need |x|²·d^(-1/2)/2 well below 3.4e38, and the prefix sums Σ φ(k)·vᵀ must stay below it); scale q, k or v down`,
  );
}

/**
 * FAVOR+ features form `s = Σ (x·d^(-1/4))² = |x|²·d^(-1/2)` in float32 for every row of `q` and
 * `k` (the logits' norm term). A row with `s` beyond float32 is refused up front by backends that
 * cannot see the overflow in their results (WebGPU, where an overflowed key may silently weigh 0).
 */
export function checkFavorRange(fn: string, name: string, x: Float32Array, d: number): void {
  const scale = 1 / Math.sqrt(d);
  for (let r = 0; r * d < x.length; r++) {
    let sq = 0;
    for (let i = r * d; i < (r + 1) * d; i++) sq += x[i] * x[i];
    if (!(sq * scale <= F32_MAX)) {
      throw new ArgError(
        `${fn}: the result is not finite for these inputs: ${name} row ${r} is too large for float32 (favor features form |${name}|²·d^(-1/2), here ${(sq * scale).toExponential(2)}, which must stay below 3.4e38); scale the inputs down`,
      );
    }
  }
}

const F32_MAX = 3.4028234663852886e38;

/**
 * Refuses a result that is not finite (the WebGPU backend, after reading its results back). The inputs were checked finite,
 * so this is float32 overflow: FAVOR+ logits `ω·x·d^(-1/4)` and `|x|²·d^(-1/2)/2`, or prefix
 * sums of feature·value products, beyond ~3.4e38. The wasm kernels refuse the same in the crate.
 */
export function checkFiniteResult(
  fn: string,
  feature: FeatureMap | 'identity',
  inputs: string,
  results: Array<[string, ArrayLike<number>]>,
  allowNegInf = false,
): void {
  for (const [name, x] of results) {
    for (let i = 0; i < x.length; i++) {
      const e = x[i];
      if (Number.isFinite(e) || (allowNegInf && e === -Infinity)) continue;
      const why =
        feature === 'favor'
          ? 'favor features need |x|²·d^-1/2 well below 3e38'
          : feature === 'identity'
            ? 'the prefix sums of phiK·v and phiQ·S must stay below 3e38'
            : `${feature} features times values, summed over the sequence, must stay below 3e38`;
      throw new ArgError(
        `${fn}: the result is not finite (${name}[${i}] is ${e}): ${inputs} are finite but too large for float32 (${why}); scale the inputs down`,
      );
    }
  }
}

/**
 * The typed kernel API over the wasm binary. Every call validates its arguments, copies the
 * inputs into wasm memory, poisons the outputs with NaN, runs the kernel, copies the results
 * out and frees everything, so no wasm pointer ever escapes and a failed call leaves the
 * instance usable.
 */
import type { AttentionKernels, SyncKernels } from '../kernels/interface.ts';
import { FEATURE_CODES as CODES, featureDims } from '../kernels/state.ts';
import type {
  AttnState,
  BidirectionalBackwardArgs,
  BidirectionalGrads,
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalGrads,
  Dims,
  FeatureGrads,
  FeatureMap,
  FeaturesBackwardArgs,
  FeaturesForwardArgs,
  CausalForwardResult,
  StepArgs,
  UnrollArgs,
} from '../kernels/types.ts';
import {
  ArgError,
  checkArray,
  checkFinite,
  checkChunk,
  checkDims,
  checkEps,
  checkFeature,
  checkFits,
  checkOmega,
  checkState,
  checkStateGrad,
  checkStateOutFilled,
  notFinite,
  stateMismatch,
} from '../kernels/validate.ts';
import { load, type SimdOption, type WasmBinary, type WasmSource } from './loader.ts';
import { Scope, WASM_MAX_BYTES, type KernelExports } from './memory.ts';

const STATUS: Record<number, string> = {
  [-1]: 'a dimension is 0',
  [-2]: "feature 'favor' needs omega",
  [-3]: 'without omega, m must equal d',
  [-4]: 'inconsistent lengths',
  [-5]: 'out of wasm memory for the kernel workspace',
  [-6]: 'stateOut is not the state the forward produced from these q, k (its offset disagrees with the keys)',
  [-7]: 'unknown feature map',
  [-8]: 'a chunk raised the FAVOR+ offset by more than 10, so the input state cannot be recovered accurately from the output state; keep that state instead',
};

/** The kernels' status for a `stateOut` whose offset disagrees with the keys (an ArgError naming stateOut). */
const STATE_MISMATCH = -6;
/** Finite inputs whose result overflowed float32: refused rather than returned as NaN/±inf. */
const NOT_FINITE = -9;
/** A NaN or ±inf in an f32 input, found by the module (which then names none: see `status`). */
const INPUT_NOT_FINITE = -10;
/** Shape and type only: the module checks the values (see INPUT_NOT_FINITE). */
const UNCHECKED = { finite: false } as const;

/** Bytes per token (`q, k, v` in, outputs out) and per slice state, as multiples of `d`, `dv`, `m·dv`. */
interface Cost {
  /** floats per token per unit of `d` and of `dv` */
  tokens: number;
  /** doubles of state per slice, in units of `m·dv + m + 1` */
  states: number;
}

const FORWARD: Cost = { tokens: 2, states: 2 };
const BACKWARD: Cost = { tokens: 4, states: 5 };

/** Bytes a call moves into wasm memory plus the kernel's scratch (an over-estimate). */
function estimate(dims: Dims, chunk: number, cost: Cost): number {
  const { b, h, t, m, d, dv } = dims;
  const ch = Math.min(chunk, t);
  const scratch = 4 * (12 * ch * m + 4 * ch * ch + 6 * ch * dv + 6 * m * dv + d * m) + 64 * m * dv + 4 * (t / ch + 1);
  return b * h * (4 * t * cost.tokens * (d + dv) + 8 * cost.states * (m * dv + m + 1)) + scratch + 4 * h * m * d;
}

interface Checked {
  dims: Dims;
  code: number;
  omega?: Float32Array;
  chunk: number;
  eps: number;
  /** The f32 inputs the module checks finite, by name (for the error that names the value). */
  inputs: Array<[string, Float32Array]>;
}

/**
 * The kernels keep FAVOR+ offsets as float32 values. A state whose offset is not one (a float64
 * reference state, say) is moved to the nearest float32 offset: `S, z` scale by
 * `exp(offset − fround(offset))`, the same state in another frame. Returns those factors too.
 */
function toF32Frames(state: AttnState, m: number, dv: number): { state: AttnState; factors: Float64Array | undefined } {
  const moved = state.offset.some((o) => Math.fround(o) !== o);
  if (!moved) return { state, factors: undefined };
  const S = Float64Array.from(state.S);
  const z = Float64Array.from(state.z);
  const offset = state.offset.map(Math.fround);
  const factors = state.offset.map((o, i) => Math.exp(o - offset[i]));
  factors.forEach((f, i) => {
    for (let j = i * m * dv; j < (i + 1) * m * dv; j++) S[j] *= f;
    for (let j = i * m; j < (i + 1) * m; j++) z[j] *= f;
  });
  return { state: { S, z, offset }, factors };
}

/** Memory of the most recent call, measured inside the module. */
export interface CallStats {
  /** Bytes of inputs copied in and outputs copied out. */
  ioBytes: number;
  /** Peak of the kernel's own scratch: what it needs beyond its inputs and outputs. */
  scratchBytes: number;
}

export class Kernels implements SyncKernels, AttentionKernels<false> {
  /** Which backend this is (the WebGPU kernels say 'webgpu'). */
  readonly backend = 'wasm' as const;
  private x: KernelExports | undefined;
  private stats: CallStats = { ioBytes: 0, scratchBytes: 0 };

  /** Whether a SIMD binary (`'simd'` or `'relaxed'`) is running. */
  readonly simd: boolean;

  constructor(
    instance: WebAssembly.Instance,
    /** Which binary is running: `'relaxed'` (SIMD + fused multiply-add), `'simd'` or `'scalar'`. */
    readonly binary: WasmBinary,
  ) {
    this.x = instance.exports as unknown as KernelExports;
    this.simd = binary !== 'scalar';
  }

  private get exports(): KernelExports {
    if (!this.x) throw new Error('slim-performer: this kernel instance was disposed');
    return this.x;
  }

  /** Bytes currently allocated inside the module (0 between calls). */
  liveBytes(): number {
    return this.exports.sp_live_bytes();
  }

  /** Size of the module's linear memory: its high-water mark, since wasm memory never shrinks. */
  memoryBytes(): number {
    return this.exports.memory.buffer.byteLength;
  }

  /** Drops the instance; later calls throw. */
  dispose(): void {
    this.x = undefined;
  }

  /**
   * Checks what every kernel shares and refuses work that cannot fit before looking at the
   * arrays. `cost` gives the bytes the call moves per token and per state of one slice.
   */
  private common(fn: string, a: CausalArgs, cost: Cost, featureOverride?: 'identity', qName = featureOverride ? 'phiQ' : 'q'): Checked {
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const dims = checkDims(fn, a.dims);
    const feature = featureOverride ?? checkFeature(fn, a.feature);
    const chunk = checkChunk(fn, a.chunk);
    checkFits(fn, estimate(dims, chunk, cost), WASM_MAX_BYTES - (1 << 20));
    const omega = feature === 'identity' ? undefined : checkOmega(fn, feature, a.omega, dims);
    const { b, h, t, d, dv } = dims;
    // Values are checked finite inside the module (a JavaScript scan cost ~10% of a forward).
    const kName = featureOverride ? 'phiK' : 'k';
    checkArray(fn, qName, a.q, Float32Array, featureOverride ? { b, h, t, m: d } : { b, h, t, d }, UNCHECKED);
    checkArray(fn, kName, a.k, Float32Array, featureOverride ? { b, h, t, m: d } : { b, h, t, d }, UNCHECKED);
    checkArray(fn, 'v', a.v, Float32Array, { b, h, t, dv }, UNCHECKED);
    const inputs: Array<[string, Float32Array]> = [
      [qName, a.q],
      [kName, a.k],
      ['v', a.v],
    ];
    return { dims, code: CODES[feature], omega, chunk, eps: checkEps(fn, a.eps), inputs };
  }

  /** Memory of the most recent successful call (see {@link CallStats}). */
  lastCall(): CallStats {
    return { ...this.stats };
  }

  private run<T>(body: (s: Scope, x: KernelExports) => T): T {
    const x = this.exports;
    const s = new Scope(x);
    x.sp_reset_peak();
    const base = x.sp_heap_bytes();
    try {
      const result = body(s, x);
      this.stats = { ioBytes: s.bytes, scratchBytes: x.sp_peak_bytes() - base - s.bytes };
      return result;
    } finally {
      s.free();
    }
  }

  /** Throws for a kernel's non-zero status; `inputs` are the f32 arrays it checked finite. */
  private static status(fn: string, code: number, inputs: Array<[string, Float32Array]>): void {
    if (code === INPUT_NOT_FINITE) {
      for (const [name, x] of inputs) checkFinite(fn, name, x);
      throw new ArgError(`${fn}: ${inputs.map(([n]) => n).join(', ')} must hold finite values`);
    }
    if (code === STATE_MISMATCH) throw stateMismatch(fn, '');
    if (code === NOT_FINITE) throw notFinite(fn);
    if (code !== 0) throw new Error(`${fn}: kernel refused the call (${STATUS[code] ?? `status ${code}`})`);
  }

  /** Causal attention `[b, h, t, ·]` with a carried state in and out. */
  causalForward(a: CausalForwardArgs): CausalForwardResult {
    return this.forwardImpl('causalForward', a, this.common('causalForward', a, FORWARD));
  }

  /** Causal attention on precomputed features (`phiQ`, `phiK`: `[b, h, t, m]`). */
  causalForwardFeatures(a: FeaturesForwardArgs): CausalForwardResult {
    const fn = 'causalForwardFeatures';
    const args = { q: a?.phiQ, k: a?.phiK, v: a?.v, dims: featureDims(fn, a?.dims), chunk: a?.chunk, eps: a?.eps, state: a?.state, feature: 'relu' as const };
    return this.forwardImpl(fn, args, this.common(fn, args, FORWARD, 'identity'), 'identity');
  }

  private forwardImpl(fn: string, a: CausalForwardArgs, c: Checked, feature: FeatureMap | 'identity' = a.feature): { out: Float32Array; state: AttnState } {
    const { b, h, t, d, m, dv } = c.dims;
    const given = a.state === undefined ? undefined : checkState(fn, 'state', a.state, c.dims, feature);
    const state = given && toF32Frames(given, m, dv).state;
    const bh = b * h;
    return this.run((s, x) => {
      const pq = s.put(a.q, 'q');
      const pk = s.put(a.k, 'k');
      const pv = s.put(a.v, 'v');
      const pw = c.omega ? s.put(c.omega, 'omega') : 0;
      const [ps, pz, po] = state ? [s.put(state.S, 'state.S'), s.put(state.z, 'state.z'), s.put(state.offset, 'state.offset')] : [0, 0, 0];
      const pout = s.out('f32', bh * t * dv, 'out');
      const qs = s.out('f64', bh * m * dv, 'state.S');
      const qz = s.out('f64', bh * m, 'state.z');
      const qo = s.out('f64', bh, 'state.offset');
      const f = x.sp_causal_forward as (...a: number[]) => number;
      Kernels.status(fn, f(bh, h, t, d, m, dv, c.chunk, c.code, c.eps, pq, pk, pv, pw, ps, pz, po, pout, qs, qz, qo), c.inputs);
      return { out: s.f32(pout, bh * t * dv), state: { S: s.f64(qs, bh * m * dv), z: s.f64(qz, bh * m), offset: s.f64(qo, bh) } };
    });
  }

  /** Gradients of causal attention: `dq, dk, dv` and the input state's gradient. */
  causalBackward(a: CausalBackwardArgs): CausalGrads {
    return this.backwardImpl('causalBackward', a, this.common('causalBackward', a, BACKWARD));
  }

  /** Gradients of `causalForwardFeatures`: `dPhiQ, dPhiK, dv, dState`. */
  causalBackwardFeatures(a: FeaturesBackwardArgs): FeatureGrads {
    const fn = 'causalBackwardFeatures';
    const args = { ...a, q: a?.phiQ, k: a?.phiK, dims: featureDims(fn, a?.dims), feature: 'relu' as const };
    const g = this.backwardImpl(fn, args, this.common(fn, args, BACKWARD, 'identity'), 'identity');
    return { dPhiQ: g.dq, dPhiK: g.dk, dv: g.dv, dState: g.dState };
  }

  private backwardImpl(fn: string, a: CausalBackwardArgs, c: Checked, feature: FeatureMap | 'identity' = a.feature): CausalGrads {
    const { b, h, t, d, m, dv } = c.dims;
    const givenIn = a.stateIn === undefined ? undefined : checkState(fn, 'stateIn', a.stateIn, c.dims, feature);
    const framed = givenIn && toF32Frames(givenIn, m, dv);
    const stateIn = framed?.state;
    const stateOut = checkState(fn, 'stateOut', a.stateOut, c.dims, feature);
    checkStateOutFilled(fn, stateOut, feature);
    checkArray(fn, 'dOut', a.dOut, Float32Array, { b, h, t, dv }, UNCHECKED);
    if (a.out !== undefined) checkArray(fn, 'out', a.out, Float32Array, { b, h, t, dv }, UNCHECKED);
    const inputs: Array<[string, Float32Array]> = [...c.inputs, ['dOut', a.dOut], ...(a.out ? [['out', a.out] as [string, Float32Array]] : [])];
    const dState = a.dState === undefined ? undefined : checkStateGrad(fn, 'dState', a.dState, c.dims);
    const bh = b * h;
    return this.run((s, x) => {
      const pq = s.put(a.q, 'q');
      const pk = s.put(a.k, 'k');
      const pv = s.put(a.v, 'v');
      const pw = c.omega ? s.put(c.omega, 'omega') : 0;
      const [ps, pz, po] = stateIn ? [s.put(stateIn.S, 'stateIn.S'), s.put(stateIn.z, 'stateIn.z'), s.put(stateIn.offset, 'stateIn.offset')] : [0, 0, 0];
      const qs = s.put(stateOut.S, 'stateOut.S');
      const qz = s.put(stateOut.z, 'stateOut.z');
      const qo = s.put(stateOut.offset, 'stateOut.offset');
      const pout = a.out ? s.put(a.out, 'out') : 0;
      const pg = s.put(a.dOut, 'dOut');
      const [gs, gz] = dState ? [s.put(dState.S, 'dState.S'), s.put(dState.z, 'dState.z')] : [0, 0];
      const pdq = s.out('f32', bh * t * d, 'dq');
      const pdk = s.out('f32', bh * t * d, 'dk');
      const pdv = s.out('f32', bh * t * dv, 'dv');
      const pds = s.out('f64', bh * m * dv, 'dState.S');
      const pdz = s.out('f64', bh * m, 'dState.z');
      const f = x.sp_causal_backward as (...a: number[]) => number;
      Kernels.status(
        fn,
        f(bh, h, t, d, m, dv, c.chunk, c.code, c.eps, pq, pk, pv, pw, ps, pz, po, qs, qz, qo, pout, pg, gs, gz, pdq, pdk, pdv, pds, pdz),
        inputs,
      );
      const grad = { S: s.f64(pds, bh * m * dv), z: s.f64(pdz, bh * m) };
      // The kernel saw the state in float32 frames: S_used = f · S_given, so ∂/∂S_given = f · ∂/∂S_used.
      framed?.factors?.forEach((f, i) => {
        for (let j = i * m * dv; j < (i + 1) * m * dv; j++) grad.S[j] *= f;
        for (let j = i * m; j < (i + 1) * m; j++) grad.z[j] *= f;
      });
      return { dq: s.f32(pdq, bh * t * d), dk: s.f32(pdk, bh * t * d), dv: s.f32(pdv, bh * t * dv), dState: grad };
    });
  }

  /**
   * Recovers the state a causal forward started from, given the state it returned, its `k`,
   * `v` (the queries play no part) and the starting offsets. Exact up to float64 rounding when
   * `chunk` is the forward's. Throws when a chunk raised the FAVOR+ offset by more than 10
   * (the input state was scaled below recovery): keep such states instead.
   */
  causalUnroll(a: UnrollArgs): AttnState {
    const fn = 'causalUnroll';
    const c = this.common(fn, { ...a, q: a?.k } as CausalArgs, FORWARD, undefined, 'k'); // no queries: k stands in, and is named k
    const { b, h, t, d, m, dv } = c.dims;
    const stateOut = checkState(fn, 'stateOut', a.stateOut, c.dims, a.feature);
    checkStateOutFilled(fn, stateOut, a.feature);
    const offsetIn = checkArray<Float64Array>(fn, 'offsetIn', a.offsetIn, Float64Array, { b, h }, { allowNegInf: true }).map(Math.fround);
    const bh = b * h;
    return this.run((s, x) => {
      const ptrs = [s.put(a.k, 'k'), s.put(a.v, 'v'), c.omega ? s.put(c.omega, 'omega') : 0];
      const pst = [s.put(stateOut.S, 'stateOut.S'), s.put(stateOut.z, 'stateOut.z'), s.put(stateOut.offset, 'stateOut.offset'), s.put(offsetIn, 'offsetIn')];
      const qs = s.out('f64', bh * m * dv, 'state.S');
      const qz = s.out('f64', bh * m, 'state.z');
      const qo = s.out('f64', bh, 'state.offset');
      const f = x.sp_causal_unroll as (...a: number[]) => number;
      Kernels.status(fn, f(bh, h, t, d, m, dv, c.chunk, c.code, ...ptrs, ...pst, qs, qz, qo), c.inputs);
      return { S: s.f64(qs, bh * m * dv), z: s.f64(qz, bh * m), offset: s.f64(qo, bh) };
    });
  }

  /** Bidirectional attention (no state). */
  bidirectionalForward(a: CausalArgs): { out: Float32Array } {
    const fn = 'bidirectionalForward';
    const c = this.common(fn, a, FORWARD);
    const { b, h, t, d, m, dv } = c.dims;
    const bh = b * h;
    return this.run((s, x) => {
      const ptrs = [s.put(a.q, 'q'), s.put(a.k, 'k'), s.put(a.v, 'v'), c.omega ? s.put(c.omega, 'omega') : 0];
      const pout = s.out('f32', bh * t * dv, 'out');
      const f = x.sp_bidirectional_forward as (...a: number[]) => number;
      Kernels.status(fn, f(bh, h, t, d, m, dv, c.chunk, c.code, c.eps, ...ptrs, pout), c.inputs);
      return { out: s.f32(pout, bh * t * dv) };
    });
  }

  bidirectionalBackward(a: BidirectionalBackwardArgs): BidirectionalGrads {
    const fn = 'bidirectionalBackward';
    const c = this.common(fn, a, BACKWARD);
    const { b, h, t, d, m, dv } = c.dims;
    checkArray(fn, 'dOut', a.dOut, Float32Array, { b, h, t, dv }, UNCHECKED);
    const bh = b * h;
    return this.run((s, x) => {
      const ptrs = [s.put(a.q, 'q'), s.put(a.k, 'k'), s.put(a.v, 'v'), c.omega ? s.put(c.omega, 'omega') : 0, s.put(a.dOut, 'dOut')];
      const pdq = s.out('f32', bh * t * d, 'dq');
      const pdk = s.out('f32', bh * t * d, 'dk');
      const pdv = s.out('f32', bh * t * dv, 'dv');
      const f = x.sp_bidirectional_backward as (...a: number[]) => number;
      Kernels.status(fn, f(bh, h, t, d, m, dv, c.chunk, c.code, c.eps, ...ptrs, pdq, pdk, pdv), [...c.inputs, ['dOut', a.dOut]]);
      return { dq: s.f32(pdq, bh * t * d), dk: s.f32(pdk, bh * t * d), dv: s.f32(pdv, bh * t * dv) };
    });
  }

  /** One decoding step: `q, k: [b, h, d]`, `v: [b, h, dv]` → `out: [b, h, dv]` and the next state. */
  recurrentStep(a: StepArgs): CausalForwardResult {
    const fn = 'recurrentStep';
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const dims = checkDims(fn, { ...(a.dims as object), t: 1 });
    const c = this.common(fn, { ...a, dims, chunk: 1 }, FORWARD);
    const state = toF32Frames(checkState(fn, 'state', a.state, dims, c.code === 0 ? 'favor' : 'relu'), dims.m, dims.dv).state;
    const { b, h, d, m, dv } = dims;
    const bh = b * h;
    return this.run((s, x) => {
      const ptrs = [s.put(a.q, 'q'), s.put(a.k, 'k'), s.put(a.v, 'v'), c.omega ? s.put(c.omega, 'omega') : 0];
      const pst = [s.put(state.S, 'state.S'), s.put(state.z, 'state.z'), s.put(state.offset, 'state.offset')];
      const pout = s.out('f32', bh * dv, 'out');
      const qs = s.out('f64', bh * m * dv, 'state.S');
      const qz = s.out('f64', bh * m, 'state.z');
      const qo = s.out('f64', bh, 'state.offset');
      const f = x.sp_recurrent_step as (...a: number[]) => number;
      Kernels.status(fn, f(bh, h, d, m, dv, c.code, c.eps, ...ptrs, ...pst, pout, qs, qz, qo), c.inputs);
      return { out: s.f32(pout, bh * dv), state: { S: s.f64(qs, bh * m * dv), z: s.f64(qz, bh * m), offset: s.f64(qo, bh) } };
    });
  }
}

export interface InitOptions {
  /**
   * `'relaxed'`: the relaxed-SIMD binary (fused multiply-add; error if unsupported); `true`: the
   * SIMD128 binary (error if unsupported); `false`: scalar; default: the best the engine runs.
   */
  simd?: SimdOption;
  /** Where the binary comes from (see `loader.ts`); default: the package's own files. */
  wasm?: WasmSource;
}

/** Loads a kernel instance. Each instance has its own memory; dispose it when done. */
export async function init(options: InitOptions = {}): Promise<Kernels> {
  const { instance, binary } = await load(options);
  return new Kernels(instance, binary);
}

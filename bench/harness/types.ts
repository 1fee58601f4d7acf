/** Shared types for the kernel benchmark (bench/kernels.ts). */

/** One grid point. The benchmark always uses b = 1, h = bh. */
export interface BenchCase {
  bh: number;
  b: number;
  h: number;
  t: number;
  /** query/key width */
  d: number;
  /** value width */
  dv: number;
  /** random features */
  m: number;
}

export type Mode = 'fwd' | 'fwdbwd';

/** Inputs, row-major. q, k: [b,h,t,d]; v, dOut: [b,h,t,dv]; omega: [h,m,d]. */
export interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dOut: Float32Array;
  omega: Float32Array;
}

/** What a method's memory measurement returns. */
export interface Measured {
  /** peak bytes attributed to the call (each method documents what it counts) */
  peakBytes: number;
  /** wall time of the measured call (used to pick the number of reps) */
  ms: number;
  /** true when the measured call ran on the timing context, so it doubles as the warm-up */
  warmed: boolean;
  /** extra numbers for the JSON (wasm heap size etc.) */
  detail?: Record<string, number | string>;
}

/**
 * A benchmarked implementation. The harness calls, per case:
 * supports → estimateBytes → setup → (per mode) measure [+ warm-up] → timed reps → dispose.
 */
export interface Method<Ctx = any> {
  name: string;
  about: string;
  /** which float64 reference the correctness gate compares against */
  reference: 'linear' | 'softmax';
  /** false: the cost does not depend on M, results are reused across M */
  dependsOnM: boolean;
  modes: Mode[];
  /** one-time initialisation; throwing marks the method unavailable */
  init?(): Promise<void>;
  /** true, or the reason the case is not run */
  supports(c: BenchCase): true | string;
  /** rough peak-memory estimate in bytes (cases above the cap are skipped) */
  estimateBytes?(c: BenchCase, mode: Mode): number;
  setup(c: BenchCase, x: Inputs): Promise<Ctx> | Ctx;
  /** forward: returns out [b,h,t,dv] as a JS array */
  fwd(ctx: Ctx): Float32Array | Promise<Float32Array>;
  /** forward + backward (gradients w.r.t. q, k, v), results read back to JS */
  fwdbwd?(ctx: Ctx): unknown;
  /** run the call once and report its peak memory */
  measure(ctx: Ctx, mode: Mode): Promise<Measured>;
  /** floating-point operations of one call */
  flops(c: BenchCase, mode: Mode): number;
  dispose(ctx: Ctx): Promise<void> | void;
  /** called after a failed case (OOM, error) to free everything */
  recover?(): Promise<void>;
}

/**
 * The one kernel interface. The wasm kernels (`src/wasm/`) implement it synchronously; the WebGPU
 * kernels (`src/webgpu/`) and the worker pool (`src/parallel/`) implement it with Promises. Code
 * above the kernels (ops, layers, models, the trainer, the benchmark) depends on this interface,
 * not on a backend: `AttentionKernels` with no argument is any of them (await its results).
 */
import type {
  AttnState,
  BidirectionalBackwardArgs,
  BidirectionalGrads,
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalGrads,
  FeatureGrads,
  FeaturesBackwardArgs,
  FeaturesForwardArgs,
  CausalForwardResult,
  StepArgs,
  UnrollArgs,
} from './types.ts';

/** `T`, or a Promise of it when the backend is asynchronous. */
export type KernelResult<Async extends boolean, T> = Async extends true ? Promise<T> : T;

/** Which implementation runs the kernels. */
export type KernelBackend = 'wasm' | 'webgpu' | 'pool';

export interface AttentionKernels<Async extends boolean = boolean> {
  readonly backend: KernelBackend;
  /** Causal attention `[b, h, t, ·]` with a carried state in and out. */
  causalForward(a: CausalForwardArgs): KernelResult<Async, CausalForwardResult>;
  /** Gradients of {@link causalForward} (and of the state it started from). */
  causalBackward(a: CausalBackwardArgs): KernelResult<Async, CausalGrads>;
  /** Causal attention over precomputed non-negative features `phiQ`, `phiK`. */
  causalForwardFeatures(a: FeaturesForwardArgs): KernelResult<Async, CausalForwardResult>;
  /** Gradients of {@link causalForwardFeatures} with respect to the features and values. */
  causalBackwardFeatures(a: FeaturesBackwardArgs): KernelResult<Async, FeatureGrads>;
  /** Non-causal attention: every token attends to all. */
  bidirectionalForward(a: CausalArgs): KernelResult<Async, { out: Float32Array }>;
  bidirectionalBackward(a: BidirectionalBackwardArgs): KernelResult<Async, BidirectionalGrads>;
  /** Frees the backend's resources; later calls throw. */
  dispose(): void | Promise<void>;
}

/** One decoding step per `(b, h)`: the wasm and WebGPU kernels have it, the pool not. */
export interface StepKernels<Async extends boolean = boolean> extends AttentionKernels<Async> {
  recurrentStep(a: StepArgs): KernelResult<Async, CausalForwardResult>;
}

/**
 * The synchronous kernels the TF.js ops, the models and the SLiM trainer run on (the wasm
 * backend): TF.js kernels and gradients are synchronous, so these results cannot be Promises.
 */
export interface SyncKernels extends StepKernels<false> {
  readonly backend: 'wasm';
  /** The state a slice started from, from the state it ended with (SLiM's backward pass). */
  causalUnroll(a: UnrollArgs): AttnState;
  /** Bytes allocated inside the backend now (0 between calls). */
  liveBytes(): number;
}

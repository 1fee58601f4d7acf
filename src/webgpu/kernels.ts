/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: the kernel interface of src/kernels/ (the same argument objects and
 * validation as the wasm backend), returning Promises. This class is the public face; the
 * machinery is ./core.ts (buffers in ./buffers.ts, layouts and dispatch plans in ./plan.ts), each
 * kernel's host is its own module (./causal_forward.ts, ./causal_backward.ts, ./bidirectional.ts,
 * ./recurrent_step.ts) and the WGSL is in ./shaders/. Each Float32Array call uploads its inputs into
 * pooled GPU buffers, runs the WGSL kernel (shaders/*.wgsl) and reads the results back; the
 * `…GPU` variants take and return GPUBuffers without copying the T-sized tensors (states stay
 * Float64Array on the host: they are O(M·D) per slice).
 *
 * States: the GPU keeps S, z in float32 with Neumaier-compensated (hi, lo) sums for the forward
 * accumulation (returned as hi + lo in float64); the backward never undoes a chunk by
 * subtraction but replays the state from checkpoints (see shaders/causal_backward.wgsl).
 */
import type { StepKernels } from '../kernels/interface.ts';
import type {
  AttnState,
  BidirectionalBackwardArgs,
  BidirectionalGrads,
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalForwardResult,
  CausalGrads,
  FeatureGrads,
  FeaturesBackwardArgs,
  FeaturesForwardArgs,
  StateGrad,
  StepArgs,
} from '../kernels/types.ts';
import * as bidirectional from './bidirectional.ts';
import * as backward from './causal_backward.ts';
import * as forward from './causal_forward.ts';
import { type GpuCallStats, type GpuCausalArgs, GpuCore, type GpuSyncArgs, type WebGPUOptions } from './core.ts';
import { GpuContext, WebGPUError } from './device.ts';
import { ProgramCache } from './program.ts';
import * as step from './recurrent_step.ts';
import { loadShaders } from './shaders/index.ts';

export type { GpuCallStats, GpuCausalArgs, GpuSyncArgs, WebGPUOptions } from './core.ts';

export class WebGPUKernels implements StepKernels<true> {
  /** Which backend this is (for reports). */
  readonly backend = 'webgpu' as const;

  private constructor(private readonly core: GpuCore) {}

  /** Acquires a device (or wraps `opts.device`), loads the shaders and builds nothing yet. */
  static async create(opts: WebGPUOptions = {}): Promise<WebGPUKernels> {
    const { files } = await loadShaders();
    const ctx = await GpuContext.create(opts);
    try {
      return new WebGPUKernels(new GpuCore(ctx, new ProgramCache(ctx, files), opts));
    } catch (e) {
      ctx.dispose();
      throw e;
    }
  }

  /** The device context (error scopes, device loss). */
  get ctx(): GpuContext {
    return this.core.ctx;
  }

  get device(): GPUDevice {
    return this.core.device;
  }

  /** The adapter that runs the kernels, e.g. "opengles: mesa llvmpipe …". */
  get description(): string {
    return this.core.description;
  }

  /** Invocations per workgroup. */
  get workgroupSize(): number {
    return this.core.workgroupSize;
  }

  /** Whether the per-chunk products run tiled (option `tiled`; shaders/tile.wgsl). */
  get tiled(): boolean {
    return this.core.tiled;
  }

  /** Pipelines built so far (one per shader key). */
  get pipelines(): number {
    return this.core.pipelines;
  }

  /** Dispatches the most recent kernel call was split into. */
  get lastSteps(): number {
    return this.core.lastSteps;
  }

  /** Bytes of GPU buffers handed out and not yet released (0 between Float32Array calls). */
  liveBytes(): number {
    return this.core.liveBytes();
  }

  /** Buffers handed out and not yet released. */
  liveBuffers(): number {
    return this.core.liveBuffers();
  }

  /** Bytes held in GPU buffers: live plus pooled for reuse. */
  memoryBytes(): number {
    return this.core.memoryBytes();
  }

  lastCall(): GpuCallStats {
    return this.core.lastCall();
  }

  /** Returns a buffer this backend handed out (e.g. a `…GPU` output) to the pool. */
  release(buf: GPUBuffer): void {
    this.core.release(buf);
  }

  /** Destroys every pooled buffer (live ones stay valid until released). */
  trim(): void {
    this.core.trim();
  }

  /** Destroys every buffer, pooled or live, and the device if this backend created it. */
  dispose(): void {
    this.core.dispose();
  }

  /** Causal attention `[b, h, t, ·]` with a carried state in and out. */
  causalForward(a: CausalForwardArgs): Promise<CausalForwardResult> {
    return forward.causalForward(this.core, a);
  }

  /** As `causalForward` on GPUBuffers; `out` is a new buffer from this backend's pool (`release` it). */
  causalForwardGPU(a: GpuCausalArgs & { state?: AttnState }): Promise<{ out: GPUBuffer; state: AttnState }> {
    return forward.causalForwardGPU(this.core, a);
  }

  /** Causal attention on precomputed features (`phiQ`, `phiK`: `[b, h, t, m]`). */
  causalForwardFeatures(a: FeaturesForwardArgs): Promise<CausalForwardResult> {
    return forward.causalForwardFeatures(this.core, a);
  }

  /**
   * Causal forward on GPUBuffers that encodes and submits without waiting (for graph builders
   * such as TF.js ops, whose kernels must return synchronously). `state` (optional) and the
   * returned state are in the GPU layout (`gpuStateWords`). With `pack`, the state is written
   * into `out` after the `[b, h, t, dv]` output, at byte `stateOffset`; otherwise it is a
   * buffer of its own. Returned buffers come from the pool: `release` them.
   */
  causalForwardSync(a: GpuSyncArgs & { state?: GPUBuffer; pack?: boolean }): { out: GPUBuffer; state: GPUBuffer; stateOffset: number } {
    return forward.causalForwardSync(this.core, a);
  }

  /**
   * Gradients of causal attention. `out` (the forward's output) is accepted for API parity and
   * validated, but the GPU kernel recomputes it with the forward's own code instead of reading it.
   */
  causalBackward(a: CausalBackwardArgs): Promise<CausalGrads> {
    return backward.causalBackward(this.core, a);
  }

  /** As `causalBackward` on GPUBuffers; `dq, dk, dv` are new buffers from the pool (`release` them). */
  causalBackwardGPU(
    a: GpuCausalArgs & { dOut: GPUBuffer; stateIn?: AttnState; stateOut: AttnState; dState?: StateGrad },
  ): Promise<{ dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer; dState: StateGrad }> {
    return backward.causalBackwardGPU(this.core, a);
  }

  /** Gradients of `causalForwardFeatures`: `dPhiQ, dPhiK, dv, dState`. */
  causalBackwardFeatures(a: FeaturesBackwardArgs): Promise<FeatureGrads> {
    return backward.causalBackwardFeatures(this.core, a);
  }

  /**
   * Gradients of `causalForwardSync`, encoded and submitted without waiting. `dState` (optional)
   * is the upstream gradient of the output state in the GPU layout (only its S, z hi part is
   * read), starting at byte `dStateOffset` of its buffer. Returns `dq, dk, dv` and `dStateIn`,
   * the gradient of the input state in the GPU layout (S, z filled, the rest zero).
   */
  causalBackwardSync(a: GpuSyncArgs & { dOut: GPUBuffer; stateIn?: GPUBuffer; dState?: GPUBuffer; dStateOffset?: number }): {
    dq: GPUBuffer;
    dk: GPUBuffer;
    dv: GPUBuffer;
    dStateIn: GPUBuffer;
  } {
    return backward.causalBackwardSync(this.core, a);
  }

  /** Bidirectional attention (no state). */
  bidirectionalForward(a: CausalArgs): Promise<{ out: Float32Array }> {
    return bidirectional.bidirectionalForward(this.core, a);
  }

  bidirectionalBackward(a: BidirectionalBackwardArgs): Promise<BidirectionalGrads> {
    return bidirectional.bidirectionalBackward(this.core, a);
  }

  /** Bidirectional forward on GPUBuffers, encoded and submitted without waiting. */
  bidirectionalForwardSync(a: GpuSyncArgs): { out: GPUBuffer } {
    return bidirectional.bidirectionalForwardSync(this.core, a);
  }

  /** Gradients of `bidirectionalForwardSync`, encoded and submitted without waiting. */
  bidirectionalBackwardSync(a: GpuSyncArgs & { dOut: GPUBuffer }): { dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer } {
    return bidirectional.bidirectionalBackwardSync(this.core, a);
  }

  /**
   * One decoding step: `q, k: [b, h, d]`, `v: [b, h, dv]` → `out: [b, h, dv]` and the next
   * state. It is the causal forward kernel at T = 1 (crate/src/linear_attn/README.md).
   */
  recurrentStep(a: StepArgs): Promise<CausalForwardResult> {
    return step.recurrentStep(this.core, a);
  }

  /**
   * Builds the pipelines the synchronous calls use, so that their first call does not compile
   * (and so that a shader that does not compile on this device is reported here, awaited).
   */
  prepare(): Promise<void> {
    return this.core.prepare();
  }

  /**
   * Waits until the device has judged every synchronous call so far and throws the first GPU
   * error one of them met (they are otherwise thrown by the next call).
   */
  flush(): Promise<void> {
    return this.core.flush();
  }
}

/** Creates a WebGPU kernel backend (acquires a device unless `opts.device` is given). */
export function initWebGPU(opts: WebGPUOptions = {}): Promise<WebGPUKernels> {
  return WebGPUKernels.create(opts);
}

export { WebGPUError };

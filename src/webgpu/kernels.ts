/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: the kernel interface of src/kernels/ (the same argument objects and
 * validation as the wasm backend), returning Promises; buffers live in ./buffers.ts, the work
 * buffer layout and dispatch plans in ./plan.ts, the WGSL in ./shaders/. Each Float32Array call uploads its inputs into
 * pooled GPU buffers, runs the WGSL kernel (shaders/*.wgsl) and reads the results back; the
 * `…GPU` variants take and return GPUBuffers without copying the T-sized tensors (states stay
 * Float64Array on the host: they are O(M·D) per slice).
 *
 * States: the GPU keeps S, z in float32 with Neumaier-compensated (hi, lo) sums for the forward
 * accumulation (returned as hi + lo in float64); the backward never undoes a chunk by
 * subtraction but replays the state from checkpoints (see shaders/causal_backward.wgsl).
 */
import {
  ArgError,
  checkArray,
  checkChunk,
  checkDims,
  checkEps,
  checkFavorRange,
  checkFeature,
  checkFiniteResult,
  checkOmega,
  checkState,
  checkStateGrad,
  checkStateOutFilled,
  stateMismatch,
} from '../kernels/validate.ts';
import type { StepKernels } from '../kernels/interface.ts';
import { featureDims } from '../kernels/state.ts';
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
  StateGrad,
  StepArgs,
} from '../kernels/types.ts';
import { align, BufferPool, COPY_DST, IO, STORAGE, UNIFORM } from './buffers.ts';
import { GpuContext, WebGPUError, type AcquireOptions } from './device.ts';
import { ProgramCache, type Program } from './program.ts';
import { layout, PARAM_BYTES, plan, writeParams, type Checked, type Copy, type Layout, type PlanEnv } from './plan.ts';
import { frameFactor, fromGpuState, gpuStateWords as stateWords, toGpuState } from './state.ts';
import { loadShaders, type KernelName } from './shaders/index.ts';

export interface WebGPUOptions extends AcquireOptions {
  /** Invocations per workgroup (default 64; at most the device's limit, 128 in compatibility mode). */
  workgroupSize?: number;
  /** Fill every output (and the kernel's work buffer) with NaN before each run (tests). */
  poison?: boolean;
  /** Compensated (hi, lo) state sums in the forward (default true). */
  compensate?: boolean;
  /** Bytes of released buffers kept for reuse (default 256 MiB). */
  poolBytes?: number;
  /**
   * Causal and bidirectional kernels with one workgroup per (slice, chunk), in windows of chunks
   * (shaders/chunk_parallel.wgsl), instead of one workgroup per slice running its chunks in
   * order. Default true: B·H workgroups alone leave a GPU idle, and even on Mesa llvmpipe
   * (2 cores) they ran 1.3–2.6× faster (bench/results/webgpu-llvmpipe-latest.json).
   */
  chunkParallel?: boolean;
  /** Chunks per window of the chunk-parallel kernels (default: what `windowBytes` allows). */
  chunkWindow?: number;
  /**
   * Work-buffer bytes a chunk-parallel window may use (default 256 MiB, 16 MiB on software
   * adapters; at most half the device's maxStorageBufferBindingSize).
   */
  windowBytes?: number;
}

/** Memory of the most recent call, as for the wasm backend (bytes of GPU buffers). */
export interface GpuCallStats {
  /** Bytes of inputs and outputs (the T-sized tensors). */
  ioBytes: number;
  /** The kernel's work buffer beyond its inputs and outputs (chunk scratch, checkpoints). */
  scratchBytes: number;
}

/** Tensors on the GPU for the `…GPU` variants: row-major f32 `[b, h, t, ·]` storage buffers. */
export interface GpuCausalArgs {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  dims: Dims;
  feature: FeatureMap;
  omega?: Float32Array;
  chunk?: number;
  eps?: number;
}

/** Arguments of the synchronous calls: tensors and (optionally) the random features on the GPU. */
export interface GpuSyncArgs extends Omit<GpuCausalArgs, 'omega'> {
  /** `[h, m, d]` random features, host or GPU. */
  omega?: Float32Array | GPUBuffer;
}

export class WebGPUKernels implements StepKernels<true> {
  /** Which backend this is (for reports). */
  readonly backend = 'webgpu' as const;
  private readonly buffers: BufferPool;
  private stats: GpuCallStats = { ioBytes: 0, scratchBytes: 0 };
  /** Dispatches the most recent kernel call was split into. */
  lastSteps = 0;
  private disposed = false;
  readonly workgroupSize: number;
  private readonly poison: boolean;
  private readonly compensate: boolean;
  private readonly chunkParallel: boolean;
  private readonly chunkWindow: number | undefined;
  private readonly windowBytes: number;
  /** What the dispatch plans depend on (./plan.ts). */
  private readonly env: PlanEnv;

  private constructor(
    readonly ctx: GpuContext,
    private readonly programs: ProgramCache,
    opts: WebGPUOptions,
  ) {
    const maxWg = ctx.limits.maxComputeInvocationsPerWorkgroup;
    this.workgroupSize = opts.workgroupSize ?? Math.min(64, maxWg);
    if (
      !Number.isSafeInteger(this.workgroupSize) ||
      this.workgroupSize < 1 ||
      this.workgroupSize > maxWg ||
      this.workgroupSize > ctx.limits.maxComputeWorkgroupSizeX
    ) {
      throw new ArgError(
        `WebGPUKernels: workgroupSize must be an integer in [1, ${Math.min(maxWg, ctx.limits.maxComputeWorkgroupSizeX)}] on this device, got ${opts.workgroupSize}`,
      );
    }
    this.poison = opts.poison ?? false;
    this.compensate = opts.compensate ?? true;
    this.buffers = new BufferPool(ctx.device, opts.poolBytes ?? 256 << 20);
    this.chunkParallel = opts.chunkParallel ?? true;
    if (opts.chunkWindow !== undefined && (!Number.isSafeInteger(opts.chunkWindow) || opts.chunkWindow < 1)) {
      throw new ArgError(`WebGPUKernels: chunkWindow must be a positive integer, got ${opts.chunkWindow}`);
    }
    this.chunkWindow = opts.chunkWindow;
    this.windowBytes = opts.windowBytes ?? (ctx.software ? 16 << 20 : 256 << 20);
    this.env = {
      workgroupSize: this.workgroupSize,
      software: ctx.software,
      limits: ctx.limits,
      windowBytes: this.windowBytes,
      chunkWindow: this.chunkWindow,
      compensate: this.compensate,
    };
  }

  /** The kernels that run the causal forward and backward (see `chunkParallel`). */
  private forwardKind(): KernelName {
    return this.chunkParallel ? 'causal_forward_parallel' : 'causal_forward';
  }

  private backwardKind(): KernelName {
    return this.chunkParallel ? 'causal_backward_parallel' : 'causal_backward';
  }

  private bidirectionalKind(backward: boolean): KernelName {
    const k = backward ? 'bidirectional_backward' : 'bidirectional_forward';
    return this.chunkParallel ? `${k}_parallel` : k;
  }

  /** Acquires a device (or wraps `opts.device`), loads the shaders and builds nothing yet. */
  static async create(opts: WebGPUOptions = {}): Promise<WebGPUKernels> {
    const { files } = await loadShaders();
    const ctx = await GpuContext.create(opts);
    try {
      return new WebGPUKernels(ctx, new ProgramCache(ctx, files), opts);
    } catch (e) {
      ctx.dispose();
      throw e;
    }
  }

  get device(): GPUDevice {
    return this.ctx.device;
  }

  /** The adapter that runs the kernels, e.g. "opengles: mesa llvmpipe …". */
  get description(): string {
    return this.ctx.description;
  }

  /** Pipelines built so far (one per shader key). */
  get pipelines(): number {
    return this.programs.size;
  }

  // ---------------------------------------------------------------- buffers (./buffers.ts)

  /** Bytes of GPU buffers handed out and not yet released (0 between Float32Array calls). */
  liveBytes(): number {
    return this.buffers.liveBytes();
  }

  /** Buffers handed out and not yet released. */
  liveBuffers(): number {
    return this.buffers.liveBuffers();
  }

  /** Bytes held in GPU buffers: live plus pooled for reuse. */
  memoryBytes(): number {
    return this.buffers.memoryBytes();
  }

  lastCall(): GpuCallStats {
    return { ...this.stats };
  }

  /** Returns a buffer this backend handed out (e.g. a `…GPU` output) to the pool. */
  release(buf: GPUBuffer): void {
    this.buffers.release(buf, this.disposed);
    // A NaN fill still queued for it (its call failed before encoding) must not reach the buffer's
    // next user, whose inputs may already be written into it.
    if (this.pendingFills.some((f) => f.buf === buf)) this.pendingFills = this.pendingFills.filter((f) => f.buf !== buf);
  }

  /** Destroys every pooled buffer (live ones stay valid until released). */
  trim(): void {
    this.buffers.trim();
  }

  /** Destroys every buffer, pooled or live, and the device if this backend created it. */
  dispose(): void {
    if (this.disposed) return;
    this.buffers.destroy();
    this.disposed = true;
    this.ctx.dispose();
  }

  private alive(fn: string): void {
    if (this.disposed) throw new Error(`${fn}: this WebGPU kernel instance was disposed`);
    this.ctx.alive(fn);
  }

  private acquire(bytes: number, usage: number, label: string, exact = false): GPUBuffer {
    return this.buffers.acquire(bytes, usage, label, exact);
  }

  private upload(a: Float32Array, label: string): GPUBuffer {
    return this.buffers.upload(a, label);
  }

  private download(buf: GPUBuffer, words: number, offsetWords = 0): Promise<Float32Array> {
    return this.buffers.download(buf, words, offsetWords);
  }

  // ---------------------------------------------------------------- checks

  private common(fn: string, a: CausalArgs, featureOverride?: 'identity', gpu = false): Checked {
    this.alive(fn);
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const dims = checkDims(fn, a.dims);
    const feature = featureOverride ?? checkFeature(fn, a.feature);
    const chunk = checkChunk(fn, a.chunk);
    const { b, h, t, d, m, dv } = dims;
    const onGpu = gpu && a.omega !== undefined && a.omega !== null && !(a.omega instanceof Float32Array);
    const omegaBuf = onGpu && feature !== 'identity' ? this.checkGpuBuffer(fn, 'omega', a.omega, h * m * d * 4) : undefined;
    const omega = feature === 'identity' || omegaBuf ? undefined : checkOmega(fn, feature, a.omega, dims);
    if (!gpu) {
      const [nq, nk] = featureOverride ? ['phiQ', 'phiK'] : ['q', 'k'];
      const shape: Record<string, number> = featureOverride ? { b, h, t, m: d } : { b, h, t, d };
      checkArray(fn, nq, a.q, Float32Array, shape);
      checkArray(fn, nk, a.k, Float32Array, shape);
      checkArray(fn, 'v', a.v, Float32Array, { b, h, t, dv });
      if (feature === 'favor') {
        checkFavorRange(fn, 'q', a.q, d);
        checkFavorRange(fn, 'k', a.k, d);
      }
    }
    this.checkBinding(fn, 'q', b * h * t * d * 4);
    this.checkBinding(fn, 'v', b * h * t * dv * 4);
    return { dims, feature, omega, omegaBuf, chunk: Math.min(chunk, t), eps: checkEps(fn, a.eps) };
  }

  private checkBinding(fn: string, name: string, bytes: number): void {
    const lim = this.ctx.limits;
    const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    if (bytes > max) {
      throw new ArgError(
        `${fn}: ${name} needs a ${(bytes / 2 ** 20).toFixed(1)} MiB storage binding, more than this device's ${(max / 2 ** 20).toFixed(0)} MiB limit (maxStorageBufferBindingSize); split the batch or the sequence`,
      );
    }
  }

  private checkGpuBuffer(fn: string, name: string, buf: unknown, bytes: number): GPUBuffer {
    const b = buf as GPUBuffer;
    if (typeof b !== 'object' || b === null || typeof b.size !== 'number' || typeof b.usage !== 'number')
      throw new ArgError(`${fn}: ${name} must be a GPUBuffer`);
    if (b.size < bytes) throw new ArgError(`${fn}: ${name} must hold at least ${bytes} bytes, got a GPUBuffer of ${b.size}`);
    if (!(b.usage & STORAGE)) throw new ArgError(`${fn}: ${name} must have GPUBufferUsage.STORAGE`);
    return b;
  }

  // ---------------------------------------------------------------- layout and dispatch

  /** Writes the small inputs (omega, states) into a new work buffer. */
  private workBuffer(fn: string, L: Layout, c: Checked, dims: Dims, state?: AttnState, dState?: StateGrad): GPUBuffer {
    this.checkBinding(fn, 'the kernel work buffer (chunk scratch and states)', L.words * 4);
    const W = this.acquire(L.words * 4, IO, `${fn} work`);
    const q = this.ctx.device.queue;
    if (this.poison) this.fill(W, L.words - L.stateOutOff, L.stateOutOff); // inputs are written below, before the fill runs
    if (c.omega) q.writeBuffer(W, L.omegaOff * 4, c.omega.buffer, c.omega.byteOffset, c.omega.byteLength);
    const { m, dv } = dims;
    const bh = dims.b * dims.h;
    if (state) q.writeBuffer(W, L.stateInOff * 4, toGpuState(state, dims));
    if (dState) {
      const g = new Float32Array(bh * (m * dv + m));
      for (let i = 0; i < bh; i++) {
        g.set(dState.S.subarray(i * m * dv, (i + 1) * m * dv), i * (m * dv + m));
        g.set(dState.z.subarray(i * m, (i + 1) * m), i * (m * dv + m) + m * dv);
      }
      q.writeBuffer(W, L.dStateOff * 4, g);
    }
    return W;
  }

  private pendingFills: Array<{ buf: GPUBuffer; words: number; start: number }> = [];

  /** Queues a NaN fill of `words` words of `buf` from word `start` (encoded before the next kernel). */
  private fill(buf: GPUBuffer, words: number, start = 0): void {
    this.pendingFills.push({ buf, words, start });
  }

  /**
   * Encodes pending NaN fills, then `before` (copies into the work buffer), the kernel's
   * dispatches and `after` (copies out of it) into `enc`. Returns the uniform buffers to release
   * once the encoder is submitted.
   */
  private encode(
    enc: GPUCommandEncoder,
    fn: string,
    prog: Program,
    fillProg: Program | undefined,
    kind: KernelName,
    c: Checked,
    L: Layout,
    flags: { hasState: boolean; hasDState: boolean },
    buffers: GPUBuffer[],
    before: Copy[] = [],
    after: Array<Copy | { clear: GPUBuffer }> = [],
  ): GPUBuffer[] {
    const device = this.ctx.device;
    const bh = c.dims.b * c.dims.h;
    const maxPerDim = device.limits.maxComputeWorkgroupsPerDimension;
    const steps = plan(kind, c, L, fn, this.env);
    const stride = align(PARAM_BYTES, device.limits.minUniformBufferOffsetAlignment);
    const data = new ArrayBuffer(stride * steps.length);
    steps.forEach((step, i) => writeParams(c, L, flags.hasState, flags.hasDState, Math.min(step.groups ?? bh, maxPerDim), step, data, i * stride, this.env));
    const uniform = this.acquire(data.byteLength, UNIFORM | COPY_DST, 'params');
    const temps = [uniform];
    this.lastSteps = steps.length;
    device.queue.writeBuffer(uniform, 0, data);
    for (const { buf, words, start } of this.pendingFills.splice(0)) {
      const fu = this.acquire(16, UNIFORM | COPY_DST, 'fill params');
      temps.push(fu);
      device.queue.writeBuffer(fu, 0, new Uint32Array([words, 0x7fc00000, start, 0]));
      const bg = device.createBindGroup({
        layout: fillProg!.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: fu } },
          { binding: 1, resource: { buffer: buf } },
        ],
      });
      const pass = enc.beginComputePass();
      fillProg!.dispatch(pass, bg, Math.ceil(words / 64));
      pass.end();
    }
    for (const x of before) enc.copyBufferToBuffer(x.src, x.srcOffset, x.dst, x.dstOffset, x.size);
    const layout = prog.pipeline.getBindGroupLayout(0);
    const pass = enc.beginComputePass({ label: fn });
    steps.forEach((step, i) => {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform, offset: i * stride, size: PARAM_BYTES } }];
      buffers.forEach((buffer, j) => entries.push({ binding: j + 1, resource: { buffer } }));
      prog.dispatch(pass, device.createBindGroup({ layout, entries, label: fn }), step.groups ?? bh);
    });
    pass.end();
    for (const x of after) {
      if ('clear' in x) enc.clearBuffer(x.clear);
      else enc.copyBufferToBuffer(x.src, x.srcOffset, x.dst, x.dstOffset, x.size);
    }
    return temps;
  }

  /** Encodes pending NaN fills and the kernel, submits, and waits for errors. */
  private async dispatch(fn: string, kind: KernelName, c: Checked, L: Layout, hasState: boolean, hasDState: boolean, buffers: GPUBuffer[]): Promise<void> {
    const device = this.ctx.device;
    const prog = await this.programs.get(kind, this.workgroupSize);
    const fillProg = this.pendingFills.length ? await this.programs.get('fill', 64) : undefined;
    let temps: GPUBuffer[] = [];
    try {
      await this.ctx.scoped(fn, async () => {
        const enc = device.createCommandEncoder({ label: fn });
        temps = this.encode(enc, fn, prog, fillProg, kind, c, L, { hasState, hasDState }, buffers);
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
      });
    } finally {
      for (const u of temps) this.release(u);
    }
  }

  /**
   * As `dispatch` without waiting: pipelines are built synchronously when missing, and errors
   * the device reports later are thrown by the next call or by `flush()`. Buffers released to the
   * pool afterwards are safe to reuse: every later use of them is ordered after this submit.
   */
  private dispatchSync(
    fn: string,
    kind: KernelName,
    c: Checked,
    L: Layout,
    flags: { hasState: boolean; hasDState: boolean },
    buffers: GPUBuffer[],
    before: Copy[],
    after: Array<Copy | { clear: GPUBuffer }>,
  ): void {
    const device = this.ctx.device;
    const prog = this.programs.getSync(kind, this.workgroupSize);
    const fillProg = this.pendingFills.length ? this.programs.getSync('fill', 64) : undefined;
    const enc = device.createCommandEncoder({ label: fn });
    const temps = this.encode(enc, fn, prog, fillProg, kind, c, L, flags, buffers, before, after);
    device.queue.submit([enc.finish()]);
    for (const u of temps) this.release(u);
  }

  /** Runs `body` and releases every buffer it acquired through `use`, whatever happens. */
  private async run<T>(fn: string, body: (use: (b: GPUBuffer) => GPUBuffer) => Promise<T>): Promise<T> {
    const held: GPUBuffer[] = [];
    try {
      return await body((b) => (held.push(b), b));
    } catch (e) {
      if (e instanceof Error && !(e instanceof ArgError) && !e.message.startsWith(fn)) e.message = `${fn}: ${e.message}`;
      throw e;
    } finally {
      for (const b of held) this.release(b);
    }
  }

  private newOutput(words: number, label: string, exact = false): GPUBuffer {
    const b = this.acquire(words * 4, IO, label, exact);
    if (this.poison) this.fill(b, words);
    return b;
  }

  // ---------------------------------------------------------------- causal forward

  private async forwardGpu(
    fn: string,
    c: Checked,
    q: GPUBuffer,
    k: GPUBuffer,
    v: GPUBuffer,
    state: AttnState | undefined,
  ): Promise<{ out: GPUBuffer; state: AttnState }> {
    const { b, h, t, m, dv } = c.dims;
    const bh = b * h;
    const kind = this.forwardKind();
    const L = layout(kind, c, !!state, false, this.env);
    return this.run(fn, async (use) => {
      const W = use(this.workBuffer(fn, L, c, c.dims, state));
      const out = this.newOutput(bh * t * dv, `${fn} out`);
      try {
        await this.dispatch(fn, kind, c, L, !!state, false, [W, q, k, v, out]);
        const raw = await this.download(W, bh * stateWords(m, dv), L.stateOutOff);
        this.stats = { ioBytes: 4 * bh * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
        const next = fromGpuState(raw, c.dims, c.feature);
        checkFiniteResult(fn, c.feature, inputNames(c), [
          ['state.S', next.S],
          ['state.z', next.z],
        ]);
        checkFiniteResult(fn, c.feature, inputNames(c), [['state.offset', next.offset]], true);
        return { out, state: next };
      } catch (e) {
        this.release(out);
        throw e;
      }
    });
  }

  private async forwardImpl(fn: string, a: CausalForwardArgs, c: Checked): Promise<{ out: Float32Array; state: AttnState }> {
    const state = a.state === undefined ? undefined : checkState(fn, 'state', a.state, c.dims, c.feature);
    const { b, h, t, dv } = c.dims;
    return this.run(fn, async (use) => {
      const [q, k, v] = [use(this.upload(a.q, 'q')), use(this.upload(a.k, 'k')), use(this.upload(a.v, 'v'))];
      const r = await this.forwardGpu(fn, c, q, k, v, state);
      use(r.out);
      const out = await this.download(r.out, b * h * t * dv);
      checkFiniteResult(fn, c.feature, inputNames(c), [['out', out]]);
      return { out, state: r.state };
    });
  }

  /** Causal attention `[b, h, t, ·]` with a carried state in and out. */
  causalForward(a: CausalForwardArgs): Promise<CausalForwardResult> {
    return this.guard(() => this.forwardImpl('causalForward', a, this.common('causalForward', a)));
  }

  /** As `causalForward` on GPUBuffers; `out` is a new buffer from this backend's pool (`release` it). */
  causalForwardGPU(a: GpuCausalArgs & { state?: AttnState }): Promise<{ out: GPUBuffer; state: AttnState }> {
    const fn = 'causalForwardGPU';
    return this.guard(() => {
      const c = this.common(fn, a as unknown as CausalArgs, undefined, true);
      const { b, h, t, d, dv } = c.dims;
      const q = this.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4);
      const k = this.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4);
      const v = this.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4);
      const state = a.state === undefined ? undefined : checkState(fn, 'state', a.state, c.dims, c.feature);
      return this.forwardGpu(fn, c, q, k, v, state);
    });
  }

  /** Causal attention on precomputed features (`phiQ`, `phiK`: `[b, h, t, m]`). */
  causalForwardFeatures(a: FeaturesForwardArgs): Promise<CausalForwardResult> {
    const fn = 'causalForwardFeatures';
    return this.guard(() => {
      const args = { q: a?.phiQ, k: a?.phiK, v: a?.v, dims: featureDims(fn, a?.dims), chunk: a?.chunk, eps: a?.eps, state: a?.state, feature: 'relu' as const };
      return this.forwardImpl(fn, args, this.common(fn, args, 'identity'));
    });
  }

  /** Validation errors are thrown synchronously-in-Promise; wasm-style ArgErrors stay ArgErrors. */
  private guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return body();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---------------------------------------------------------------- causal backward

  private async backwardGpu(
    fn: string,
    c: Checked,
    bufs: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; dOut: GPUBuffer },
    stateIn: AttnState | undefined,
    stateOut: AttnState,
    dState: StateGrad | undefined,
  ): Promise<{ dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer; dState: StateGrad }> {
    const { b, h, t, d, m, dv } = c.dims;
    const bh = b * h;
    const kind = this.backwardKind();
    const L = layout(kind, c, !!stateIn, !!dState, this.env);
    return this.run(fn, async (use) => {
      const W = use(this.workBuffer(fn, L, c, c.dims, stateIn, dState));
      const outs = [this.newOutput(bh * t * d, `${fn} dq`), this.newOutput(bh * t * d, `${fn} dk`), this.newOutput(bh * t * dv, `${fn} dv`)];
      try {
        await this.dispatch(fn, kind, c, L, !!stateIn, !!dState, [W, bufs.q, bufs.k, bufs.v, bufs.dOut, ...outs]);
        const raw = await this.download(W, bh * (m * dv + m + 1), L.stateOutOff);
        const S = new Float64Array(bh * m * dv);
        const z = new Float64Array(bh * m);
        const n = m * dv + m + 1;
        for (let i = 0; i < bh; i++) {
          const mT = raw[i * n + m * dv + m];
          const want = stateOut.offset[i];
          const same =
            c.feature !== 'favor' || mT === Math.fround(want) || (Number.isFinite(want) && Math.abs(mT - want) <= 1e-6 * Math.max(1, Math.abs(want)));
          if (!same) throw stateMismatch(fn, `slice ${i} has ${want}, the keys give ${mT}`);
          // ∂/∂S_given = f · ∂/∂S_used for a state moved to a float32 frame (see workBuffer).
          const f = stateIn ? frameFactor(stateIn.offset[i]) : 1;
          for (let e = 0; e < m * dv; e++) S[i * m * dv + e] = f * raw[i * n + e];
          for (let r = 0; r < m; r++) z[i * m + r] = f * raw[i * n + m * dv + r];
        }
        this.stats = { ioBytes: 4 * bh * t * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
        checkFiniteResult(fn, c.feature, inputNames(c, true), [
          ['dState.S', S],
          ['dState.z', z],
        ]);
        return { dq: outs[0], dk: outs[1], dv: outs[2], dState: { S, z } };
      } catch (e) {
        for (const o of outs) this.release(o);
        throw e;
      }
    });
  }

  private async backwardImpl(fn: string, a: CausalBackwardArgs, c: Checked): Promise<CausalGrads> {
    const { stateIn, stateOut, dState } = this.backwardChecks(fn, a, c);
    checkArray(fn, 'dOut', a.dOut, Float32Array, { b: c.dims.b, h: c.dims.h, t: c.dims.t, dv: c.dims.dv });
    if (a.out !== undefined) checkArray(fn, 'out', a.out, Float32Array, { b: c.dims.b, h: c.dims.h, t: c.dims.t, dv: c.dims.dv });
    const { b, h, t, d, dv } = c.dims;
    return this.run(fn, async (use) => {
      const bufs = { q: use(this.upload(a.q, 'q')), k: use(this.upload(a.k, 'k')), v: use(this.upload(a.v, 'v')), dOut: use(this.upload(a.dOut, 'dOut')) };
      const g = await this.backwardGpu(fn, c, bufs, stateIn, stateOut, dState);
      use(g.dq);
      use(g.dk);
      use(g.dv);
      const n = b * h * t;
      const r = { dq: await this.download(g.dq, n * d), dk: await this.download(g.dk, n * d), dv: await this.download(g.dv, n * dv), dState: g.dState };
      checkFiniteResult(fn, c.feature, inputNames(c, true), [
        ['dq', r.dq],
        ['dk', r.dk],
        ['dv', r.dv],
      ]);
      return r;
    });
  }

  private backwardChecks(fn: string, a: { stateIn?: AttnState; stateOut: AttnState; dState?: StateGrad }, c: Checked) {
    const stateIn = a.stateIn === undefined ? undefined : checkState(fn, 'stateIn', a.stateIn, c.dims, c.feature);
    const stateOut = checkState(fn, 'stateOut', a.stateOut, c.dims, c.feature);
    checkStateOutFilled(fn, stateOut, c.feature);
    const dState = a.dState === undefined ? undefined : checkStateGrad(fn, 'dState', a.dState, c.dims);
    return { stateIn, stateOut, dState };
  }

  /**
   * Gradients of causal attention. `out` (the forward's output) is accepted for API parity and
   * validated, but the GPU kernel recomputes it with the forward's own code instead of reading it.
   */
  causalBackward(a: CausalBackwardArgs): Promise<CausalGrads> {
    return this.guard(() => this.backwardImpl('causalBackward', a, this.common('causalBackward', a)));
  }

  /** As `causalBackward` on GPUBuffers; `dq, dk, dv` are new buffers from the pool (`release` them). */
  causalBackwardGPU(
    a: GpuCausalArgs & { dOut: GPUBuffer; stateIn?: AttnState; stateOut: AttnState; dState?: StateGrad },
  ): Promise<{ dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer; dState: StateGrad }> {
    const fn = 'causalBackwardGPU';
    return this.guard(() => {
      const c = this.common(fn, a as unknown as CausalArgs, undefined, true);
      const { b, h, t, d, dv } = c.dims;
      const bufs = {
        q: this.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4),
        k: this.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4),
        v: this.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4),
        dOut: this.checkGpuBuffer(fn, 'dOut', a.dOut, b * h * t * dv * 4),
      };
      const { stateIn, stateOut, dState } = this.backwardChecks(fn, a, c);
      return this.backwardGpu(fn, c, bufs, stateIn, stateOut, dState);
    });
  }

  /** Gradients of `causalForwardFeatures`: `dPhiQ, dPhiK, dv, dState`. */
  async causalBackwardFeatures(a: FeaturesBackwardArgs): Promise<FeatureGrads> {
    const fn = 'causalBackwardFeatures';
    const args = { ...a, q: a?.phiQ, k: a?.phiK, dims: featureDims(fn, a?.dims), feature: 'relu' as const };
    const g = await this.backwardImpl(fn, args, this.common(fn, args, 'identity'));
    return { dPhiQ: g.dq, dPhiK: g.dk, dv: g.dv, dState: g.dState };
  }

  // ---------------------------------------------------------------- bidirectional

  /** Bidirectional attention (no state). */
  bidirectionalForward(a: CausalArgs): Promise<{ out: Float32Array }> {
    const fn = 'bidirectionalForward';
    return this.guard(async () => {
      const c = this.common(fn, a);
      const { b, h, t, dv } = c.dims;
      const kind = this.bidirectionalKind(false);
      const L = layout(kind, c, false, false, this.env);
      return this.run(fn, async (use) => {
        const W = use(this.workBuffer(fn, L, c, c.dims));
        const [q, k, v] = [use(this.upload(a.q, 'q')), use(this.upload(a.k, 'k')), use(this.upload(a.v, 'v'))];
        const out = use(this.newOutput(b * h * t * dv, `${fn} out`));
        await this.dispatch(fn, kind, c, L, false, false, [W, q, k, v, out]);
        this.stats = { ioBytes: 4 * b * h * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
        const r = { out: await this.download(out, b * h * t * dv) };
        checkFiniteResult(fn, c.feature, inputNames(c), [['out', r.out]]);
        return r;
      });
    });
  }

  bidirectionalBackward(a: BidirectionalBackwardArgs): Promise<BidirectionalGrads> {
    const fn = 'bidirectionalBackward';
    return this.guard(async () => {
      const c = this.common(fn, a);
      const { b, h, t, d, dv } = c.dims;
      checkArray(fn, 'dOut', a.dOut, Float32Array, { b, h, t, dv });
      const kind = this.bidirectionalKind(true);
      const L = layout(kind, c, false, false, this.env);
      return this.run(fn, async (use) => {
        const W = use(this.workBuffer(fn, L, c, c.dims));
        const ins = [use(this.upload(a.q, 'q')), use(this.upload(a.k, 'k')), use(this.upload(a.v, 'v')), use(this.upload(a.dOut, 'dOut'))];
        const n = b * h * t;
        const outs = [use(this.newOutput(n * d, 'dq')), use(this.newOutput(n * d, 'dk')), use(this.newOutput(n * dv, 'dv'))];
        await this.dispatch(fn, kind, c, L, false, false, [W, ...ins, ...outs]);
        this.stats = { ioBytes: 4 * n * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
        const r = { dq: await this.download(outs[0], n * d), dk: await this.download(outs[1], n * d), dv: await this.download(outs[2], n * dv) };
        checkFiniteResult(fn, c.feature, inputNames(c, true), [
          ['dq', r.dq],
          ['dk', r.dk],
          ['dv', r.dv],
        ]);
        return r;
      });
    });
  }

  // ---------------------------------------------------------------- synchronous, GPU-resident

  /**
   * Builds the pipelines the synchronous calls use, so that their first call does not compile
   * (and so that a shader that does not compile on this device is reported here, awaited).
   */
  async prepare(): Promise<void> {
    const kinds: KernelName[] = [this.forwardKind(), this.backwardKind(), this.bidirectionalKind(false), this.bidirectionalKind(true)];
    await Promise.all(kinds.map((k) => this.programs.get(k, this.workgroupSize)));
    if (this.poison) await this.programs.get('fill', 64);
  }

  /**
   * Waits until the device has judged every synchronous call so far and throws the first GPU
   * error one of them met (they are otherwise thrown by the next call).
   */
  flush(): Promise<void> {
    return this.ctx.flush('flush');
  }

  /** Checks a synchronous call's arguments; `omega(W, L)` lists the copy of GPU-side random features into the work buffer. */
  private syncInputs(fn: string, a: GpuSyncArgs): { c: Checked; q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; omega: (W: GPUBuffer, L: Layout) => Copy[] } {
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const c = this.common(fn, a as unknown as CausalArgs, undefined, true);
    const { b, h, t, d, m, dv } = c.dims;
    const q = this.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4);
    const k = this.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4);
    const v = this.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4);
    const src = c.omegaBuf;
    return { c, q, k, v, omega: (W, L) => (src ? [{ src, srcOffset: 0, dst: W, dstOffset: L.omegaOff * 4, size: h * m * d * 4 }] : []) };
  }

  private byteOffset(fn: string, name: string, x: unknown): number {
    if (x === undefined) return 0;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x % 4 !== 0)
      throw new ArgError(`${fn}: ${name} must be a non-negative multiple of 4 (bytes), got ${String(x)}`);
    return x;
  }

  /**
   * Causal forward on GPUBuffers that encodes and submits without waiting (for graph builders
   * such as TF.js ops, whose kernels must return synchronously). `state` (optional) and the
   * returned state are in the GPU layout (`gpuStateWords`). With `pack`, the state is written
   * into `out` after the `[b, h, t, dv]` output, at byte `stateOffset`; otherwise it is a
   * buffer of its own. Returned buffers come from the pool: `release` them.
   */
  causalForwardSync(a: GpuSyncArgs & { state?: GPUBuffer; pack?: boolean }): { out: GPUBuffer; state: GPUBuffer; stateOffset: number } {
    const fn = 'causalForwardSync';
    return this.ctx.scopedSync(fn, () => {
      const { c, q, k, v, omega } = this.syncInputs(fn, a);
      const { b, h, t, m, dv } = c.dims;
      const bh = b * h;
      const sw = stateWords(m, dv);
      const state = a.state === undefined ? undefined : this.checkGpuBuffer(fn, 'state', a.state, bh * sw * 4);
      const kind = this.forwardKind();
      const L = layout(kind, c, !!state, false, this.env);
      const W = this.workBuffer(fn, L, c, c.dims);
      const outWords = bh * t * dv;
      const out = this.newOutput(outWords + (a.pack ? bh * sw : 0), `${fn} out`, true);
      const st = a.pack ? out : this.newOutput(bh * sw, `${fn} state`, true);
      const stateOffset = a.pack ? outWords * 4 : 0;
      const before = omega(W, L);
      if (state) before.push({ src: state, srcOffset: 0, dst: W, dstOffset: L.stateInOff * 4, size: bh * sw * 4 });
      try {
        this.dispatchSync(fn, kind, c, L, { hasState: !!state, hasDState: false }, [W, q, k, v, out], before, [
          { src: W, srcOffset: L.stateOutOff * 4, dst: st, dstOffset: stateOffset, size: bh * sw * 4 },
        ]);
      } catch (e) {
        this.release(out);
        if (st !== out) this.release(st);
        throw e;
      } finally {
        this.release(W);
      }
      this.stats = { ioBytes: 4 * bh * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
      return { out, state: st, stateOffset };
    });
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
    const fn = 'causalBackwardSync';
    return this.ctx.scopedSync(fn, () => {
      const { c, q, k, v, omega } = this.syncInputs(fn, a);
      const { b, h, t, d, m, dv } = c.dims;
      const bh = b * h;
      const sw = stateWords(m, dv);
      const g = m * dv + m;
      const dOut = this.checkGpuBuffer(fn, 'dOut', a.dOut, bh * t * dv * 4);
      const stateIn = a.stateIn === undefined ? undefined : this.checkGpuBuffer(fn, 'stateIn', a.stateIn, bh * sw * 4);
      const dOff = this.byteOffset(fn, 'dStateOffset', a.dStateOffset);
      const dState = a.dState === undefined ? undefined : this.checkGpuBuffer(fn, 'dState', a.dState, dOff + bh * sw * 4);
      const kind = this.backwardKind();
      const L = layout(kind, c, !!stateIn, !!dState, this.env);
      const W = this.workBuffer(fn, L, c, c.dims);
      const before = omega(W, L);
      if (stateIn) before.push({ src: stateIn, srcOffset: 0, dst: W, dstOffset: L.stateInOff * 4, size: bh * sw * 4 });
      for (let i = 0; dState && i < bh; i++)
        before.push({ src: dState, srcOffset: dOff + i * sw * 4, dst: W, dstOffset: (L.dStateOff + i * g) * 4, size: g * 4 });
      const outs = [this.newOutput(bh * t * d, `${fn} dq`, true), this.newOutput(bh * t * d, `${fn} dk`, true), this.newOutput(bh * t * dv, `${fn} dv`, true)];
      const dStateIn = this.acquire(bh * sw * 4, IO, `${fn} dStateIn`, true);
      const after: Array<Copy | { clear: GPUBuffer }> = [{ clear: dStateIn }];
      for (let i = 0; i < bh; i++) after.push({ src: W, srcOffset: (L.stateOutOff + i * (g + 1)) * 4, dst: dStateIn, dstOffset: i * sw * 4, size: g * 4 });
      try {
        this.dispatchSync(fn, kind, c, L, { hasState: !!stateIn, hasDState: !!dState }, [W, q, k, v, dOut, ...outs], before, after);
      } catch (e) {
        for (const o of [...outs, dStateIn]) this.release(o);
        throw e;
      } finally {
        this.release(W);
      }
      this.stats = { ioBytes: 4 * bh * t * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
      return { dq: outs[0], dk: outs[1], dv: outs[2], dStateIn };
    });
  }

  /** Bidirectional forward on GPUBuffers, encoded and submitted without waiting. */
  bidirectionalForwardSync(a: GpuSyncArgs): { out: GPUBuffer } {
    const fn = 'bidirectionalForwardSync';
    return this.ctx.scopedSync(fn, () => {
      const { c, q, k, v, omega } = this.syncInputs(fn, a);
      const { b, h, t, dv } = c.dims;
      const kind = this.bidirectionalKind(false);
      const L = layout(kind, c, false, false, this.env);
      const W = this.workBuffer(fn, L, c, c.dims);
      const out = this.newOutput(b * h * t * dv, `${fn} out`, true);
      try {
        this.dispatchSync(fn, kind, c, L, { hasState: false, hasDState: false }, [W, q, k, v, out], omega(W, L), []);
      } catch (e) {
        this.release(out);
        throw e;
      } finally {
        this.release(W);
      }
      this.stats = { ioBytes: 4 * b * h * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
      return { out };
    });
  }

  /** Gradients of `bidirectionalForwardSync`, encoded and submitted without waiting. */
  bidirectionalBackwardSync(a: GpuSyncArgs & { dOut: GPUBuffer }): { dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer } {
    const fn = 'bidirectionalBackwardSync';
    return this.ctx.scopedSync(fn, () => {
      const { c, q, k, v, omega } = this.syncInputs(fn, a);
      const { b, h, t, d, dv } = c.dims;
      const n = b * h * t;
      const dOut = this.checkGpuBuffer(fn, 'dOut', a.dOut, n * dv * 4);
      const kind = this.bidirectionalKind(true);
      const L = layout(kind, c, false, false, this.env);
      const W = this.workBuffer(fn, L, c, c.dims);
      const outs = [this.newOutput(n * d, `${fn} dq`, true), this.newOutput(n * d, `${fn} dk`, true), this.newOutput(n * dv, `${fn} dv`, true)];
      try {
        this.dispatchSync(fn, kind, c, L, { hasState: false, hasDState: false }, [W, q, k, v, dOut, ...outs], omega(W, L), []);
      } catch (e) {
        for (const o of outs) this.release(o);
        throw e;
      } finally {
        this.release(W);
      }
      this.stats = { ioBytes: 4 * n * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
      return { dq: outs[0], dk: outs[1], dv: outs[2] };
    });
  }

  // ---------------------------------------------------------------- decoding

  /**
   * One decoding step: `q, k: [b, h, d]`, `v: [b, h, dv]` → `out: [b, h, dv]` and the next
   * state. It is the causal forward kernel at T = 1 (crate/src/linear_attn/README.md).
   */
  recurrentStep(a: StepArgs): Promise<CausalForwardResult> {
    const fn = 'recurrentStep';
    return this.guard(() => {
      if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
      const dims = checkDims(fn, { ...(a.dims as object), t: 1 });
      const c = this.common(fn, { ...a, dims, chunk: 1 });
      const state = checkState(fn, 'state', a.state, dims, c.feature);
      return this.forwardImpl(fn, { ...a, dims, chunk: 1, state }, c);
    });
  }
}

/** The inputs a result depends on, as named in error messages. */
function inputNames(c: Checked, backward = false): string {
  return `${c.feature === 'identity' ? 'phiQ/phiK/v' : 'q/k/v'}${backward ? '/dOut' : ''}`;
}

/** Creates a WebGPU kernel backend (acquires a device unless `opts.device` is given). */
export function initWebGPU(opts: WebGPUOptions = {}): Promise<WebGPUKernels> {
  return WebGPUKernels.create(opts);
}

export { WebGPUError };

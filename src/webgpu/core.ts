/// <reference types="@webgpu/types" />
/**
 * What every WebGPU kernel host shares (internal: `WebGPUKernels` in ./kernels.ts is the public
 * class): the options, the buffer pool (./buffers.ts), argument checks, the work buffer, the
 * dispatch plans (./plan.ts) and their encoding, and the per-call statistics. The kernels
 * themselves are in ./causal_forward.ts, ./causal_backward.ts, ./bidirectional.ts and
 * ./recurrent_step.ts, as functions of this core.
 */
import { ArgError, checkArray, checkChunk, checkDims, checkEps, checkFavorRange, checkFeature, checkOmega } from '../kernels/validate.ts';
import type { AttnState, CausalArgs, Dims, FeatureMap, StateGrad } from '../kernels/types.ts';
import { align, BufferPool, COPY_DST, IO, STORAGE, UNIFORM } from './buffers.ts';
import type { GpuContext, AcquireOptions } from './device.ts';
import { TILED_MIN_WORKGROUP, type ProgramCache, type Program } from './program.ts';
import { PARAM_BYTES, plan, writeParams, type Checked, type Copy, type Layout, type PlanEnv } from './plan.ts';
import { toGpuState } from './state.ts';
import type { KernelName } from './shaders/index.ts';

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
   * The per-chunk products as workgroup-memory tiles with 4 × 4 register blocks
   * (shaders/tile.wgsl) instead of one element per invocation over storage. Default true when
   * `workgroupSize` is 64 or more (it needs an 8 × 8 grid of invocations); `false` keeps the
   * plain loops, the fallback.
   */
  tiled?: boolean;
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
/** @internal The shared state and machinery of one WebGPU backend instance. */
export class GpuCore {
  readonly buffers: BufferPool;
  stats: GpuCallStats = { ioBytes: 0, scratchBytes: 0 };
  /** Dispatches the most recent kernel call was split into. */
  lastSteps = 0;
  disposed = false;
  readonly workgroupSize: number;
  readonly poison: boolean;
  readonly compensate: boolean;
  readonly tiled: boolean;
  readonly chunkParallel: boolean;
  readonly chunkWindow: number | undefined;
  readonly windowBytes: number;
  /** What the dispatch plans depend on (./plan.ts). */
  readonly env: PlanEnv;

  constructor(
    readonly ctx: GpuContext,
    readonly programs: ProgramCache,
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
    this.tiled = opts.tiled ?? this.workgroupSize >= TILED_MIN_WORKGROUP;
    if (this.tiled && this.workgroupSize < TILED_MIN_WORKGROUP) {
      throw new ArgError(`WebGPUKernels: tiled needs a workgroupSize of ${TILED_MIN_WORKGROUP} or more, got workgroupSize ${this.workgroupSize}`);
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
      tiled: this.tiled,
    };
  }

  /** The kernels that run the causal forward and backward (see `chunkParallel`). */
  forwardKind(): KernelName {
    return this.chunkParallel ? 'causal_forward_parallel' : 'causal_forward';
  }

  backwardKind(): KernelName {
    return this.chunkParallel ? 'causal_backward_parallel' : 'causal_backward';
  }

  bidirectionalKind(backward: boolean): KernelName {
    const k = backward ? 'bidirectional_backward' : 'bidirectional_forward';
    return this.chunkParallel ? `${k}_parallel` : k;
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

  alive(fn: string): void {
    if (this.disposed) throw new Error(`${fn}: this WebGPU kernel instance was disposed`);
    this.ctx.alive(fn);
  }

  acquire(bytes: number, usage: number, label: string, exact = false): GPUBuffer {
    return this.buffers.acquire(bytes, usage, label, exact);
  }

  upload(a: Float32Array, label: string): GPUBuffer {
    return this.buffers.upload(a, label);
  }

  download(buf: GPUBuffer, words: number, offsetWords = 0): Promise<Float32Array> {
    return this.buffers.download(buf, words, offsetWords);
  }

  // ---------------------------------------------------------------- checks

  common(fn: string, a: CausalArgs, featureOverride?: 'identity', gpu = false): Checked {
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

  checkBinding(fn: string, name: string, bytes: number): void {
    const lim = this.ctx.limits;
    const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    if (bytes > max) {
      throw new ArgError(
        `${fn}: ${name} needs a ${(bytes / 2 ** 20).toFixed(1)} MiB storage binding, more than this device's ${(max / 2 ** 20).toFixed(0)} MiB limit (maxStorageBufferBindingSize); split the batch or the sequence`,
      );
    }
  }

  checkGpuBuffer(fn: string, name: string, buf: unknown, bytes: number): GPUBuffer {
    const b = buf as GPUBuffer;
    if (typeof b !== 'object' || b === null || typeof b.size !== 'number' || typeof b.usage !== 'number')
      throw new ArgError(`${fn}: ${name} must be a GPUBuffer`);
    if (b.size < bytes) throw new ArgError(`${fn}: ${name} must hold at least ${bytes} bytes, got a GPUBuffer of ${b.size}`);
    if (!(b.usage & STORAGE)) throw new ArgError(`${fn}: ${name} must have GPUBufferUsage.STORAGE`);
    return b;
  }

  // ---------------------------------------------------------------- layout and dispatch

  /** Writes the small inputs (omega, states) into a new work buffer. */
  workBuffer(fn: string, L: Layout, c: Checked, dims: Dims, state?: AttnState, dState?: StateGrad): GPUBuffer {
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

  pendingFills: Array<{ buf: GPUBuffer; words: number; start: number }> = [];

  /** Queues a NaN fill of `words` words of `buf` from word `start` (encoded before the next kernel). */
  fill(buf: GPUBuffer, words: number, start = 0): void {
    this.pendingFills.push({ buf, words, start });
  }

  /**
   * Encodes pending NaN fills, then `before` (copies into the work buffer), the kernel's
   * dispatches and `after` (copies out of it) into `enc`. Returns the uniform buffers to release
   * once the encoder is submitted.
   */
  encode(
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
  async dispatch(fn: string, kind: KernelName, c: Checked, L: Layout, hasState: boolean, hasDState: boolean, buffers: GPUBuffer[]): Promise<void> {
    const device = this.ctx.device;
    const prog = await this.programs.get(kind, this.workgroupSize, this.tiled);
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
  dispatchSync(
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
    const prog = this.programs.getSync(kind, this.workgroupSize, this.tiled);
    const fillProg = this.pendingFills.length ? this.programs.getSync('fill', 64) : undefined;
    const enc = device.createCommandEncoder({ label: fn });
    const temps = this.encode(enc, fn, prog, fillProg, kind, c, L, flags, buffers, before, after);
    device.queue.submit([enc.finish()]);
    for (const u of temps) this.release(u);
  }

  /** Runs `body` and releases every buffer it acquired through `use`, whatever happens. */
  async run<T>(fn: string, body: (use: (b: GPUBuffer) => GPUBuffer) => Promise<T>): Promise<T> {
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

  newOutput(words: number, label: string, exact = false): GPUBuffer {
    const b = this.acquire(words * 4, IO, label, exact);
    if (this.poison) this.fill(b, words);
    return b;
  }

  // ---------------------------------------------------------------- errors

  /** Validation errors are thrown synchronously-in-Promise; wasm-style ArgErrors stay ArgErrors. */
  guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return body();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---------------------------------------------------------------- synchronous, GPU-resident

  /**
   * Builds the pipelines the synchronous calls use, so that their first call does not compile
   * (and so that a shader that does not compile on this device is reported here, awaited).
   */
  async prepare(): Promise<void> {
    const kinds: KernelName[] = [this.forwardKind(), this.backwardKind(), this.bidirectionalKind(false), this.bidirectionalKind(true)];
    await Promise.all(kinds.map((k) => this.programs.get(k, this.workgroupSize, this.tiled)));
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
  syncInputs(fn: string, a: GpuSyncArgs): { c: Checked; q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; omega: (W: GPUBuffer, L: Layout) => Copy[] } {
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const c = this.common(fn, a as unknown as CausalArgs, undefined, true);
    const { b, h, t, d, m, dv } = c.dims;
    const q = this.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4);
    const k = this.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4);
    const v = this.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4);
    const src = c.omegaBuf;
    return { c, q, k, v, omega: (W, L) => (src ? [{ src, srcOffset: 0, dst: W, dstOffset: L.omegaOff * 4, size: h * m * d * 4 }] : []) };
  }

  byteOffset(fn: string, name: string, x: unknown): number {
    if (x === undefined) return 0;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x % 4 !== 0)
      throw new ArgError(`${fn}: ${name} must be a non-negative multiple of 4 (bytes), got ${String(x)}`);
    return x;
  }

  // ---------------------------------------------------------------- decoding
}

/** The inputs a result depends on, as named in error messages. */
export function inputNames(c: Checked, backward = false): string {
  return `${c.feature === 'identity' ? 'phiQ/phiK/v' : 'q/k/v'}${backward ? '/dOut' : ''}`;
}

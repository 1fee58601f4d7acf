/// <reference types="@webgpu/types" />
/**
 * Acquiring or wrapping a GPUDevice, and turning WebGPU's asynchronous error reporting
 * (error scopes, uncaptured errors, device loss) into thrown Errors that name the kernel.
 */

export interface AcquireOptions {
  /** Use this device (not destroyed by `dispose`). */
  device?: GPUDevice;
  /** Use this adapter to request a device. */
  adapter?: GPUAdapter;
  powerPreference?: GPUPowerPreference;
  /**
   * Node only (npm `webgpu`, Dawn): Dawn backends to try, in order, e.g. `['vulkan']`,
   * `['opengles']`. Default: `SLIM_WEBGPU_BACKEND` (comma-separated) or `['default', 'opengles']`.
   */
  nodeBackends?: string[];
  /**
   * Request the adapter's maxima for the limits the kernels use (storage binding size, buffer
   * size) instead of WebGPU's defaults. Default true.
   */
  raiseLimits?: boolean;
}

export interface AdapterChoice {
  adapter: GPUAdapter;
  /** e.g. "opengles: llvmpipe (LLVM 15.0.6, 256 bits)" or "vulkan: NVIDIA H200". */
  description: string;
  /** Software rasteriser (llvmpipe, SwiftShader, lavapipe, WARP) or a fallback adapter. */
  software: boolean;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof (globalThis as { window?: unknown }).window === 'undefined';

/** What an adapter (or a device's adapter) is, and whether it is a software rasteriser. */
function describeInfo(info: GPUAdapterInfo | undefined): { text: string; software: boolean } {
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter((x) => x);
  const text = parts.join(' ') || 'unknown adapter';
  const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  return { text, software: fallback || /llvmpipe|swiftshader|lavapipe|softpipe|warp|microsoft basic/i.test(text) };
}

function describeAdapter(a: GPUAdapter, prefix: string): AdapterChoice {
  const { text, software } = describeInfo((a as { info?: GPUAdapterInfo }).info);
  return { adapter: a, description: `${prefix}${text}`, software };
}

async function tryRequest(gpu: GPU, pp: GPUPowerPreference | undefined): Promise<GPUAdapter | null> {
  const a = await gpu.requestAdapter({ powerPreference: pp }).catch(() => null);
  if (a) return a;
  return gpu.requestAdapter({ powerPreference: pp, featureLevel: 'compatibility' } as GPURequestAdapterOptions).catch(() => null);
}

/** Keeps Dawn's GPU objects (and their native instances) alive while devices are in use. */
const nodeInstances: unknown[] = [];

/** Finds an adapter: `navigator.gpu` in browsers (and Deno), npm `webgpu` in Node. Null if none. */
export async function findAdapter(opts: AcquireOptions = {}): Promise<AdapterChoice | null> {
  if (opts.adapter) return describeAdapter(opts.adapter, '');
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) {
    const a = await tryRequest(nav.gpu, opts.powerPreference);
    if (a) return describeAdapter(a, '');
  }
  if (!isNode) return null;
  let mod: { create: (flags: string[]) => GPU; globals: object };
  try {
    const spec = 'webgpu';
    mod = (await import(/* @vite-ignore */ spec)) as typeof mod;
  } catch {
    return null;
  }
  Object.assign(globalThis, mod.globals);
  const env = process.env.SLIM_WEBGPU_BACKEND;
  const backends = opts.nodeBackends ?? (env ? env.split(',') : ['default', 'opengles']);
  for (const b of backends) {
    const gpu = mod.create(b === 'default' ? [] : [`backend=${b}`]);
    const a = await tryRequest(gpu, opts.powerPreference);
    if (a) {
      nodeInstances.push(gpu);
      return describeAdapter(a, `${b}: `);
    }
  }
  return null;
}

export class WebGPUError extends Error {
  override name = 'WebGPUError';
}

/** A device plus error handling. */
export class GpuContext {
  /** Set once the device is lost; every later call throws. */
  lostReason: string | undefined;
  private uncaptured: string[] = [];
  /** Error scopes of synchronous calls still being resolved by the device. */
  private pending = new Set<Promise<void>>();
  /** The first error a synchronous call's scope reported, thrown by the next call or `flush`. */
  private deferred: WebGPUError | undefined;

  constructor(
    readonly device: GPUDevice,
    /** What runs the kernels (adapter description). */
    readonly description: string,
    readonly software: boolean,
    /** Whether `dispose` destroys the device (true when this module created it). */
    private readonly owned: boolean,
  ) {
    device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
    device.addEventListener?.('uncapturederror', (ev) => {
      this.uncaptured.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  static async create(opts: AcquireOptions = {}): Promise<GpuContext> {
    if (opts.device) {
      // GPUDevice.adapterInfo says what runs it (software adapters get short dispatches: see kernels.ts).
      const { text, software } = describeInfo((opts.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo);
      return new GpuContext(opts.device, `caller-supplied GPUDevice: ${text}`, software, false);
    }
    const choice = await findAdapter(opts);
    if (!choice)
      throw new WebGPUError('slim-performer/webgpu: no WebGPU adapter (navigator.gpu missing or it offered none; in Node install the npm package "webgpu")');
    const { adapter } = choice;
    const requiredLimits: Record<string, number> = {};
    if (opts.raiseLimits !== false) {
      for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize'] as const) {
        requiredLimits[k] = adapter.limits[k];
      }
    }
    const device = await adapter.requestDevice({ requiredLimits });
    return new GpuContext(device, choice.description, choice.software, true);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  alive(fn: string): void {
    if (this.lostReason !== undefined) throw new WebGPUError(`${fn}: the WebGPU device was lost (${this.lostReason}); create a new backend`);
  }

  /** Opens the out-of-memory, validation and internal error scopes of a call. */
  private pushScopes(fn: string): void {
    this.alive(fn);
    this.throwDeferred(fn);
    const d = this.device;
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    d.pushErrorScope('internal');
  }

  /** Closes `pushScopes`' scopes: the first error they caught, named after the call (or none). */
  private async popScopes(fn: string): Promise<WebGPUError | undefined> {
    const d = this.device;
    const errs = await Promise.all([d.popErrorScope(), d.popErrorScope(), d.popErrorScope()]);
    const names = ['internal', 'validation', 'out-of-memory'];
    const e = errs.findIndex((x) => x !== null);
    return e >= 0 ? new WebGPUError(`${fn}: WebGPU ${names[e]} error: ${errs[e]!.message}`) : undefined;
  }

  /**
   * Runs `body` inside validation and out-of-memory error scopes and throws if either caught
   * something (WebGPU reports these asynchronously and would otherwise only log them).
   */
  async scoped<T>(fn: string, body: () => T | Promise<T>): Promise<T> {
    this.pushScopes(fn);
    let result: T;
    try {
      result = await body();
    } finally {
      const err = await this.popScopes(fn);
      // biome-ignore lint/correctness/noUnsafeFinally: a device error is the cause of whatever the body threw, so it replaces that error
      if (err) throw err;
    }
    this.alive(fn);
    if (this.uncaptured.length) {
      const msg = this.uncaptured.splice(0).join('; ');
      throw new WebGPUError(`${fn}: WebGPU error: ${msg}`);
    }
    return result;
  }

  /**
   * Runs `body` (which only encodes and submits) inside error scopes without waiting for them:
   * an error the device reports later is thrown by the next call on this context, or by `flush`.
   * Host-side errors of `body` are thrown at once.
   */
  scopedSync<T>(fn: string, body: () => T): T {
    this.pushScopes(fn);
    try {
      return body();
    } finally {
      const p = this.popScopes(fn).then(
        (err) => {
          if (err) this.deferred ??= err;
        },
        (err: unknown) => {
          this.deferred ??= new WebGPUError(`${fn}: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
    }
  }

  private throwDeferred(fn: string): void {
    if (this.uncaptured.length) this.deferred ??= new WebGPUError(`WebGPU error: ${this.uncaptured.splice(0).join('; ')}`);
    const e = this.deferred;
    if (!e) return;
    this.deferred = undefined;
    throw new WebGPUError(`${fn}: an earlier call failed on the GPU: ${e.message}`);
  }

  /** Waits until the device has judged every synchronous call so far; throws the first error. */
  async flush(fn = 'flush'): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    this.alive(fn);
    this.throwDeferred(fn);
  }

  dispose(): void {
    if (this.owned) this.device.destroy();
  }
}

/**
 * A pool of kernel instances, one per worker (Node `worker_threads`, Web Workers in browsers),
 * behind the kernel API made async. Each call's `b·h` slices are split into contiguous ranges,
 * one per worker, run concurrently and joined (see split.ts): the results equal a single
 * instance's bit for bit. No SharedArrayBuffer is needed (inputs are copied into each worker,
 * results transferred back), so it works without cross-origin isolation.
 *
 * `threads`: a number, or 'auto' (default): the machine's cores (os.availableParallelism /
 * navigator.hardwareConcurrency) capped at 8, or 1 where workers are unavailable (Cloudflare
 * workerd, some sandboxes). With 1 thread the kernels run in the calling thread, no worker.
 * `pool.info` reports what was picked and why.
 */
import type { AttentionKernels } from '../kernels/interface.ts';
import type {
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
} from '../kernels/types.ts';
import { init, type InitOptions, type Kernels } from '../wasm/kernels.ts';
import { ArgError } from '../kernels/validate.ts';
import type { WasmBinary } from '../wasm/loader.ts';
import type { FromWorker, Method, ToWorker } from './protocol.ts';
import { buffers, join, ranges, sliceArgs } from './split.ts';

export interface PoolOptions extends InitOptions {
  /** Workers: a positive integer, or 'auto' (default; see the module comment). */
  threads?: number | 'auto';
  /** Most workers 'auto' picks (default 8). */
  maxThreads?: number;
}

export type PoolMode = 'worker_threads' | 'web-workers' | 'in-thread';

export interface PoolInfo {
  /** Kernel instances working in parallel. */
  threads: number;
  mode: PoolMode;
  /** Cores the runtime reports, or null where it reports none. */
  hardwareThreads: number | null;
  /** Which wasm binary every instance runs. */
  binary: WasmBinary;
  /** Why this many threads, e.g. "auto: 2 cores (os.availableParallelism)". */
  reason: string;
}

export interface ThreadSupport {
  mode: Exclude<PoolMode, 'in-thread'> | null;
  hardwareThreads: number | null;
  source: string;
}

const MAX_AUTO = 8;

function isNodeLike(): boolean {
  return typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
}

async function nodeImport<T>(spec: string): Promise<T | null> {
  try {
    return (await import(/* @vite-ignore */ spec)) as T;
  } catch {
    return null;
  }
}

/** What this runtime offers: the worker kind and the core count. */
export async function detectThreads(): Promise<ThreadSupport> {
  if (isNodeLike()) {
    const wt = await nodeImport<typeof import('node:worker_threads')>('node:worker_threads');
    const os = await nodeImport<typeof import('node:os')>('node:os');
    const hw = os ? (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length) : null;
    if (wt && typeof wt.Worker === 'function') return { mode: 'worker_threads', hardwareThreads: hw, source: 'os.availableParallelism' };
  }
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  const hw = typeof nav?.hardwareConcurrency === 'number' && nav.hardwareConcurrency > 0 ? nav.hardwareConcurrency : null;
  if (typeof (globalThis as { Worker?: unknown }).Worker === 'function')
    return { mode: 'web-workers', hardwareThreads: hw, source: 'navigator.hardwareConcurrency' };
  return { mode: null, hardwareThreads: hw, source: 'no Worker in this runtime' };
}

interface Slot {
  post(msg: ToWorker, transfer?: ArrayBuffer[]): void;
  terminate(): void;
  /** Keep the process alive while a call is pending (Node). */
  busy(on: boolean): void;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  ready: Promise<WasmBinary>;
  /** Set when the worker exited or failed: its calls were rejected, and the pool replaces it. */
  dead?: Error;
  /** Rejects every pending call with `e` (dispose, worker death). */
  fail(e: Error): void;
}

function rebuildError(name: string, message: string): Error {
  if (name === 'ArgError') return new ArgError(message);
  const e = new Error(message);
  if (name && name !== 'Error') e.name = name;
  return e;
}

function wireSlot(
  post: Slot['post'],
  terminate: () => void,
  busy: (on: boolean) => void,
  listen: (f: (m: FromWorker) => void) => void,
  onFail: (f: (e: Error) => void) => void,
): Slot {
  const pending: Slot['pending'] = new Map();
  let readyResolve!: (binary: WasmBinary) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<WasmBinary>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  let inflight = 0;
  const slot: Slot = {
    post,
    terminate,
    busy: (on) => {
      inflight = Math.max(0, inflight + (on ? 1 : -1));
      busy(inflight > 0);
    },
    pending,
    ready,
    fail: (e) => {
      readyReject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
      inflight = 0;
      busy(false);
    },
  };
  ready.catch(() => undefined); // a worker that dies before it is ready is reported by spawn
  listen((m) => {
    if (m.type === 'ready') return readyResolve(m.binary);
    if (m.type === 'error' && m.id === -1) return readyReject(rebuildError(m.name, m.message));
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    slot.busy(false);
    if (m.type === 'result') p.resolve(m.value);
    else p.reject(rebuildError(m.name, m.message));
  });
  onFail((e) => {
    slot.dead ??= e;
    slot.fail(e);
  });
  return slot;
}

async function spawnNode(options: ToWorker & { type: 'init' }): Promise<Slot> {
  const wt = (await nodeImport<typeof import('node:worker_threads')>('node:worker_threads'))!;
  const url = new URL('./worker.ts', import.meta.url);
  let w: import('node:worker_threads').Worker;
  if (url.pathname.endsWith('.ts')) {
    // From the source tree the worker is TypeScript: register tsx inside it first.
    const mod = (await nodeImport<typeof import('node:module')>('node:module'))!;
    const tsx = mod.createRequire(import.meta.url).resolve('tsx/cjs');
    const code = `require(${JSON.stringify(tsx)}); require(${JSON.stringify(decodeURIComponent(url.pathname))});`;
    w = new wt.Worker(code, { eval: true });
  } else {
    w = new wt.Worker(url);
  }
  w.unref();
  const slot = wireSlot(
    (m, t) => w.postMessage(m, t ?? []),
    () => void w.terminate(),
    (on) => (on ? w.ref() : w.unref()),
    (f) => w.on('message', f),
    (f) => {
      w.on('error', (e) =>
        f(
          new Error(
            `slim-performer/parallel: a worker failed (${e?.message ?? String(e)}); its calls are rejected and the pool starts a new worker for the next call`,
          ),
        ),
      );
      w.on('exit', (code) =>
        f(
          new Error(
            `slim-performer/parallel: a worker exited (code ${code}) while calls were pending; they are rejected and the pool starts a new worker for the next call`,
          ),
        ),
      );
    },
  );
  slot.busy(true);
  w.postMessage(options);
  try {
    await slot.ready;
  } finally {
    slot.busy(false);
  }
  return slot;
}

async function spawnWeb(options: ToWorker & { type: 'init' }): Promise<Slot> {
  const w = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  const slot = wireSlot(
    (m, t) => w.postMessage(m, t ?? []),
    () => w.terminate(),
    () => {},
    (f) => w.addEventListener('message', (e) => f(e.data as FromWorker)),
    (f) =>
      w.addEventListener('error', (e) =>
        f(
          new Error(
            `slim-performer/parallel: a worker failed (${(e as ErrorEvent).message ?? e}); its calls are rejected and the pool starts a new worker for the next call`,
          ),
        ),
      ),
  );
  w.postMessage(options);
  await slot.ready;
  return slot;
}

async function workerWasm(w: InitOptions['wasm']): Promise<(ToWorker & { type: 'init' })['options']['wasm']> {
  if (w === undefined) return undefined;
  if (w instanceof URL) return w.href;
  if (typeof Response !== 'undefined' && w instanceof Response) {
    if (!w.ok) throw new Error(`init: fetching the wasm binary failed with HTTP ${w.status}`);
    return new Uint8Array(await w.arrayBuffer());
  }
  return w as Exclude<typeof w, URL | Response>;
}

/** The kernels over a pool of workers; every method returns a Promise. */
export class KernelPool implements AttentionKernels<true> {
  /** Which backend this is: wasm kernels in worker threads. */
  readonly backend = 'pool' as const;
  private slots: Slot[];
  private local: Kernels | undefined;
  private nextId = 1;
  private disposed = false;

  private constructor(
    slots: Slot[],
    local: Kernels | undefined,
    /** What the pool picked and why. */
    readonly info: PoolInfo,
    /** Starts one more worker (to replace one that died). */
    private readonly respawn?: () => Promise<Slot>,
  ) {
    this.slots = slots;
    this.local = local;
  }

  private replaced = 0;

  /** Workers that died (crashed, or were killed) so far and were replaced. */
  get restarts(): number {
    return this.replaced;
  }

  /** Replaces dead workers before a call; throws a clear Error if a new one cannot start. */
  private async revive(): Promise<void> {
    for (let i = 0; i < this.slots.length; i++) {
      const old = this.slots[i];
      if (!old.dead) continue;
      old.terminate();
      let fresh: Slot;
      try {
        fresh = await this.respawn!();
      } catch (e) {
        throw new Error(`slim-performer/parallel: worker ${i} died (${old.dead.message}) and a new one failed to start (${(e as Error).message})`, {
          cause: e,
        });
      }
      if (this.disposed) {
        fresh.terminate();
        throw new Error('slim-performer: this kernel pool was disposed');
      }
      if (this.slots[i] === old) {
        this.slots[i] = fresh;
        this.replaced++;
      } else {
        fresh.terminate(); // another call replaced it meanwhile
      }
    }
  }

  get threads(): number {
    return this.info.threads;
  }

  /** Whether the instances run a SIMD binary (`'simd'` or `'relaxed'`). */
  get simd(): boolean {
    return this.info.binary !== 'scalar';
  }

  /** Which wasm binary the instances run. */
  get binary(): WasmBinary {
    return this.info.binary;
  }

  /** Starts the workers (each loads its own kernel instance) and waits until all are ready. */
  static async create(options: PoolOptions = {}): Promise<KernelPool> {
    const { threads: want = 'auto', maxThreads = MAX_AUTO, ...initOptions } = options;
    if (want !== 'auto' && !(Number.isInteger(want) && want >= 1)) {
      throw new ArgError(`KernelPool.create: threads must be a positive integer or 'auto', got ${String(want)}`);
    }
    if (!(Number.isInteger(maxThreads) && maxThreads >= 1))
      throw new ArgError(`KernelPool.create: maxThreads must be a positive integer, got ${String(maxThreads)}`);
    const support = await detectThreads();
    let threads: number;
    let reason: string;
    if (want === 'auto') {
      if (!support.mode) {
        threads = 1;
        reason = `auto: 1 (${support.source})`;
      } else {
        const hw = support.hardwareThreads ?? 1;
        threads = Math.max(1, Math.min(hw, maxThreads));
        reason = `auto: ${threads} of ${support.hardwareThreads ?? 'unknown'} cores (${support.source}${hw > maxThreads ? `, capped at ${maxThreads}` : ''})`;
      }
    } else {
      if (want > 1 && !support.mode) throw new Error(`KernelPool.create: threads: ${want} was requested but this runtime has no workers (${support.source})`);
      threads = want;
      reason = `requested: ${want}`;
    }
    if (threads === 1) {
      const k = await init(initOptions);
      return new KernelPool([], k, { threads: 1, mode: 'in-thread', hardwareThreads: support.hardwareThreads, binary: k.binary, reason });
    }
    const msg: ToWorker & { type: 'init' } = { type: 'init', options: { simd: initOptions.simd, wasm: await workerWasm(initOptions.wasm) } };
    const spawn = support.mode === 'worker_threads' ? spawnNode : spawnWeb;
    const settled = await Promise.allSettled(Array.from({ length: threads }, () => spawn(msg)));
    const slots = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      for (const s of slots) s.terminate();
      throw failed.reason;
    }
    const binary = await slots[0].ready;
    return new KernelPool(slots, undefined, { threads, mode: support.mode!, hardwareThreads: support.hardwareThreads, binary, reason }, () => spawn(msg));
  }

  private call(slot: Slot, method: Method, args: unknown, transfer: boolean): Promise<unknown> {
    const id = this.nextId++;
    if (slot.dead) return Promise.reject(slot.dead);
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.busy(true);
      try {
        slot.post({ type: 'call', id, method, args }, transfer ? buffers(args) : []);
      } catch (e) {
        slot.pending.delete(id);
        slot.busy(false);
        reject(e as Error);
      }
    });
  }

  private async dispatch(method: Method, args: unknown): Promise<unknown> {
    if (this.disposed) throw new Error('slim-performer: this kernel pool was disposed');
    if (this.local) {
      return (this.local as unknown as Record<Method, (a: unknown) => unknown>)[method](args);
    }
    if (this.slots.some((s) => s.dead)) await this.revive();
    if (this.disposed) throw new Error('slim-performer: this kernel pool was disposed');
    const a = args as Record<string, unknown> | null;
    const dims = a?.dims as { b?: unknown; h?: unknown } | undefined;
    const bh = typeof dims?.b === 'number' && typeof dims?.h === 'number' && Number.isInteger(dims.b) && Number.isInteger(dims.h) ? dims.b * dims.h : 0;
    const parts = bh >= 2 ? ranges(bh, this.slots.length) : [];
    // Whether a call splits depends only on the arrays' lengths, so the first range decides.
    const first = parts.length >= 2 ? sliceArgs(a!, parts[0][0], parts[0][1]) : null;
    if (!first) {
      // Not splittable (one slice, or shapes the kernel will reject): one worker runs it whole,
      // so errors are the kernel's own. Inputs are copied, not transferred.
      return this.call(this.slots[this.nextId % this.slots.length], method, args, false);
    }
    // Post each range as soon as it is cut, so the first workers start while the rest are cut.
    const pending = [this.call(this.slots[0], method, first, true)];
    for (let i = 1; i < parts.length; i++) pending.push(this.call(this.slots[i], method, sliceArgs(a!, parts[i][0], parts[i][1])!, true));
    return join(await Promise.all(pending));
  }

  causalForward(a: CausalForwardArgs): Promise<CausalForwardResult> {
    return this.dispatch('causalForward', a) as Promise<CausalForwardResult>;
  }

  causalBackward(a: CausalBackwardArgs): Promise<CausalGrads> {
    return this.dispatch('causalBackward', a) as Promise<CausalGrads>;
  }

  causalForwardFeatures(a: FeaturesForwardArgs): Promise<CausalForwardResult> {
    return this.dispatch('causalForwardFeatures', a) as Promise<CausalForwardResult>;
  }

  causalBackwardFeatures(a: FeaturesBackwardArgs): Promise<FeatureGrads> {
    return this.dispatch('causalBackwardFeatures', a) as Promise<FeatureGrads>;
  }

  bidirectionalForward(a: CausalArgs): Promise<{ out: Float32Array }> {
    return this.dispatch('bidirectionalForward', a) as Promise<{ out: Float32Array }>;
  }

  bidirectionalBackward(a: BidirectionalBackwardArgs): Promise<BidirectionalGrads> {
    return this.dispatch('bidirectionalBackward', a) as Promise<BidirectionalGrads>;
  }

  /** Stops the workers: calls still running reject (they do not hang), later calls throw. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.local?.dispose();
    this.local = undefined;
    const gone = new Error('slim-performer: the kernel pool was disposed while this call was running');
    for (const s of this.slots) {
      s.dead ??= gone;
      s.fail(gone);
      s.terminate();
    }
    this.slots = [];
  }
}

/** `KernelPool.create(options)`. */
export function createPool(options: PoolOptions = {}): Promise<KernelPool> {
  return KernelPool.create(options);
}

/**
 * The pool's worker: one kernel instance, answering calls from src/parallel/pool.ts.
 * Runs as a Node `worker_threads` worker or a module Web Worker.
 */
import { init, type Kernels } from '../wasm/kernels.ts';
import { buffers } from './split.ts';
import { METHODS, type FromWorker, type ToWorker } from './protocol.ts';

interface Port {
  post(msg: FromWorker, transfer?: ArrayBuffer[]): void;
}

let kernels: Kernels | undefined;

async function handle(port: Port, msg: ToWorker): Promise<void> {
  if (msg.type === 'init') {
    try {
      kernels = await init(msg.options);
      port.post({ type: 'ready', binary: kernels.binary });
    } catch (e) {
      port.post({ type: 'error', id: -1, name: (e as Error).name ?? 'Error', message: String((e as Error).message ?? e) });
    }
    return;
  }
  try {
    if (!kernels) throw new Error('slim-performer/parallel: worker used before init');
    if (!(METHODS as readonly string[]).includes(msg.method)) throw new Error(`slim-performer/parallel: unknown method ${msg.method}`);
    const fn = (kernels as unknown as Record<string, (a: unknown) => unknown>)[msg.method];
    const value = fn.call(kernels, msg.args);
    port.post({ type: 'result', id: msg.id, value }, buffers(value));
  } catch (e) {
    port.post({ type: 'error', id: msg.id, name: (e as Error).name ?? 'Error', message: String((e as Error).message ?? e) });
  }
}

async function nodeParentPort(): Promise<import('node:worker_threads').MessagePort | null> {
  if (typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== 'string') return null;
  const spec = 'node:worker_threads';
  try {
    const wt = (await import(/* @vite-ignore */ spec)) as typeof import('node:worker_threads');
    return wt.parentPort;
  } catch {
    return null;
  }
}

function start(parentPort: import('node:worker_threads').MessagePort | null): void {
  if (parentPort) {
    // Node worker_threads (also Bun and Deno's node:worker_threads)
    const port: Port = { post: (m, t) => parentPort.postMessage(m, t ?? []) };
    parentPort.on('message', (m: ToWorker) => void handle(port, m));
  } else {
    // Web Worker (browsers)
    const self_ = globalThis as unknown as {
      postMessage(m: unknown, t?: Transferable[]): void;
      addEventListener(t: 'message', f: (e: MessageEvent) => void): void;
    };
    const port: Port = { post: (m, t) => self_.postMessage(m, t ?? []) };
    self_.addEventListener('message', (e) => void handle(port, e.data as ToWorker));
  }
}

// No top-level await: from the source tree this file also loads through a CommonJS hook (tsx/cjs).
void nodeParentPort().then(start);

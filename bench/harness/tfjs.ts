/**
 * TF.js wasm backend setup shared by the tfjs-* methods: SIMD, single thread, .wasm files loaded
 * from node_modules, gradients registered, malloc failures turned into errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { register, createRequire } from 'node:module';
import path from 'node:path';
import type { Measured } from './types.ts';

const require = createRequire(import.meta.url);
let ready: Promise<void> | null = null;

/**
 * tfjs-core's Node (CJS) bundle registers no gradients; they only ship in its ESM build
 * (dist/register_all_gradients.js), whose extension-less relative imports Node rejects.
 * A resolve hook (tfjs-esm-hooks.mjs) fixes those; the gradients land in tfjs-core's global
 * gradient registry, which both builds share (as they share the global engine).
 */
async function registerGradients(): Promise<void> {
  register('./tfjs-esm-hooks.mjs', import.meta.url);
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js' as string);
}

/**
 * tfjs-backend-wasm's `move` does not check `_malloc`'s result: a failed allocation returns 0
 * and the tensor silently aliases address 0. Turn that into an "OOM" error.
 */
function guardMalloc(): void {
  const w = (tf.backend() as any).wasm;
  if (!w || w.__guarded) return;
  // Module._malloc is a lazy stub that replaces itself with asm.malloc on first call, which
  // would drop a wrapper around it: wrap the raw export instead.
  const malloc: (n: number) => number = w.asm?.malloc ?? w._malloc.bind(w);
  w._malloc = (n: number) => {
    const p = malloc(n);
    if (p === 0 && n > 0) throw new Error(`OOM: wasm malloc(${n}) failed, heap ${w.HEAPU8.length} bytes`);
    return p;
  };
  w.__guarded = true;
}

/**
 * tf.profile times each kernel with backend.time(), which tfjs-backend-wasm declares async: an
 * error inside a kernel (OOM) becomes an unhandled rejection, which the emscripten module turns
 * into a process crash. Run the kernel synchronously instead so errors propagate to the caller.
 */
function syncTimer(): void {
  const b = tf.backend() as any;
  b.time = (f: () => void) => {
    const start = performance.now();
    f();
    return Promise.resolve({ kernelMs: performance.now() - start });
  };
}

/**
 * For a wasm backend set up elsewhere (bench/training.ts, bench/training/step.ts): the same
 * synchronous kernel timer, malloc guard and no per-kernel output checks as the methods here.
 */
export function hardenWasmBackend(): void {
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  guardMalloc();
  syncTimer();
}

async function activate(): Promise<void> {
  // Flags are reset by engine.reset(); set them each time.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // single thread (Node has none anyway)
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false); // tf.profile would otherwise read every output
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs wasm backend failed to initialise');
  await tf.ready();
  guardMalloc();
  syncTimer();
}

export function tfjsReady(): Promise<void> {
  if (!ready) {
    ready = (async () => {
      const wasmMod = await import('@tensorflow/tfjs-backend-wasm');
      const dir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
      wasmMod.setWasmPaths(dir); // a file path: in Node the .wasm is read with fs
      await registerGradients();
      await activate();
    })();
  }
  return ready;
}

/** Drop every tensor and the wasm instance (its heap never shrinks), then start a fresh one. */
export async function tfjsReset(): Promise<void> {
  tf.engine().reset();
  await activate();
}

/** Current wasm heap size in bytes (a high-water mark: wasm memory never shrinks). */
export function wasmHeapBytes(): number {
  return (tf.backend() as any)?.wasm?.HEAPU8?.length ?? 0;
}

/** After a case: a heap grown past 1 GiB stays allocated; start a fresh wasm instance instead. */
export async function tfjsTrim(): Promise<void> {
  if (wasmHeapBytes() > 1024 ** 3) await tfjsReset();
}

/**
 * A TF.js method's measurement: fn once under tf.profile. Peak = the engine's largest tensor
 * byte count seen after any kernel during the call (includes tensors alive before the call,
 * e.g. a method's mask); the wasm heap's size afterwards is the call's high-water mark.
 */
export async function profiledRun(fn: () => unknown): Promise<Measured> {
  const t0 = performance.now();
  const info = await tf.profile(() => {
    fn();
    return [] as tf.Tensor[];
  });
  const ms = performance.now() - t0;
  return { peakBytes: info.peakBytes, ms, warmed: true, detail: { wasmHeapHighWaterBytes: wasmHeapBytes(), profileNewBytes: info.newBytes } };
}

export { tf };

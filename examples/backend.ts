/**
 * Picks the TF.js backend for the Node examples and benchmarks: 'wasm' (SIMD, single thread,
 * .wasm files read from node_modules) when it loads, else 'cpu'.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Sets the backend ('wasm' unless `prefer` is 'cpu' or wasm fails) and returns its name. */
export async function useBackend(prefer: 'wasm' | 'cpu' = 'wasm'): Promise<string> {
  if (prefer === 'wasm') {
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep);
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      if (await tf.setBackend('wasm')) {
        await tf.ready();
        return 'wasm';
      }
    } catch {
      /* fall through to cpu */
    }
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}

/** Bytes of the TF.js wasm backend's heap (0 on other backends; a high-water mark). */
export function tfjsWasmHeapBytes(): number {
  return (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length ?? 0;
}

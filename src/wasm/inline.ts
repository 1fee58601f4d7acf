/**
 * `slim-performer/inline`: the core API with the three wasm binaries inlined as base64, for
 * environments that cannot fetch or read files (single-file bundles, some sandboxes, data: URLs).
 * `init()` compiles the best inlined binary the engine validates (relaxed SIMD, SIMD, scalar);
 * `init({ wasm })` still accepts any other source. Runtimes that forbid compiling from bytes
 * (Cloudflare workerd) need the core entry with a precompiled `WebAssembly.Module` instead.
 *
 * Costs ~4/3 of the binaries' size in JavaScript; prefer the core entry where files can be served.
 */
import { RELAXED_BASE64, SCALAR_BASE64, SIMD_BASE64 } from './inline_data.ts';
import { init as initFromSource, type InitOptions, type Kernels } from './kernels.ts';
import { chooseBinary } from './loader.ts';

export * from '../index.ts';

function decode(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Whether this build carries the binaries (false only when run from the source tree). */
export const wasmInlined: boolean = RELAXED_BASE64 !== null && SIMD_BASE64 !== null && SCALAR_BASE64 !== null;

/** Like the core `init`, but the default source is the inlined binary. */
export async function init(options: InitOptions = {}): Promise<Kernels> {
  if (options.wasm !== undefined || !wasmInlined) return initFromSource(options);
  const data = { relaxed: RELAXED_BASE64, simd: SIMD_BASE64, scalar: SCALAR_BASE64 }[chooseBinary(options.simd)];
  return initFromSource({ ...options, wasm: decode(data as string) });
}

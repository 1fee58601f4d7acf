/** The loader: SIMD detection, both binaries, every kind of source, clear errors. */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { init, simdSupported } from '../src/index.ts';
import { binaryName } from '../src/wasm/loader.ts';
import { makeProblem } from './util/problems.ts';

const dir = process.env.SLIM_WASM_DIR ?? resolve(import.meta.dirname, '../wasm');
const path = (simd: boolean) => resolve(dir, binaryName(simd));

async function works(k: Awaited<ReturnType<typeof init>>) {
  const p = makeProblem('favor', { b: 1, h: 1, t: 5, d: 4, m: 4, dv: 2 }, 1);
  expect(k.causalForward(p).out.every(Number.isFinite)).toBe(true);
  k.dispose();
}

describe('loader', () => {
  it('detects SIMD and picks the SIMD binary by default', async () => {
    expect(simdSupported()).toBe(true);
    const k = await init();
    expect(k.simd).toBe(true);
    await works(k);
  });

  it('loads the scalar binary on request', async () => {
    const k = await init({ simd: false });
    expect(k.simd).toBe(false);
    await works(k);
  });

  it('accepts bytes, an ArrayBuffer, a compiled Module, a file URL and a path', async () => {
    const bytes = new Uint8Array(await readFile(path(true)));
    const module = await WebAssembly.compile(bytes);
    for (const wasm of [bytes, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), module, pathToFileURL(path(false)), path(false)]) {
      await works(await init({ wasm }));
    }
  });

  it('both binaries export the same kernels, and only one has SIMD', async () => {
    const names = async (simd: boolean) => {
      const m = await WebAssembly.compile(await readFile(path(simd)));
      return WebAssembly.Module.exports(m).map((e) => e.name).sort();
    };
    expect(await names(true)).toEqual(await names(false));
    expect((await names(true)).filter((n) => n.startsWith('sp_'))).toEqual([
      'sp_alloc',
      'sp_bidirectional_backward',
      'sp_bidirectional_forward',
      'sp_causal_backward',
      'sp_causal_forward',
      'sp_causal_unroll',
      'sp_free',
      'sp_heap_bytes',
      'sp_live_bytes',
      'sp_peak_bytes',
      'sp_recurrent_step',
      'sp_reset_peak',
      'sp_simd',
    ]);
  });

  it('rejects what is not a kernel binary, clearly', async () => {
    await expect(init({ wasm: 42 as never })).rejects.toThrow(/wasm must be a URL, a path, bytes, a Response or a WebAssembly.Module/);
    const empty = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
    await expect(init({ wasm: empty })).rejects.toThrow(/not a slim-performer kernel binary/);
    await expect(init({ wasm: resolve(dir, 'missing.wasm') })).rejects.toThrow(/ENOENT/);
  });
});

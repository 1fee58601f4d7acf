/** The loader: SIMD / relaxed-SIMD detection, the three binaries, every kind of source, clear errors. */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bestBinary, init, relaxedSimdSupported, simdSupported, type SimdOption, type WasmBinary } from '../src/index.ts';
import { binaryName, chooseBinary } from '../src/wasm/loader.ts';
import { makeProblem } from './util/problems.ts';

const dir = process.env.SLIM_WASM_DIR ?? resolve(import.meta.dirname, '../wasm');
const path = (binary: WasmBinary | boolean) => resolve(dir, binaryName(binary));
const nodeMajor = Number(process.versions.node.split('.')[0]);

async function works(k: Awaited<ReturnType<typeof init>>) {
  const p = makeProblem('favor', { b: 1, h: 1, t: 5, d: 4, m: 4, dv: 2 }, 1);
  expect(k.causalForward(p).out.every(Number.isFinite)).toBe(true);
  k.dispose();
}

describe('loader', () => {
  it('detects SIMD and relaxed SIMD and picks the best binary by default', async () => {
    expect(simdSupported()).toBe(true);
    // Node 21+ by default, Node 20 behind the flag vitest.config.ts passes.
    expect(relaxedSimdSupported()).toBe(nodeMajor >= 21 || process.execArgv.includes('--experimental-wasm-relaxed-simd'));
    expect(bestBinary()).toBe(relaxedSimdSupported() ? 'relaxed' : 'simd');
    const k = await init();
    expect(k.binary).toBe(bestBinary());
    expect(k.simd).toBe(true);
    await works(k);
  });

  it('loads each binary on request, and the module reports which it is', async () => {
    const cases: [SimdOption, WasmBinary][] = [
      [true, 'simd'],
      [false, 'scalar'],
      ...(relaxedSimdSupported() ? [['relaxed', 'relaxed'] as [SimdOption, WasmBinary]] : []),
    ];
    for (const [simd, binary] of cases) {
      const k = await init({ simd });
      expect(k.binary).toBe(binary);
      expect(k.simd).toBe(binary !== 'scalar');
      await works(k);
    }
    // A given source decides: the relaxed bytes are the relaxed binary whatever simd says.
    if (relaxedSimdSupported()) {
      const k = await init({ simd: false, wasm: path('relaxed') });
      expect(k.binary).toBe('relaxed');
      await works(k);
    }
  });

  it('refuses a bad simd option, naming it and the choices', async () => {
    await expect(init({ simd: 'fast' as never })).rejects.toThrow(/init: simd must be 'relaxed', true, false or absent, got 'fast'/);
    expect(() => chooseBinary(1)).toThrow(/simd must be 'relaxed', true, false or absent, got 1/);
  });

  it('accepts bytes, an ArrayBuffer, a compiled Module, a file URL and a path', async () => {
    const bytes = new Uint8Array(await readFile(path(true)));
    const module = await WebAssembly.compile(bytes);
    for (const wasm of [bytes, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), module, pathToFileURL(path(false)), path(false)]) {
      await works(await init({ wasm }));
    }
  });

  it('the three binaries export the same kernels; only the relaxed one needs relaxed SIMD', async () => {
    const names = async (binary: WasmBinary) =>
      WebAssembly.Module.exports(new WebAssembly.Module(await readFile(path(binary))))
        .map((e) => e.name)
        .sort();
    const relaxedBytes = await readFile(path('relaxed'));
    expect(WebAssembly.validate(relaxedBytes)).toBe(relaxedSimdSupported());
    if (relaxedSimdSupported()) expect(await names('relaxed')).toEqual(await names('simd'));
    expect(await names('simd')).toEqual(await names('scalar'));
    expect((await names('simd')).filter((n) => n.startsWith('sp_'))).toEqual([
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

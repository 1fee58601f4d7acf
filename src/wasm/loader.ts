/**
 * Finds, compiles and instantiates the kernels' WebAssembly binary.
 *
 * Sources: a URL or path string, `URL`, bytes (`ArrayBuffer`/typed array), a `Response`, or a
 * precompiled `WebAssembly.Module` (required where compiling from bytes is forbidden, e.g.
 * Cloudflare workerd). Without a source the SIMD binary is used when the engine validates SIMD,
 * else the scalar one, read from the package's `wasm/` folder (`SLIM_WASM_DIR` overrides the
 * folder in Node).
 */

export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | Response | WebAssembly.Module;

/** `i32.const 0; i8x16.splat; i8x16.popcnt` — valid only where wasm SIMD is supported. */
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

export function simdSupported(): boolean {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

export function binaryName(simd: boolean): string {
  return simd ? 'slim_kernels_simd.wasm' : 'slim_kernels_scalar.wasm';
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

async function readNodeFile(url: URL | string): Promise<Uint8Array<ArrayBuffer>> {
  const fs = await import('node:fs/promises');
  const buf = await fs.readFile(url);
  return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
}

async function defaultSource(simd: boolean): Promise<URL | Uint8Array<ArrayBuffer>> {
  const name = binaryName(simd);
  if (isNode()) {
    const dir = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SLIM_WASM_DIR;
    if (dir) {
      const path = await import('node:path');
      return readNodeFile(path.resolve(dir, name));
    }
    return readNodeFile(new URL(`../../wasm/${name}`, import.meta.url));
  }
  return new URL(`../../wasm/${name}`, import.meta.url);
}

async function toModule(src: WasmSource): Promise<WebAssembly.Module> {
  if (src instanceof WebAssembly.Module) return src;
  if (typeof Response !== 'undefined' && src instanceof Response) {
    if (!src.ok) throw new Error(`init: fetching the wasm binary failed with HTTP ${src.status}`);
    return WebAssembly.compile(await src.arrayBuffer());
  }
  if (src instanceof ArrayBuffer) return WebAssembly.compile(src);
  if (ArrayBuffer.isView(src)) {
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    return WebAssembly.compile(bytes.slice());
  }
  if (typeof src === 'string' || src instanceof URL) {
    if (isNode() && (typeof src === 'string' ? !/^(https?|data|blob):/.test(src) : src.protocol === 'file:')) {
      return WebAssembly.compile(await readNodeFile(src));
    }
    return toModule(await fetch(src));
  }
  throw new TypeError('init: wasm must be a URL, a path, bytes, a Response or a WebAssembly.Module');
}

export interface Loaded {
  instance: WebAssembly.Instance;
  simd: boolean;
}

export async function load(options: { simd?: boolean; wasm?: WasmSource } = {}): Promise<Loaded> {
  const available = simdSupported();
  if (options.simd === true && !available && options.wasm === undefined) {
    throw new Error('init: simd: true was requested but this engine does not support WebAssembly SIMD');
  }
  const simd = options.simd ?? available;
  const module = await toModule(options.wasm ?? (await defaultSource(simd)));
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports as { sp_simd?: () => number };
  if (typeof exports.sp_simd !== 'function') {
    throw new Error('init: the wasm module is not a slim-performer kernel binary (no sp_simd export)');
  }
  return { instance, simd: exports.sp_simd() === 1 };
}

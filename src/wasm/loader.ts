/**
 * Finds, compiles and instantiates the kernels' WebAssembly binary.
 *
 * Sources: a URL or path string, `URL`, bytes (`ArrayBuffer`/typed array), a `Response`, or a
 * precompiled `WebAssembly.Module` (required where compiling from bytes is forbidden, e.g.
 * Cloudflare workerd). Without a source the best binary the engine validates is used: relaxed
 * SIMD (fused multiply-add), else SIMD, else scalar, read from the package's `wasm/` folder
 * (`SLIM_WASM_DIR` overrides the folder in Node).
 */

export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | Response | WebAssembly.Module;

/** The three builds of one crate: `relaxed` = SIMD128 + relaxed SIMD, `simd` = SIMD128, `scalar`. */
export type WasmBinary = 'relaxed' | 'simd' | 'scalar';

/**
 * Which binary to load: `'relaxed'`, `true` (SIMD128 without relaxed SIMD) or `false` (scalar)
 * name one binary and fail where the engine cannot run it; absent picks the best one.
 */
export type SimdOption = boolean | 'relaxed';

/** `i32.const 0; i8x16.splat; i8x16.popcnt` — valid only where wasm SIMD is supported. */
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** Three `i8x16.splat`s into `f32x4.relaxed_madd` — valid only where relaxed SIMD is supported. */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0, 65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 133, 2, 11,
]);

function validates(probe: Uint8Array<ArrayBuffer>): boolean {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(probe);
  } catch {
    return false;
  }
}

export function simdSupported(): boolean {
  return validates(SIMD_PROBE);
}

/** Whether the engine runs relaxed SIMD (Chrome/V8 114+, Node 21+, Firefox 145+, Deno 1.33+). */
export function relaxedSimdSupported(): boolean {
  return simdSupported() && validates(RELAXED_PROBE);
}

/** The best binary this engine runs. */
export function bestBinary(): WasmBinary {
  return relaxedSimdSupported() ? 'relaxed' : simdSupported() ? 'simd' : 'scalar';
}

/** `binaryName('simd')` = `'slim_kernels_simd.wasm'`; a boolean means SIMD (`true`) or scalar. */
export function binaryName(binary: WasmBinary | boolean): string {
  const b = binary === true ? 'simd' : binary === false ? 'scalar' : binary;
  return `slim_kernels_${b}.wasm`;
}

/** The binary an `init({ simd })` option asks for; throws where the engine cannot run it. */
export function chooseBinary(simd: unknown, fn = 'init'): WasmBinary {
  if (simd === undefined) return bestBinary();
  if (simd === 'relaxed') {
    if (!relaxedSimdSupported()) {
      throw new Error(
        `${fn}: simd: 'relaxed' was requested but this engine does not support WebAssembly relaxed SIMD (Node 21+, Chrome 114+, Firefox 145+, Deno 1.33+); use simd: true`,
      );
    }
    return 'relaxed';
  }
  if (simd === true) {
    if (!simdSupported()) throw new Error(`${fn}: simd: true was requested but this engine does not support WebAssembly SIMD`);
    return 'simd';
  }
  if (simd === false) return 'scalar';
  throw new TypeError(`${fn}: simd must be 'relaxed', true, false or absent, got ${typeof simd === 'string' ? `'${simd}'` : String(simd)}`);
}

/** How each binary is named to people: "wasm (relaxed SIMD)". */
export const BINARY_LABEL: Record<WasmBinary, string> = { relaxed: 'relaxed SIMD', simd: 'SIMD', scalar: 'scalar' };

const BINARY_OF_CODE: Record<number, WasmBinary> = { 0: 'scalar', 1: 'simd', 2: 'relaxed' };

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

async function readNodeFile(url: URL | string): Promise<Uint8Array<ArrayBuffer>> {
  const fs = await import('node:fs/promises');
  const buf = await fs.readFile(url);
  return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
}

async function defaultSource(binary: WasmBinary): Promise<URL | Uint8Array<ArrayBuffer>> {
  const name = binaryName(binary);
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
  /** The binary running, as the module itself reports it. */
  binary: WasmBinary;
}

/** With `wasm` given, `simd` is not consulted: the module says which binary it is. */
export async function load(options: { simd?: SimdOption; wasm?: WasmSource } = {}): Promise<Loaded> {
  const module = await toModule(options.wasm ?? (await defaultSource(chooseBinary(options.simd))));
  const instance = await WebAssembly.instantiate(module, {});
  const exports = instance.exports as { sp_simd?: () => number };
  if (typeof exports.sp_simd !== 'function') {
    throw new Error('init: the wasm module is not a slim-performer kernel binary (no sp_simd export)');
  }
  const binary = BINARY_OF_CODE[exports.sp_simd()];
  if (binary === undefined) throw new Error(`init: unknown kernel binary kind ${exports.sp_simd()} (a newer slim-performer build?)`);
  return { instance, binary };
}

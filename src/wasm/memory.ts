/**
 * Explicit wasm memory: every buffer is allocated through the module's `sp_alloc`, typed-array
 * views are made from `memory.buffer` at the moment of use (growth detaches old views), and a
 * `Scope` frees everything it allocated, success or not.
 */

export interface KernelExports {
  memory: WebAssembly.Memory;
  sp_alloc(bytes: number): number;
  sp_free(ptr: number, bytes: number): void;
  sp_live_bytes(): number;
  sp_heap_bytes(): number;
  sp_peak_bytes(): number;
  sp_reset_peak(): void;
  sp_simd(): number;
  [name: string]: unknown;
}

/** wasm32 addresses at most 4 GiB. */
export const WASM_MAX_BYTES = 4 * 1024 ** 3;

const MiB = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;

export class Scope {
  private readonly owned: Array<[number, number]> = [];
  /** Bytes this scope has allocated (inputs copied in, outputs). */
  bytes = 0;

  constructor(private readonly x: KernelExports) {}

  /** Allocates `bytes` (16-byte aligned); throws a clear error when memory cannot grow. */
  alloc(bytes: number, what: string): number {
    const p = this.x.sp_alloc(bytes);
    if (p === 0) {
      throw new RangeError(
        `out of wasm memory allocating ${what} (${MiB(bytes)}; the instance holds ${MiB(this.x.memory.buffer.byteLength)} of at most 4096 MiB)`,
      );
    }
    this.owned.push([p, bytes]);
    this.bytes += bytes;
    return p;
  }

  /** Copies `src` into fresh wasm memory. */
  put(src: Float32Array | Float64Array, what: string): number {
    const p = this.alloc(src.byteLength, what);
    const View = src instanceof Float32Array ? Float32Array : Float64Array;
    new View(this.x.memory.buffer, p, src.length).set(src);
    return p;
  }

  /** Allocates an output of `n` elements poisoned with NaN, so unwritten memory fails tests. */
  out(kind: 'f32' | 'f64', n: number, what: string): number {
    const View = kind === 'f32' ? Float32Array : Float64Array;
    const p = this.alloc(n * View.BYTES_PER_ELEMENT, what);
    new View(this.x.memory.buffer, p, n).fill(NaN);
    return p;
  }

  f32(p: number, n: number): Float32Array {
    return new Float32Array(this.x.memory.buffer, p, n).slice();
  }

  f64(p: number, n: number): Float64Array {
    return new Float64Array(this.x.memory.buffer, p, n).slice();
  }

  free(): void {
    for (const [p, bytes] of this.owned.splice(0)) this.x.sp_free(p, bytes);
  }
}

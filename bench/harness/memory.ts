/** Memory helpers. Each method documents what its "peak" counts (see the method files). */

/** Wasm heap limit of a 32-bit memory (tfjs-backend-wasm: 4 GiB - 64 KiB). */
export const WASM_HEAP_MAX = 4 * 1024 ** 3;

/** Cases whose estimated peak exceeds this are skipped ("skipped: would need X GB"). */
export const SKIP_ABOVE_BYTES = 6e9;

export const MB = 1024 * 1024;
export const fmtMB = (bytes: number): string => (bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1);
export const fmtGB = (bytes: number): string => (bytes / 1e9).toFixed(1);

/** Sum of byteLength over every typed array found (recursively) in a value. */
export function typedBytes(x: unknown, seen = new Set<unknown>()): number {
  if (x == null || typeof x !== 'object' || seen.has(x)) return 0;
  seen.add(x);
  if (ArrayBuffer.isView(x)) return x.byteLength;
  let n = 0;
  for (const v of Object.values(x as Record<string, unknown>)) n += typedBytes(v, seen);
  return n;
}

/** Tally of JS-side allocations made by a plain-JS method (its peak = what it allocates). */
export class Tally {
  bytes = 0;
  f32(n: number): Float32Array {
    this.bytes += 4 * n;
    return new Float32Array(n);
  }
  f64(n: number): Float64Array {
    this.bytes += 8 * n;
    return new Float64Array(n);
  }
}

/** True when an error looks like an allocation failure (wasm heap, JS typed arrays). */
export function isOom(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? e);
  return /OOM|out of memory|Cannot enlarge memory|Array buffer allocation failed|Invalid typed array length|allocation failed|RangeError: .*memory/i.test(msg);
}

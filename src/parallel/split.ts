/**
 * Splitting a kernel call along its `b·h` slices and joining the results.
 *
 * Every kernel treats the `b·h` slices independently; slice `r` uses projection head `r mod h`.
 * A contiguous range of slices `[r0, r0 + n)` is therefore the call with dims `{ b: 1, h: n }`
 * whose `omega` holds the heads `(r0 + j) mod h`: the same arithmetic per slice, so the joined
 * results equal the single-instance call bit for bit.
 */
import type { Dims } from '../kernels/types.ts';

type Typed = Float32Array | Float64Array;

function isTyped(x: unknown): x is Typed {
  return x instanceof Float32Array || x instanceof Float64Array;
}

/** Contiguous ranges of `bh` slices over `parts` workers, as even as possible, none empty. */
export function ranges(bh: number, parts: number): Array<[number, number]> {
  const n = Math.max(1, Math.min(parts, bh));
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) out.push([Math.floor((i * bh) / n), Math.floor(((i + 1) * bh) / n)]);
  return out;
}

/**
 * The arguments of slices `[r0, r1)`, or null when the call cannot be split (unexpected shapes:
 * then one worker runs it whole and reports the kernel's own error).
 */
export function sliceArgs(args: Record<string, unknown>, r0: number, r1: number): Record<string, unknown> | null {
  const dims = args.dims as Dims;
  const bh = dims.b * dims.h;
  const n = r1 - r0;
  let ok = true;
  const cut = (x: unknown, key: string): unknown => {
    if (isTyped(x)) {
      if (key === 'omega') {
        const per = x.length / dims.h;
        if (!Number.isInteger(per)) return ((ok = false), x);
        const out = new (x.constructor as { new (n: number): Typed })(n * per);
        for (let j = 0; j < n; j++) out.set(x.subarray(((r0 + j) % dims.h) * per, (((r0 + j) % dims.h) + 1) * per), j * per);
        return out;
      }
      const per = x.length / bh;
      if (!Number.isInteger(per)) return ((ok = false), x);
      return x.slice(r0 * per, r1 * per);
    }
    if (key === 'dims') return { ...(x as object), b: 1, h: n };
    if (x !== null && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) {
      return Object.fromEntries(Object.entries(x as object).map(([k, v]) => [k, cut(v, k)]));
    }
    return x;
  };
  const out = cut(args, '') as Record<string, unknown>;
  return ok ? out : null;
}

/** Joins per-range results (same structure, typed arrays concatenated in range order). */
export function join(parts: unknown[]): unknown {
  const first = parts[0];
  if (isTyped(first)) {
    const total = parts.reduce((s: number, p) => s + (p as Typed).length, 0);
    const out = new (first.constructor as { new (n: number): Typed })(total);
    let at = 0;
    for (const p of parts as Typed[]) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  if (first !== null && typeof first === 'object') {
    return Object.fromEntries(Object.keys(first).map((k) => [k, join(parts.map((p) => (p as Record<string, unknown>)[k]))]));
  }
  return first;
}

/** Buffers of every typed array in a value (for transfer lists). */
export function buffers(x: unknown, out: ArrayBuffer[] = []): ArrayBuffer[] {
  if (isTyped(x)) {
    if (x.buffer instanceof ArrayBuffer && x.byteOffset === 0 && x.byteLength === x.buffer.byteLength && !out.includes(x.buffer)) out.push(x.buffer);
  } else if (x !== null && typeof x === 'object') {
    for (const v of Object.values(x)) buffers(v, out);
  }
  return out;
}

/**
 * Attention states on the GPU: the layout the WGSL kernels read and write, and conversions from
 * and to the float64 states of the host API (kept apart from the kernels so that TF.js code can
 * use the layout without the shaders).
 */
import type { AttnState, Dims, FeatureMap } from '../kernels/types.ts';
import { ArgError } from '../kernels/validate.ts';

/** Offset of an empty FAVOR+ state on the GPU (-∞ is not portable in WGSL). */
export const NEG = -3.0e38;

/**
 * Floats per slice of a state on the GPU: `S` (m·dv) and `z` (m) as float32 pairs — the value
 * is hi + lo — laid out `[S_hi, z_hi, offset, S_lo, z_lo]`. The synchronous calls take and
 * return states in this layout, `[b·h, gpuStateWords(m, dv)]`; gradients of such a state are
 * in the same layout with only the hi part (S, z) filled.
 */
export function gpuStateWords(m: number, dv: number): number {
  return 2 * (m * dv + m) + 1;
}

/**
 * A float64 state in the GPU layout. Offsets become float32: a state whose offset is not one
 * moves to the nearest float32 frame (S, z scale by exp(offset − fround(offset))), as the wasm
 * backend does.
 */
export function toGpuState(state: AttnState, dims: Pick<Dims, 'm' | 'dv'>): Float32Array<ArrayBuffer> {
  const { m, dv } = dims;
  const sw = gpuStateWords(m, dv);
  const mdv = m * dv;
  const bh = state.offset.length;
  const s = new Float32Array(bh * sw);
  for (let i = 0; i < bh; i++) {
    const o = i * sw;
    const put = (x: number, at: number) => {
      const hi = Math.fround(x);
      s[o + at] = hi;
      s[o + mdv + m + 1 + at] = Math.fround(x - hi);
    };
    const off = state.offset[i];
    const f = frameFactor(off);
    for (let e = 0; e < mdv; e++) put(f * state.S[i * mdv + e], e);
    for (let r = 0; r < m; r++) put(f * state.z[i * m + r], mdv + r);
    s[o + mdv + m] = off === -Infinity ? NEG : Math.max(Math.fround(off), NEG);
  }
  return s;
}

/** A state in the GPU layout (e.g. read back from a buffer) as a float64 state. */
export function fromGpuState(raw: Float32Array, dims: Pick<Dims, 'm' | 'dv'>, feature: FeatureMap | 'identity'): AttnState {
  const { m, dv } = dims;
  const sw = gpuStateWords(m, dv);
  if (raw.length % sw !== 0) throw new ArgError(`fromGpuState: raw must hold [b·h, ${sw}] floats for m = ${m}, dv = ${dv}, got ${raw.length}`);
  const bh = raw.length / sw;
  const mdv = m * dv;
  const S = new Float64Array(bh * mdv);
  const z = new Float64Array(bh * m);
  const offset = new Float64Array(bh);
  for (let i = 0; i < bh; i++) {
    const o = i * sw;
    const lo = o + mdv + m + 1;
    for (let e = 0; e < mdv; e++) S[i * mdv + e] = raw[o + e] + raw[lo + e];
    for (let r = 0; r < m; r++) z[i * m + r] = raw[o + mdv + r] + raw[lo + mdv + r];
    const off = raw[o + mdv + m];
    offset[i] = feature === 'favor' && off <= NEG / 2 ? -Infinity : off;
  }
  return { S, z, offset };
}

/** exp(offset − fround(offset)): moves a state into the nearest float32 frame. */
export function frameFactor(offset: number): number {
  return Number.isFinite(offset) ? Math.exp(offset - Math.fround(offset)) : 1;
}

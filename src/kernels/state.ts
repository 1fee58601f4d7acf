/** What every backend shares beyond the types: the feature-map codes and empty states. */
import { checkDims } from './validate.ts';
import type { AttnState, Dims, FeatureMap } from './types.ts';

/** Feature-map codes as the crate and the WGSL kernels number them. */
export const FEATURE_CODES: Readonly<Record<FeatureMap | 'identity', number>> = { favor: 0, relu: 1, elu1: 2, sqr: 3, identity: 4 };

/** The state before any token: zero sums, offsets `-Infinity` for `favor` and 0 for the others. */
export function emptyState(dims: Pick<Dims, 'b' | 'h' | 'm' | 'dv'>, feature: FeatureMap | 'identity'): AttnState {
  const bh = dims.b * dims.h;
  return {
    S: new Float64Array(bh * dims.m * dims.dv),
    z: new Float64Array(bh * dims.m),
    offset: new Float64Array(bh).fill(feature === 'favor' ? -Infinity : 0),
  };
}

/** Dims of a call over precomputed features (`…Features` kernels): `d` is the feature width `m`. */
export function featureDims(fn: string, dims: unknown): Dims {
  const d = checkDims(fn, { d: 1, ...(dims as object) });
  return { ...d, d: d.m };
}

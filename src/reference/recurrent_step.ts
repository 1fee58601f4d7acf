/**
 * Float64 reference for one recurrent decoding step: exactly the causal forward with T = 1
 * (crate/src/linear_attn/README.md, "Recurrent step").
 */
import type { AttnState, Dims, FeatureSpec } from '../kernels/types.ts';
import { refCausalForward } from './causal_forward.ts';
import type { Arr } from './util.ts';
import { ArgError } from '../kernels/validate.ts';

export interface RefRecurrentStepArgs extends FeatureSpec {
  /** `[b, h, d]` */
  q: Arr;
  /** `[b, h, d]` */
  k: Arr;
  /** `[b, h, dv]` */
  v: Arr;
  /** sizes; `t` is ignored */
  dims: Dims;
  state: AttnState;
  eps?: number;
}

/** One token per `(b, h)` with a carried state; out `[b, h, dv]`. */
export function refRecurrentStep(a: RefRecurrentStepArgs): { out: Float64Array; state: AttnState } {
  if (a.state === undefined) throw new ArgError('state is required');
  return refCausalForward({ ...a, dims: { ...a.dims, t: 1 } });
}

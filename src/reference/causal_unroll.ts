/**
 * Float64 twin of `causalUnroll` (crate/src/linear_attn/unroll.rs): the input state of a causal
 * forward, recovered from its output state by taking away what the keys and values of the slice
 * added. A state `(S, z)` in frame `o` stands for `(S, z)·e^o`; the slice's own contribution is
 * the state a forward from the empty state leaves, in the frame of the keys' largest logit.
 */
import type { AttnState, Dims, FeatureSpec } from '../kernels/types.ts';
import { refCausalForward } from './causal_forward.ts';
import { type Arr, checkLength, checkState, rescale } from './util.ts';

export interface RefCausalUnrollArgs extends FeatureSpec {
  k: Arr;
  v: Arr;
  dims: Dims;
  /** The forward's output state. */
  stateOut: AttnState;
  /** `[b, h]` the frame of the forward's input state (`-Infinity`: it was empty). */
  offsetIn: Arr;
}

export function refCausalUnroll(a: RefCausalUnrollArgs): AttnState {
  const { b, h, m, dv } = a.dims;
  checkState('stateOut', a.stateOut, a.dims);
  checkLength('offsetIn', a.offsetIn, b * h);
  const added = refCausalForward({ q: a.k, k: a.k, v: a.v, dims: a.dims, feature: a.feature, omega: a.omega }).state;
  const S = new Float64Array(b * h * m * dv);
  const z = new Float64Array(b * h * m);
  const offset = Float64Array.from(a.offsetIn);
  for (let s = 0; s < b * h; s++) {
    const out = a.stateOut.offset[s];
    // An empty input state is exactly zero, whatever the rounding of the subtraction says.
    if (offset[s] === -Infinity) continue;
    const toOut = rescale(added.offset[s], out); // the slice's contribution, in the output frame
    const toIn = rescale(out, offset[s]); // the difference, in the input state's frame
    for (let i = 0; i < m * dv; i++) S[s * m * dv + i] = (a.stateOut.S[s * m * dv + i] - added.S[s * m * dv + i] * toOut) * toIn;
    for (let i = 0; i < m; i++) z[s * m + i] = (a.stateOut.z[s * m + i] - added.z[s * m + i] * toOut) * toIn;
  }
  return { S, z, offset };
}

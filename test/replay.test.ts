/**
 * The backward's fallback: when a chunk raises the FAVOR+ offset by more than 10, the chunk's
 * start state cannot be undone by subtraction, so the backward replays the keys from the input
 * state. Keys with tiny logits followed by ordinary ones force that path.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { init, type Kernels } from '../src/index.ts';
import { refCausalBackward, refCausalForward } from '../src/reference/index.ts';
import { assertClose } from './util/assert.ts';
import { assertStateClose, makeProblem, prefixState, upstream } from './util/problems.ts';

describe('backward replays the keys after a large offset jump', () => {
  let K: Kernels;
  beforeAll(async () => {
    K = await init();
  });
  afterAll(() => K.dispose());

  for (const withState of [false, true]) {
    it(`matches the reference, ${withState ? 'with' : 'without'} an input state`, () => {
      const dims = { b: 1, h: 2, t: 63, d: 8, m: 12, dv: 5 };
      const p = makeProblem('favor', dims, 201);
      // Tokens 0..39 of every slice: keys ×10, so ℓ ≈ −|k'|²/2 is about −100 below the rest.
      for (let i = 0; i < dims.b * dims.h; i++) for (let j = 0; j < 40 * dims.d; j++) p.k[i * dims.t * dims.d + j] *= 10;
      const state = withState ? prefixState(p, 3, 202) : undefined;
      if (state) for (let i = 0; i < state.offset.length; i++) state.offset[i] -= 200;
      const { dOut, dState } = upstream(dims, 203);
      const ref = refCausalForward({ ...p, state });
      const f = K.causalForward({ ...p, state, chunk: 16 });
      assertClose('out', ref.out, f.out, 1e-5);
      assertStateClose('state', ref.state, f.state, dims, 1e-5);
      const rg = refCausalBackward({ ...p, state, dOut, dState });
      const g = K.causalBackward({ ...p, stateIn: state, stateOut: f.state, dOut, dState, chunk: 16 });
      for (const key of ['dq', 'dk', 'dv'] as const) assertClose(key, rg[key], g[key], 1e-5);
      assertClose('dState.S', rg.dState.S, g.dState.S, 1e-5);
    });
  }
});

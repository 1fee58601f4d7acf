/**
 * Drift: the backward undoes each chunk by subtracting its recomputed increment from the end
 * state. At T = 65 536 with a few keys 10⁴ times larger than the rest, the gradients must still
 * match a float64 reference that stores every state (and never subtracts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, relaxedSimdSupported, type Kernels, type SimdOption } from '../src/index.ts';
import type { FeatureMap } from '../src/kernels/types.ts';
import { assertClose } from './util/assert.ts';
import { driftProblem } from './util/problems.ts';

// Every binary: the relaxed one's fused multiply-adds round differently, at the same tolerance.
const BINARIES: [string, SimdOption][] = [
  ['relaxed', 'relaxed'],
  ['simd', true],
  ['scalar', false],
];

describe.each(BINARIES)('drift at T = 65 536 with outlier keys (wasm %s)', (_name, simd) => {
  let K: Kernels;
  beforeAll(async () => {
    if (simd === 'relaxed' && !relaxedSimdSupported()) return;
    K = await init({ simd });
  });
  afterAll(() => K?.dispose());

  for (const feature of ['relu', 'sqr', 'favor'] as FeatureMap[]) {
    it.skipIf(simd === 'relaxed' && !relaxedSimdSupported())(`${feature}: gradients match the stored-state reference`, () => {
      const { p, dims, dOut, dState, clean: CLEAN, ref, rg } = driftProblem(feature);
      const f = K.causalForward({ ...p, chunk: 64 });
      assertClose('out', ref.out, f.out, 1e-5);
      const g = K.causalBackward({ ...p, stateOut: f.state, dOut, dState, chunk: 64 });
      for (const key of ['dq', 'dk', 'dv'] as const) {
        expect(g[key].every(Number.isFinite), key).toBe(true);
        assertClose(key, rg[key], g[key], 1e-5);
        // Tokens before the outliers, on their own scale (the outliers' gradients dwarf them).
        const w = key === 'dv' ? dims.dv : dims.d;
        assertClose(`${key}[t < ${CLEAN}]`, rg[key].subarray(0, CLEAN * w), g[key].subarray(0, CLEAN * w), 1e-4);
      }
      assertClose('dState.S', rg.dState.S, g.dState.S, 1e-5);
    });
  }
});

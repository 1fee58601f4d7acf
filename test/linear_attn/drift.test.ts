/**
 * Drift, on every backend: the wasm backward undoes each chunk by subtracting its recomputed
 * increment from the end state; the WebGPU one keeps states in float32 (compensated sums in the
 * forward, checkpoint replay in the backward). At T = 65 536 with a few keys 10⁴ times larger than
 * the rest, the gradients must still match a float64 reference that stores every state (and never
 * subtracts), at the same tolerances on every backend.
 *
 * Backends: the three wasm binaries (the relaxed one's fused multiply-adds round differently);
 * WebGPU per slice and chunk-parallel, only with SLIM_WEBGPU_SLOW=1 (about 50 s on llvmpipe:
 * `npm run test:webgpu`) and an adapter. `SLIM_TEST_BACKENDS=webgpu` (comma-separated prefixes)
 * runs a subset, as in kernels.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, relaxedSimdSupported, type Kernels, type SimdOption } from '../../src/index.ts';
import type { CausalGrads, Dims, FeatureMap } from '../../src/kernels/types.ts';
import { findAdapter } from '../../src/webgpu/device.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';
import { assertClose, errorStats } from '../util/assert.ts';
import { assertStateClose, driftProblem } from '../util/problems.ts';

const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
const only = env.SLIM_TEST_BACKENDS?.split(',');
const wanted = (name: string) => !only || only.some((o) => name.startsWith(o));
const FEATURES: FeatureMap[] = ['relu', 'sqr', 'favor'];

/** The assertions every backend meets: out, dq, dk, dv (all tokens, and those before the outliers), dState.S. */
function expectDrift(
  name: string,
  want: { out: Float64Array; rg: { dq: Float64Array; dk: Float64Array; dv: Float64Array; dState: { S: Float64Array } } },
  got: { out: Float32Array; g: CausalGrads },
  dims: Dims,
  clean: number,
): void {
  assertClose(`${name} out`, want.out, got.out, 1e-5);
  for (const key of ['dq', 'dk', 'dv'] as const) {
    expect(got.g[key].every(Number.isFinite), `${name} ${key}`).toBe(true);
    assertClose(`${name} ${key}`, want.rg[key], got.g[key], 1e-5);
    // Tokens before the outliers, on their own scale (the outliers' gradients dwarf them).
    const w = key === 'dv' ? dims.dv : dims.d;
    assertClose(`${name} ${key}[t < ${clean}]`, want.rg[key].subarray(0, clean * w), got.g[key].subarray(0, clean * w), 1e-4);
  }
  assertClose(`${name} dState.S`, want.rg.dState.S, got.g.dState.S, 1e-5);
}

const BINARIES: [string, SimdOption][] = [
  ['relaxed', 'relaxed'],
  ['simd', true],
  ['scalar', false],
];

describe.each(BINARIES.filter(([name]) => wanted(`wasm-${name}`)))('drift at T = 65 536 with outlier keys (wasm %s)', (_name, simd) => {
  const skip = simd === 'relaxed' && !relaxedSimdSupported();
  let K: Kernels;
  beforeAll(async () => {
    if (!skip) K = await init({ simd });
  });
  afterAll(() => K?.dispose());

  for (const feature of FEATURES) {
    it.skipIf(skip)(`${feature}: gradients match the stored-state reference`, () => {
      const { p, dims, dOut, dState, clean, ref, rg } = driftProblem(feature);
      const f = K.causalForward({ ...p, chunk: 64 });
      const g = K.causalBackward({ ...p, stateOut: f.state, dOut, dState, chunk: 64 });
      expectDrift('wasm', { out: ref.out, rg }, { out: f.out, g }, dims, clean);
    });
  }
});

const slow = env.SLIM_WEBGPU_SLOW === '1';
const gpu = slow && wanted('webgpu') ? await findAdapter().catch(() => null) : null;

describe.skipIf(!gpu)(
  `drift at T = 65 536 with outlier keys (WebGPU ${gpu?.description ?? (slow ? 'skipped: no adapter' : 'skipped: about 50 s on llvmpipe; set SLIM_WEBGPU_SLOW=1 (npm run test:webgpu)')})`,
  () => {
    let K: WebGPUKernels;
    let KP: WebGPUKernels;
    beforeAll(async () => {
      K = await initWebGPU({ adapter: gpu!.adapter, poison: true, chunkParallel: false });
      KP = await initWebGPU({ device: K.device, poison: true, chunkParallel: true, chunkWindow: 300 }); // an adapter gives one device
    });
    afterAll(() => {
      KP?.dispose();
      K?.dispose();
    });

    for (const feature of FEATURES) {
      it(`${feature}: gradients match the stored-state reference, per slice and chunk-parallel`, async () => {
        const { p, dims, dOut, dState, clean, ref, rg } = driftProblem(feature);
        const t0 = performance.now();
        const f = await K.causalForward({ ...p, chunk: 64 });
        const t1 = performance.now();
        const g = await K.causalBackward({ ...p, stateOut: f.state, dOut, dState, chunk: 64 });
        const t2 = performance.now();
        const fp = await KP.causalForward({ ...p, chunk: 64 }); // chunk-parallel, 4 windows
        const t3 = performance.now();
        expect(KP.lastSteps, 'the chunk-parallel forward ran 4 windows of 3 dispatches').toBe(12);
        const gp = await KP.causalBackward({ ...p, stateOut: fp.state, dOut, dState, chunk: 64 });
        const t4 = performance.now();
        expect(KP.lastSteps, 'the chunk-parallel backward ran 4 windows forward (3 dispatches) and back (5)').toBe(32);
        const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
          const s = errorStats(a, b);
          return `${(s.maxAbs / s.refMaxAbs).toExponential(2)}`;
        };
        console.log(
          `[webgpu drift ${feature}] per slice: forward ${(t1 - t0).toFixed(0)} ms, backward ${(t2 - t1).toFixed(0)} ms; chunk-parallel: forward ${(t3 - t2).toFixed(0)} ms, backward ${(t4 - t3).toFixed(0)} ms; max err / max |ref|: ` +
            `chunk-parallel out ${rel(ref.out, fp.out)}, dq ${rel(rg.dq, gp.dq)}, dk ${rel(rg.dk, gp.dk)}, dv ${rel(rg.dv, gp.dv)}; per slice ` +
            `out ${rel(ref.out, f.out)}, dq ${rel(rg.dq, g.dq)}, dk ${rel(rg.dk, g.dk)}, dv ${rel(rg.dv, g.dv)}, dS ${rel(rg.dState.S, g.dState.S)}; ` +
            `t < ${clean}: dq ${rel(rg.dq.subarray(0, clean * dims.d), g.dq.subarray(0, clean * dims.d))}, dk ${rel(rg.dk.subarray(0, clean * dims.d), g.dk.subarray(0, clean * dims.d))}, dv ${rel(rg.dv.subarray(0, clean * dims.dv), g.dv.subarray(0, clean * dims.dv))}`,
        );
        assertStateClose('state (chunk-parallel)', ref.state, fp.state, dims, 1e-5);
        expectDrift('per slice', { out: ref.out, rg }, { out: f.out, g }, dims, clean);
        expectDrift('chunk-parallel', { out: ref.out, rg }, { out: fp.out, g: gp }, dims, clean);
      });
    }
  },
);

/**
 * test/drift.test.ts on the WebGPU backend: T = 65 536 with outlier keys 10⁴ times larger than
 * the rest, gradients against the float64 stored-state reference, same tolerances. The GPU keeps
 * states in float32 (compensated sums in the forward; the backward replays checkpoints instead
 * of subtracting). Skipped without an adapter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeatureMap } from '../src/kernels/types.ts';
import { findAdapter } from '../src/webgpu/device.ts';
import { initWebGPU, type WebGPUKernels } from '../src/webgpu/kernels.ts';
import { assertClose, errorStats } from './util/assert.ts';
import { assertStateClose, driftProblem } from './util/problems.ts';

const slow = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SLIM_WEBGPU_SLOW === '1';
const gpu = slow ? await findAdapter().catch(() => null) : null;

describe.skipIf(!gpu)(
  `WebGPU drift at T = 65 536 with outlier keys (${gpu?.description ?? (slow ? 'skipped: no adapter' : 'skipped: about 50 s on llvmpipe; set SLIM_WEBGPU_SLOW=1 (npm run test:webgpu)')})`,
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

    for (const feature of ['relu', 'sqr', 'favor'] as FeatureMap[]) {
      it(`${feature}: gradients match the stored-state reference`, async () => {
        const { p, dims, dOut, dState, clean: CLEAN, ref, rg } = driftProblem(feature);
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
            `t < ${CLEAN}: dq ${rel(rg.dq.subarray(0, CLEAN * 16), g.dq.subarray(0, CLEAN * 16))}, dk ${rel(rg.dk.subarray(0, CLEAN * 16), g.dk.subarray(0, CLEAN * 16))}, dv ${rel(rg.dv.subarray(0, CLEAN * 8), g.dv.subarray(0, CLEAN * 8))}`,
        );
        assertClose('out', ref.out, f.out, 1e-5);
        assertClose('out (chunk-parallel)', ref.out, fp.out, 1e-5);
        assertStateClose('state (chunk-parallel)', ref.state, fp.state, dims, 1e-5);
        for (const [name, got] of [
          ['per slice', g],
          ['chunk-parallel', gp],
        ] as const) {
          for (const key of ['dq', 'dk', 'dv'] as const) {
            expect(got[key].every(Number.isFinite), `${name} ${key}`).toBe(true);
            assertClose(`${name} ${key}`, rg[key], got[key], 1e-5);
            const w = key === 'dv' ? dims.dv : dims.d;
            assertClose(`${name} ${key}[t < ${CLEAN}]`, rg[key].subarray(0, CLEAN * w), got[key].subarray(0, CLEAN * w), 1e-4);
          }
          assertClose(`${name} dState.S`, rg.dState.S, got.dState.S, 1e-5);
        }
      });
    }
  },
);

/// <reference types="@webgpu/types" />
/** Bidirectional attention forward and backward on the GPU, Float32Array and synchronous flavours. */
import { checkArray, checkFiniteResult } from '../kernels/validate.ts';
import type { BidirectionalBackwardArgs, BidirectionalGrads, CausalArgs } from '../kernels/types.ts';
import { layout } from './plan.ts';
import { type GpuCore, inputNames, type GpuSyncArgs } from './core.ts';

export function bidirectionalForward(core: GpuCore, a: CausalArgs): Promise<{ out: Float32Array }> {
  const fn = 'bidirectionalForward';
  return core.guard(async () => {
    const c = core.common(fn, a);
    const { b, h, t, dv } = c.dims;
    const kind = core.bidirectionalKind(false);
    const L = layout(kind, c, false, false, core.env);
    return core.run(fn, async (use) => {
      const W = use(core.workBuffer(fn, L, c, c.dims));
      const [q, k, v] = [use(core.upload(a.q, 'q')), use(core.upload(a.k, 'k')), use(core.upload(a.v, 'v'))];
      const out = use(core.newOutput(b * h * t * dv, `${fn} out`));
      await core.dispatch(fn, kind, c, L, false, false, [W, q, k, v, out]);
      core.stats = { ioBytes: 4 * b * h * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
      const r = { out: await core.download(out, b * h * t * dv) };
      checkFiniteResult(fn, c.feature, inputNames(c), [['out', r.out]]);
      return r;
    });
  });
}

export function bidirectionalBackward(core: GpuCore, a: BidirectionalBackwardArgs): Promise<BidirectionalGrads> {
  const fn = 'bidirectionalBackward';
  return core.guard(async () => {
    const c = core.common(fn, a);
    const { b, h, t, d, dv } = c.dims;
    checkArray(fn, 'dOut', a.dOut, Float32Array, { b, h, t, dv });
    const kind = core.bidirectionalKind(true);
    const L = layout(kind, c, false, false, core.env);
    return core.run(fn, async (use) => {
      const W = use(core.workBuffer(fn, L, c, c.dims));
      const ins = [use(core.upload(a.q, 'q')), use(core.upload(a.k, 'k')), use(core.upload(a.v, 'v')), use(core.upload(a.dOut, 'dOut'))];
      const n = b * h * t;
      const outs = [use(core.newOutput(n * d, 'dq')), use(core.newOutput(n * d, 'dk')), use(core.newOutput(n * dv, 'dv'))];
      await core.dispatch(fn, kind, c, L, false, false, [W, ...ins, ...outs]);
      core.stats = { ioBytes: 4 * n * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
      const r = { dq: await core.download(outs[0], n * d), dk: await core.download(outs[1], n * d), dv: await core.download(outs[2], n * dv) };
      checkFiniteResult(fn, c.feature, inputNames(c, true), [
        ['dq', r.dq],
        ['dk', r.dk],
        ['dv', r.dv],
      ]);
      return r;
    });
  });
}

export function bidirectionalForwardSync(core: GpuCore, a: GpuSyncArgs): { out: GPUBuffer } {
  const fn = 'bidirectionalForwardSync';
  return core.ctx.scopedSync(fn, () => {
    const { c, q, k, v, omega } = core.syncInputs(fn, a);
    const { b, h, t, dv } = c.dims;
    const kind = core.bidirectionalKind(false);
    const L = layout(kind, c, false, false, core.env);
    const W = core.workBuffer(fn, L, c, c.dims);
    const out = core.newOutput(b * h * t * dv, `${fn} out`, true);
    try {
      core.dispatchSync(fn, kind, c, L, { hasState: false, hasDState: false }, [W, q, k, v, out], omega(W, L), []);
    } catch (e) {
      core.release(out);
      throw e;
    } finally {
      core.release(W);
    }
    core.stats = { ioBytes: 4 * b * h * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
    return { out };
  });
}

export function bidirectionalBackwardSync(core: GpuCore, a: GpuSyncArgs & { dOut: GPUBuffer }): { dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer } {
  const fn = 'bidirectionalBackwardSync';
  return core.ctx.scopedSync(fn, () => {
    const { c, q, k, v, omega } = core.syncInputs(fn, a);
    const { b, h, t, d, dv } = c.dims;
    const n = b * h * t;
    const dOut = core.checkGpuBuffer(fn, 'dOut', a.dOut, n * dv * 4);
    const kind = core.bidirectionalKind(true);
    const L = layout(kind, c, false, false, core.env);
    const W = core.workBuffer(fn, L, c, c.dims);
    const outs = [core.newOutput(n * d, `${fn} dq`, true), core.newOutput(n * d, `${fn} dk`, true), core.newOutput(n * dv, `${fn} dv`, true)];
    try {
      core.dispatchSync(fn, kind, c, L, { hasState: false, hasDState: false }, [W, q, k, v, dOut, ...outs], omega(W, L), []);
    } catch (e) {
      for (const o of outs) core.release(o);
      throw e;
    } finally {
      core.release(W);
    }
    core.stats = { ioBytes: 4 * n * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
    return { dq: outs[0], dk: outs[1], dv: outs[2] };
  });
}

/// <reference types="@webgpu/types" />
/** The causal backward on the GPU (checkpoint replay, see shaders/causal_backward.wgsl), in the three flavours. */
import { checkArray, checkFiniteResult, checkState, checkStateGrad, checkStateOutFilled, stateMismatch } from '../kernels/validate.ts';
import { featureDims } from '../kernels/state.ts';
import type { AttnState, CausalArgs, CausalBackwardArgs, CausalGrads, FeatureGrads, FeaturesBackwardArgs, StateGrad } from '../kernels/types.ts';
import { IO } from './buffers.ts';
import { layout, type Checked, type Copy } from './plan.ts';
import { frameFactor, gpuStateWords as stateWords } from './state.ts';
import { type GpuCore, inputNames, type GpuCausalArgs, type GpuSyncArgs } from './core.ts';

export async function backwardGpu(
  core: GpuCore,
  fn: string,
  c: Checked,
  bufs: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; dOut: GPUBuffer },
  stateIn: AttnState | undefined,
  stateOut: AttnState,
  dState: StateGrad | undefined,
): Promise<{ dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer; dState: StateGrad }> {
  const { b, h, t, d, m, dv } = c.dims;
  const bh = b * h;
  const kind = core.backwardKind();
  const L = layout(kind, c, !!stateIn, !!dState, core.env);
  return core.run(fn, async (use) => {
    const W = use(core.workBuffer(fn, L, c, c.dims, stateIn, dState));
    const outs = [core.newOutput(bh * t * d, `${fn} dq`), core.newOutput(bh * t * d, `${fn} dk`), core.newOutput(bh * t * dv, `${fn} dv`)];
    try {
      await core.dispatch(fn, kind, c, L, !!stateIn, !!dState, [W, bufs.q, bufs.k, bufs.v, bufs.dOut, ...outs]);
      const raw = await core.download(W, bh * (m * dv + m + 1), L.stateOutOff);
      const S = new Float64Array(bh * m * dv);
      const z = new Float64Array(bh * m);
      const n = m * dv + m + 1;
      for (let i = 0; i < bh; i++) {
        const mT = raw[i * n + m * dv + m];
        const want = stateOut.offset[i];
        const same = c.feature !== 'favor' || mT === Math.fround(want) || (Number.isFinite(want) && Math.abs(mT - want) <= 1e-6 * Math.max(1, Math.abs(want)));
        if (!same) throw stateMismatch(fn, `slice ${i} has ${want}, the keys give ${mT}`);
        // ∂/∂S_given = f · ∂/∂S_used for a state moved to a float32 frame (see workBuffer).
        const f = stateIn ? frameFactor(stateIn.offset[i]) : 1;
        for (let e = 0; e < m * dv; e++) S[i * m * dv + e] = f * raw[i * n + e];
        for (let r = 0; r < m; r++) z[i * m + r] = f * raw[i * n + m * dv + r];
      }
      core.stats = { ioBytes: 4 * bh * t * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
      checkFiniteResult(fn, c.feature, inputNames(c, true), [
        ['dState.S', S],
        ['dState.z', z],
      ]);
      return { dq: outs[0], dk: outs[1], dv: outs[2], dState: { S, z } };
    } catch (e) {
      for (const o of outs) core.release(o);
      throw e;
    }
  });
}

export async function backwardImpl(core: GpuCore, fn: string, a: CausalBackwardArgs, c: Checked): Promise<CausalGrads> {
  const { stateIn, stateOut, dState } = backwardChecks(fn, a, c);
  checkArray(fn, 'dOut', a.dOut, Float32Array, { b: c.dims.b, h: c.dims.h, t: c.dims.t, dv: c.dims.dv });
  if (a.out !== undefined) checkArray(fn, 'out', a.out, Float32Array, { b: c.dims.b, h: c.dims.h, t: c.dims.t, dv: c.dims.dv });
  const { b, h, t, d, dv } = c.dims;
  return core.run(fn, async (use) => {
    const bufs = { q: use(core.upload(a.q, 'q')), k: use(core.upload(a.k, 'k')), v: use(core.upload(a.v, 'v')), dOut: use(core.upload(a.dOut, 'dOut')) };
    const g = await backwardGpu(core, fn, c, bufs, stateIn, stateOut, dState);
    use(g.dq);
    use(g.dk);
    use(g.dv);
    const n = b * h * t;
    const r = { dq: await core.download(g.dq, n * d), dk: await core.download(g.dk, n * d), dv: await core.download(g.dv, n * dv), dState: g.dState };
    checkFiniteResult(fn, c.feature, inputNames(c, true), [
      ['dq', r.dq],
      ['dk', r.dk],
      ['dv', r.dv],
    ]);
    return r;
  });
}

function backwardChecks(fn: string, a: { stateIn?: AttnState; stateOut: AttnState; dState?: StateGrad }, c: Checked) {
  const stateIn = a.stateIn === undefined ? undefined : checkState(fn, 'stateIn', a.stateIn, c.dims, c.feature);
  const stateOut = checkState(fn, 'stateOut', a.stateOut, c.dims, c.feature);
  checkStateOutFilled(fn, stateOut, c.feature);
  const dState = a.dState === undefined ? undefined : checkStateGrad(fn, 'dState', a.dState, c.dims);
  return { stateIn, stateOut, dState };
}

export function causalBackward(core: GpuCore, a: CausalBackwardArgs): Promise<CausalGrads> {
  return core.guard(() => backwardImpl(core, 'causalBackward', a, core.common('causalBackward', a)));
}

export function causalBackwardGPU(
  core: GpuCore,
  a: GpuCausalArgs & { dOut: GPUBuffer; stateIn?: AttnState; stateOut: AttnState; dState?: StateGrad },
): Promise<{ dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer; dState: StateGrad }> {
  const fn = 'causalBackwardGPU';
  return core.guard(() => {
    const c = core.common(fn, a as unknown as CausalArgs, undefined, true);
    const { b, h, t, d, dv } = c.dims;
    const bufs = {
      q: core.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4),
      k: core.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4),
      v: core.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4),
      dOut: core.checkGpuBuffer(fn, 'dOut', a.dOut, b * h * t * dv * 4),
    };
    const { stateIn, stateOut, dState } = backwardChecks(fn, a, c);
    return backwardGpu(core, fn, c, bufs, stateIn, stateOut, dState);
  });
}

export async function causalBackwardFeatures(core: GpuCore, a: FeaturesBackwardArgs): Promise<FeatureGrads> {
  const fn = 'causalBackwardFeatures';
  const args = { ...a, q: a?.phiQ, k: a?.phiK, dims: featureDims(fn, a?.dims), feature: 'relu' as const };
  const g = await backwardImpl(core, fn, args, core.common(fn, args, 'identity'));
  return { dPhiQ: g.dq, dPhiK: g.dk, dv: g.dv, dState: g.dState };
}

export function causalBackwardSync(
  core: GpuCore,
  a: GpuSyncArgs & { dOut: GPUBuffer; stateIn?: GPUBuffer; dState?: GPUBuffer; dStateOffset?: number },
): {
  dq: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
  dStateIn: GPUBuffer;
} {
  const fn = 'causalBackwardSync';
  return core.ctx.scopedSync(fn, () => {
    const { c, q, k, v, omega } = core.syncInputs(fn, a);
    const { b, h, t, d, m, dv } = c.dims;
    const bh = b * h;
    const sw = stateWords(m, dv);
    const g = m * dv + m;
    const dOut = core.checkGpuBuffer(fn, 'dOut', a.dOut, bh * t * dv * 4);
    const stateIn = a.stateIn === undefined ? undefined : core.checkGpuBuffer(fn, 'stateIn', a.stateIn, bh * sw * 4);
    const dOff = core.byteOffset(fn, 'dStateOffset', a.dStateOffset);
    const dState = a.dState === undefined ? undefined : core.checkGpuBuffer(fn, 'dState', a.dState, dOff + bh * sw * 4);
    const kind = core.backwardKind();
    const L = layout(kind, c, !!stateIn, !!dState, core.env);
    const W = core.workBuffer(fn, L, c, c.dims);
    const before = omega(W, L);
    if (stateIn) before.push({ src: stateIn, srcOffset: 0, dst: W, dstOffset: L.stateInOff * 4, size: bh * sw * 4 });
    for (let i = 0; dState && i < bh; i++)
      before.push({ src: dState, srcOffset: dOff + i * sw * 4, dst: W, dstOffset: (L.dStateOff + i * g) * 4, size: g * 4 });
    const outs = [core.newOutput(bh * t * d, `${fn} dq`, true), core.newOutput(bh * t * d, `${fn} dk`, true), core.newOutput(bh * t * dv, `${fn} dv`, true)];
    const dStateIn = core.acquire(bh * sw * 4, IO, `${fn} dStateIn`, true);
    const after: Array<Copy | { clear: GPUBuffer }> = [{ clear: dStateIn }];
    for (let i = 0; i < bh; i++) after.push({ src: W, srcOffset: (L.stateOutOff + i * (g + 1)) * 4, dst: dStateIn, dstOffset: i * sw * 4, size: g * 4 });
    try {
      core.dispatchSync(fn, kind, c, L, { hasState: !!stateIn, hasDState: !!dState }, [W, q, k, v, dOut, ...outs], before, after);
    } catch (e) {
      for (const o of [...outs, dStateIn]) core.release(o);
      throw e;
    } finally {
      core.release(W);
    }
    core.stats = { ioBytes: 4 * bh * t * (4 * d + 3 * dv), scratchBytes: L.words * 4 };
    return { dq: outs[0], dk: outs[1], dv: outs[2], dStateIn };
  });
}

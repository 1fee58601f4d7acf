/// <reference types="@webgpu/types" />
/** The causal forward on the GPU: Float32Array, GPUBuffer (`…GPU`) and synchronous GPU-resident (`…Sync`) flavours. */
import { checkFiniteResult, checkState } from '../kernels/validate.ts';
import { featureDims } from '../kernels/state.ts';
import type { AttnState, CausalArgs, CausalForwardArgs, FeaturesForwardArgs, CausalForwardResult } from '../kernels/types.ts';
import { layout, type Checked } from './plan.ts';
import { fromGpuState, gpuStateWords as stateWords } from './state.ts';
import { type GpuCore, inputNames, type GpuCausalArgs, type GpuSyncArgs } from './core.ts';

export async function forwardGpu(
  core: GpuCore,
  fn: string,
  c: Checked,
  q: GPUBuffer,
  k: GPUBuffer,
  v: GPUBuffer,
  state: AttnState | undefined,
): Promise<{ out: GPUBuffer; state: AttnState }> {
  const { b, h, t, m, dv } = c.dims;
  const bh = b * h;
  const kind = core.forwardKind();
  const L = layout(kind, c, !!state, false, core.env);
  return core.run(fn, async (use) => {
    const W = use(core.workBuffer(fn, L, c, c.dims, state));
    const out = core.newOutput(bh * t * dv, `${fn} out`);
    try {
      await core.dispatch(fn, kind, c, L, !!state, false, [W, q, k, v, out]);
      const raw = await core.download(W, bh * stateWords(m, dv), L.stateOutOff);
      core.stats = { ioBytes: 4 * bh * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
      const next = fromGpuState(raw, c.dims, c.feature);
      checkFiniteResult(fn, c.feature, inputNames(c), [
        ['state.S', next.S],
        ['state.z', next.z],
      ]);
      checkFiniteResult(fn, c.feature, inputNames(c), [['state.offset', next.offset]], true);
      return { out, state: next };
    } catch (e) {
      core.release(out);
      throw e;
    }
  });
}

export async function forwardImpl(core: GpuCore, fn: string, a: CausalForwardArgs, c: Checked): Promise<{ out: Float32Array; state: AttnState }> {
  const state = a.state === undefined ? undefined : checkState(fn, 'state', a.state, c.dims, c.feature);
  const { b, h, t, dv } = c.dims;
  return core.run(fn, async (use) => {
    const [q, k, v] = [use(core.upload(a.q, 'q')), use(core.upload(a.k, 'k')), use(core.upload(a.v, 'v'))];
    const r = await forwardGpu(core, fn, c, q, k, v, state);
    use(r.out);
    const out = await core.download(r.out, b * h * t * dv);
    checkFiniteResult(fn, c.feature, inputNames(c), [['out', out]]);
    return { out, state: r.state };
  });
}

export function causalForward(core: GpuCore, a: CausalForwardArgs): Promise<CausalForwardResult> {
  return core.guard(() => forwardImpl(core, 'causalForward', a, core.common('causalForward', a)));
}

export function causalForwardGPU(core: GpuCore, a: GpuCausalArgs & { state?: AttnState }): Promise<{ out: GPUBuffer; state: AttnState }> {
  const fn = 'causalForwardGPU';
  return core.guard(() => {
    const c = core.common(fn, a as unknown as CausalArgs, undefined, true);
    const { b, h, t, d, dv } = c.dims;
    const q = core.checkGpuBuffer(fn, 'q', a.q, b * h * t * d * 4);
    const k = core.checkGpuBuffer(fn, 'k', a.k, b * h * t * d * 4);
    const v = core.checkGpuBuffer(fn, 'v', a.v, b * h * t * dv * 4);
    const state = a.state === undefined ? undefined : checkState(fn, 'state', a.state, c.dims, c.feature);
    return forwardGpu(core, fn, c, q, k, v, state);
  });
}

export function causalForwardFeatures(core: GpuCore, a: FeaturesForwardArgs): Promise<CausalForwardResult> {
  const fn = 'causalForwardFeatures';
  return core.guard(() => {
    const args = { q: a?.phiQ, k: a?.phiK, v: a?.v, dims: featureDims(fn, a?.dims), chunk: a?.chunk, eps: a?.eps, state: a?.state, feature: 'relu' as const };
    return forwardImpl(core, fn, args, core.common(fn, args, 'identity'));
  });
}

export function causalForwardSync(
  core: GpuCore,
  a: GpuSyncArgs & { state?: GPUBuffer; pack?: boolean },
): { out: GPUBuffer; state: GPUBuffer; stateOffset: number } {
  const fn = 'causalForwardSync';
  return core.ctx.scopedSync(fn, () => {
    const { c, q, k, v, omega } = core.syncInputs(fn, a);
    const { b, h, t, m, dv } = c.dims;
    const bh = b * h;
    const sw = stateWords(m, dv);
    const state = a.state === undefined ? undefined : core.checkGpuBuffer(fn, 'state', a.state, bh * sw * 4);
    const kind = core.forwardKind();
    const L = layout(kind, c, !!state, false, core.env);
    const W = core.workBuffer(fn, L, c, c.dims);
    const outWords = bh * t * dv;
    const out = core.newOutput(outWords + (a.pack ? bh * sw : 0), `${fn} out`, true);
    const st = a.pack ? out : core.newOutput(bh * sw, `${fn} state`, true);
    const stateOffset = a.pack ? outWords * 4 : 0;
    const before = omega(W, L);
    if (state) before.push({ src: state, srcOffset: 0, dst: W, dstOffset: L.stateInOff * 4, size: bh * sw * 4 });
    try {
      core.dispatchSync(fn, kind, c, L, { hasState: !!state, hasDState: false }, [W, q, k, v, out], before, [
        { src: W, srcOffset: L.stateOutOff * 4, dst: st, dstOffset: stateOffset, size: bh * sw * 4 },
      ]);
    } catch (e) {
      core.release(out);
      if (st !== out) core.release(st);
      throw e;
    } finally {
      core.release(W);
    }
    core.stats = { ioBytes: 4 * bh * t * (2 * c.dims.d + 2 * dv), scratchBytes: L.words * 4 };
    return { out, state: st, stateOffset };
  });
}

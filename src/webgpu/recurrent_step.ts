/// <reference types="@webgpu/types" />
/** One decoding step on the GPU. */
import { ArgError, checkDims, checkState } from '../kernels/validate.ts';
import type { CausalForwardResult, StepArgs } from '../kernels/types.ts';
import type { GpuCore } from './core.ts';
import * as forward from './causal_forward.ts';

export function recurrentStep(core: GpuCore, a: StepArgs): Promise<CausalForwardResult> {
  const fn = 'recurrentStep';
  return core.guard(() => {
    if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected an arguments object`);
    const dims = checkDims(fn, { ...(a.dims as object), t: 1 });
    const c = core.common(fn, { ...a, dims, chunk: 1 });
    const state = checkState(fn, 'state', a.state, dims, c.feature);
    return forward.forwardImpl(core, fn, { ...a, dims, chunk: 1, state }, c);
  });
}

/**
 * Multi-head Performer attention as a TF.js op whose gradient calls the fused backward kernel,
 * so autograd keeps only `q, k, v` (and the output), never a `[T, M, D]` tensor.
 *
 * The carried state lives outside TF.js (float64 arrays): it goes in through `state`, comes out
 * through the result, and its gradient travels through `stateGrad` — the upstream gradient of
 * the output state in, the gradient of the input state out. That is exactly what slice-by-slice
 * (SLiM) training needs: the surrogate term ⟨state_end, G⟩ is the upstream `G`.
 */
import * as tf from '@tensorflow/tfjs';
import type { AttnState, FeatureMap, StateGrad } from '../kernels/types.ts';
import { ArgError } from '../kernels/validate.ts';
import type { SyncKernels } from '../kernels/interface.ts';
import { checkTensor } from './ops/check.ts';

export interface AttentionOptions {
  /** A kernel instance from `init()`. */
  kernels: SyncKernels;
  feature: FeatureMap;
  /** `[h, m, d]` random features (required for favor). */
  omega?: Float32Array;
  /** Number of features `m` (defaults to `d` when there is no omega). */
  m?: number;
  causal: boolean;
  chunk?: number;
  /** Causal only: the state to continue from (default empty). */
  state?: AttnState;
  /** Causal only: the gradient of the output state, and where the input state's gradient goes. */
  stateGrad?: { upstream?: StateGrad; onInput?: (g: StateGrad) => void };
}

export interface AttentionResult {
  /** `[b, h, t, dv]` */
  out: tf.Tensor4D;
  /** The output state (causal only). */
  state?: AttnState;
}

function f32(t: tf.Tensor): Float32Array {
  const d = t.dataSync();
  return d instanceof Float32Array ? d : Float32Array.from(d);
}

/**
 * `q, k: [b, h, t, d]`, `v: [b, h, t, dv]` → `out: [b, h, t, dv]`. Works on any TF.js backend
 * (data is read back to run the wasm kernels).
 */
export function performerAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: AttentionOptions): AttentionResult {
  const fn = 'performerAttention';
  checkTensor(fn, 'q', q, { dtype: 'float32', rank: 4, desc: '[b, h, t, d]' });
  const [b, h, t, d] = q.shape;
  checkTensor(fn, 'k', k, { dtype: 'float32', shape: q.shape, desc: `[${q.shape}] (q's shape)` });
  checkTensor(fn, 'v', v, { dtype: 'float32', shape: [b, h, t, null], desc: `[${b}, ${h}, ${t}, dv]` });
  const dv = v.shape[3];
  if (typeof o !== 'object' || o === null) throw new ArgError(`${fn}: expected an options object { kernels, feature, causal, … }, got ${String(o)}`);
  const K = o.kernels as unknown;
  if (typeof K !== 'object' || K === null || typeof (K as SyncKernels).causalForward !== 'function' || (K as { backend?: string }).backend !== 'wasm') {
    throw new ArgError(
      `${fn}: kernels must be a wasm kernel instance from init() (TF.js ops are synchronous: WebGPU kernels go to performerAttentionWebGPU; a worker pool cannot serve them), got ${String(K)}`,
    );
  }
  if (typeof o.causal !== 'boolean') throw new ArgError(`${fn}: causal must be a boolean, got ${String(o.causal)}`);
  if (!o.causal && (o.state || o.stateGrad)) throw new ArgError(`${fn}: state is only defined for causal attention`);
  if (o.omega !== undefined && o.omega !== null) {
    if (!(o.omega instanceof Float32Array) || o.omega.length === 0 || o.omega.length % (h * d) !== 0) {
      throw new ArgError(
        `${fn}: omega must be a Float32Array [h, m, d] = [${h}, m, ${d}] (a length that is a positive multiple of ${h * d}), got ${o.omega instanceof Float32Array ? `length ${o.omega.length}` : String(o.omega)}`,
      );
    }
  }
  const m = o.m ?? (o.omega ? o.omega.length / (h * d) : d);
  if (o.omega && m * h * d !== o.omega.length)
    throw new ArgError(`${fn}: m is ${m} but omega holds ${o.omega.length / (h * d)} features per head ([h, m, d] = [${h}, ?, ${d}])`);
  const dims = { b, h, t, d, m, dv };
  const spec = { feature: o.feature, omega: o.omega, chunk: o.chunk };
  let stateOut: AttnState | undefined;

  const op = tf.customGrad((qi, ki, vi, save) => {
    const args = { q: f32(qi as tf.Tensor), k: f32(ki as tf.Tensor), v: f32(vi as tf.Tensor), dims, ...spec };
    let out: Float32Array;
    if (o.causal) {
      const r = o.kernels.causalForward({ ...args, state: o.state });
      out = r.out;
      stateOut = r.state;
    } else {
      out = o.kernels.bidirectionalForward(args).out;
    }
    const value = tf.tensor4d(out, [b, h, t, dv]);
    (save as (ts: tf.Tensor[]) => void)([qi as tf.Tensor, ki as tf.Tensor, vi as tf.Tensor]);
    const forwardState = stateOut;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv] = saved;
        const again = { q: f32(sq), k: f32(sk), v: f32(sv), dims, ...spec, dOut: f32(dy) };
        let g: { dq: Float32Array; dk: Float32Array; dv: Float32Array };
        if (o.causal) {
          const r = o.kernels.causalBackward({ ...again, stateIn: o.state, stateOut: forwardState!, out, dState: o.stateGrad?.upstream });
          o.stateGrad?.onInput?.(r.dState);
          g = r;
        } else {
          g = o.kernels.bidirectionalBackward(again);
        }
        return [tf.tensor4d(g.dq, [b, h, t, d]), tf.tensor4d(g.dk, [b, h, t, d]), tf.tensor4d(g.dv, [b, h, t, dv])];
      },
    };
  });
  const out = op(q, k, v) as tf.Tensor4D;
  return { out, state: stateOut };
}

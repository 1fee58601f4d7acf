/// <reference types="@webgpu/types" />
/**
 * Performer attention as a TF.js op on the `webgpu` backend, on TF.js's own GPU buffers: the
 * counterpart of `performerAttention` (op.ts) with the WebGPU kernels. It is synchronous like any
 * TF.js op (the kernels' `…Sync` calls encode and submit without waiting), differentiable through
 * `tf.customGrad` (the gradient runs the fused backward kernel; autograd keeps q, k, v only), and
 * no tensor data goes through the CPU:
 *
 * - inputs reach the kernels as GPU copies (`tensor.dataToGPU()`), outputs become tensors from
 *   GPU buffers (`tf.tensor({ buffer })`, another GPU copy into a buffer TF.js owns);
 * - the carried state is a tensor too, `[b·h, gpuStateWords(m, dv)]` in the kernels' GPU layout
 *   (float32 hi/lo pairs and the FAVOR+ offset, src/webgpu/state.ts), and the gradient flows
 *   through it both ways: into `state` (an input of the op) and out of the returned state (packed
 *   with `out` into one op output, then sliced), so slices chained in one tape get exactly the
 *   gradient of the whole sequence, and SLiM's surrogate ⟨state_end, G⟩ is a plain TF.js product.
 *
 * GPU errors (validation, out of memory) are reported by the device after the call returns: they
 * are thrown by the next kernel call, or awaited with `kernels.flush()`.
 */
import * as tf from '@tensorflow/tfjs';
import type { FeatureMap } from '../kernels/types.ts';
import type { WebGPUKernels } from '../webgpu/kernels.ts';
import { gpuStateWords } from '../webgpu/state.ts';

/** The parts of tfjs-backend-webgpu's `WebGPUBackend` used here. */
interface TfWebGPUBackend {
  device: GPUDevice;
  uploadToGPU(dataId: object): void;
}

function webgpuBackend(fn: string): TfWebGPUBackend {
  if (tf.getBackend() !== 'webgpu')
    throw new Error(`${fn}: the TF.js backend is '${tf.getBackend()}', not 'webgpu' (use performerAttention with the wasm kernels)`);
  const be = tf.backend() as unknown as Partial<TfWebGPUBackend>;
  if (!be.device || typeof be.uploadToGPU !== 'function')
    throw new Error(`${fn}: the 'webgpu' TF.js backend exposes no GPUDevice (expected @tensorflow/tfjs-backend-webgpu 4.x)`);
  return be as TfWebGPUBackend;
}

/** TF.js's GPUDevice (the TF.js backend must be `webgpu`): create the kernels on it, `initWebGPU({ device: tfjsWebGPUDevice() })`. */
export function tfjsWebGPUDevice(): GPUDevice {
  return webgpuBackend('tfjsWebGPUDevice').device;
}

export interface WebGPUAttentionOptions {
  /** WebGPU kernels on TF.js's device (`initWebGPU({ device: tfjsWebGPUDevice() })`). */
  kernels: WebGPUKernels;
  feature: FeatureMap;
  /** `[h, m, d]` random features (required for favor): host values or a tensor (not differentiated). */
  omega?: Float32Array | tf.Tensor3D;
  /** Number of features `m` (defaults to `d` when there is no omega). */
  m?: number;
  causal: boolean;
  chunk?: number;
  /** Causal only: the state to continue from, `[b·h, gpuStateWords(m, dv)]` (default empty). */
  state?: tf.Tensor2D;
  /** Causal only: return the output state (default true; without it `out` needs no slicing). */
  returnState?: boolean;
}

export interface WebGPUAttentionResult {
  /** `[b, h, t, dv]` */
  out: tf.Tensor4D;
  /** Causal with `returnState` (the default): the output state, `[b·h, gpuStateWords(m, dv)]`. */
  state?: tf.Tensor2D;
}

function shapeOf(fn: string, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: WebGPUAttentionOptions) {
  for (const [name, x] of [
    ['q', q],
    ['k', k],
    ['v', v],
  ] as const) {
    if (!(x instanceof tf.Tensor) || x.rank !== 4)
      throw new TypeError(`${fn}: ${name} must be a rank-4 tensor [b, h, t, ·], got ${x instanceof tf.Tensor ? `rank ${x.rank}` : typeof x}`);
    if (x.dtype !== 'float32') throw new TypeError(`${fn}: ${name} must be float32, got ${x.dtype}`);
  }
  const [b, h, t, d] = q.shape;
  if (k.shape.join() !== q.shape.join()) throw new TypeError(`${fn}: k must have q's shape [${q.shape}], got [${k.shape}]`);
  if (v.shape[0] !== b || v.shape[1] !== h || v.shape[2] !== t) throw new TypeError(`${fn}: v must be [${b}, ${h}, ${t}, dv], got [${v.shape}]`);
  const om = o.omega;
  const m = o.m ?? (om ? (om instanceof tf.Tensor ? om.shape[1] : om.length / (h * d)) : d);
  if (om instanceof tf.Tensor && om.shape.join() !== [h, m, d].join())
    throw new TypeError(`${fn}: omega must be [h, m, d] = [${h}, ${m}, ${d}], got [${om.shape}]`);
  const dims = { b, h, t, d, m, dv: v.shape[3] };
  const sw = gpuStateWords(m, dims.dv);
  if (o.state !== undefined) {
    if (!o.causal) throw new TypeError(`${fn}: state is only defined for causal attention`);
    if (!(o.state instanceof tf.Tensor) || o.state.shape.join() !== [b * h, sw].join() || o.state.dtype !== 'float32') {
      throw new TypeError(
        `${fn}: state must be a float32 tensor [b·h, gpuStateWords(m, dv)] = [${b * h}, ${sw}], got ${o.state instanceof tf.Tensor ? `${o.state.dtype} [${o.state.shape}]` : typeof o.state}`,
      );
    }
  }
  return { dims, sw };
}

/**
 * Runs `body` on GPU copies of `ts` (copied on the GPU after TF.js submitted the work that
 * produces them) and frees the copies once `body` has submitted its own work.
 */
function onGPU<T>(be: TfWebGPUBackend, ts: tf.Tensor[], body: (bufs: GPUBuffer[]) => T): T {
  const got: Array<{ buffer: GPUBuffer; tensorRef: tf.Tensor }> = [];
  try {
    for (const x of ts) {
      be.uploadToGPU(x.dataId); // a tensor made from host values lives on the host until first used
      got.push(x.dataToGPU() as { buffer: GPUBuffer; tensorRef: tf.Tensor });
    }
    return body(got.map((g) => g.buffer));
  } finally {
    for (const g of got) g.tensorRef.dispose();
  }
}

/** A tensor holding a GPU copy of a kernel output `buf` (exactly its size), which goes back to the kernels' pool. */
function wrap<R extends tf.Rank>(K: WebGPUKernels, buf: GPUBuffer, shape: number[]): tf.Tensor<R> {
  try {
    return tf.tensor<R>({ buffer: buf }, shape as tf.ShapeMap[R], 'float32');
  } finally {
    K.release(buf); // TF.js submitted its copy already: later reuse of `buf` is ordered after it
  }
}

/**
 * Causal or bidirectional Performer attention on the `webgpu` TF.js backend:
 * `q, k: [b, h, t, d]`, `v: [b, h, t, dv]` → `out: [b, h, t, dv]` (and the output state).
 */
export function performerAttentionWebGPU(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: WebGPUAttentionOptions): WebGPUAttentionResult {
  const fn = 'performerAttentionWebGPU';
  const be = webgpuBackend(fn);
  if (typeof o !== 'object' || o === null || !o.kernels || o.kernels.backend !== 'webgpu')
    throw new TypeError(`${fn}: options.kernels must be WebGPU kernels (initWebGPU)`);
  const K = o.kernels;
  if (K.device !== be.device)
    throw new Error(`${fn}: the kernels run on another GPUDevice than TF.js (create them with initWebGPU({ device: tfjsWebGPUDevice() }))`);
  const { dims, sw } = shapeOf(fn, q, k, v, o);
  const { b, h, t, d, dv } = dims;
  const n = b * h * t * dv;
  const packed = o.causal && o.returnState !== false;
  const omegaT = o.omega instanceof tf.Tensor ? o.omega : undefined;
  const omegaHost = o.omega instanceof tf.Tensor ? undefined : o.omega;
  const hasState = o.state !== undefined;
  const spec = { dims, feature: o.feature, chunk: o.chunk };
  // Inputs of the op: q, k, v, [state], [omega] (omega gets a zero gradient: it is a constant).
  const inputs: tf.Tensor[] = [q, k, v, ...(hasState ? [o.state!] : []), ...(omegaT ? [omegaT] : [])];
  const split = (bufs: GPUBuffer[]) => ({
    q: bufs[0],
    k: bufs[1],
    v: bufs[2],
    state: hasState ? bufs[3] : undefined,
    omega: omegaT ? bufs[inputs.length - 1] : omegaHost,
  });

  const op = tf.customGrad((...args) => {
    const save = args.pop() as (ts: tf.Tensor[]) => void;
    const xs = args as tf.Tensor[];
    const value = onGPU(be, xs, (bufs) => {
      const x = split(bufs);
      if (!o.causal) return wrap(K, K.bidirectionalForwardSync({ ...spec, ...x }).out, [b, h, t, dv]);
      const r = K.causalForwardSync({ ...spec, ...x, pack: packed });
      if (!packed) {
        K.release(r.state);
        return wrap(K, r.out, [b, h, t, dv]);
      }
      return wrap(K, r.out, [n + b * h * sw]);
    });
    save(xs);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        onGPU(be, [...saved, dy], (bufs) => {
          const x = split(bufs);
          const dyb = bufs[bufs.length - 1];
          const grads: tf.Tensor[] = [];
          if (o.causal) {
            const g = K.causalBackwardSync({
              ...spec,
              ...x,
              stateIn: x.state,
              dOut: dyb,
              dState: packed ? dyb : undefined,
              dStateOffset: packed ? n * 4 : undefined,
            });
            grads.push(wrap(K, g.dq, [b, h, t, d]), wrap(K, g.dk, [b, h, t, d]), wrap(K, g.dv, [b, h, t, dv]));
            if (hasState) grads.push(wrap(K, g.dStateIn, [b * h, sw]));
            else K.release(g.dStateIn);
          } else {
            const g = K.bidirectionalBackwardSync({ ...spec, ...x, dOut: dyb });
            grads.push(wrap(K, g.dq, [b, h, t, d]), wrap(K, g.dk, [b, h, t, d]), wrap(K, g.dv, [b, h, t, dv]));
          }
          if (omegaT) grads.push(tf.zerosLike(omegaT));
          return grads;
        }),
    };
  });

  if (!packed) return { out: op(...inputs) as tf.Tensor4D };
  const [out, state] = tf.tidy(() => {
    const p = op(...inputs);
    return [tf.reshape(tf.slice(p, [0], [n]), [b, h, t, dv]) as tf.Tensor4D, tf.reshape(tf.slice(p, [n], [b * h * sw]), [b * h, sw]) as tf.Tensor2D];
  });
  return { out: out as tf.Tensor4D, state: state as tf.Tensor2D };
}

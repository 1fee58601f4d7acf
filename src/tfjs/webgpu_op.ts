/// <reference types="@webgpu/types" />
/**
 * Performer attention on TF.js's own GPU buffers (issue 4, item 3): when the TF.js backend is
 * `webgpu`, q, k, v (and the upstream gradient) are handed to the WebGPU kernels as GPUBuffers
 * (`tensor.dataToGPU()`, a GPU→GPU copy) and the results come back as tensors made from
 * GPUBuffers (`tf.tensor({ buffer }, …)`, again a GPU→GPU copy). No tensor data goes through the
 * CPU; only the small carried state (`[b·h, m·dv + m + 1]` floats) is read back, as float64.
 *
 * The kernels are asynchronous (pipeline creation, error scopes, the state readback), so this is
 * an async API, not a `tf.customGrad` op: `performerAttentionGPU` is the forward and
 * `performerAttentionGPUBackward` the gradient; a training step calls the backward itself with
 * the upstream gradient of `out` (e.g. from `tf.grads` of the rest of the graph). Causal only:
 * the bidirectional kernels have no GPUBuffer variants yet.
 */
import * as tf from '@tensorflow/tfjs';
import type { AttnState, FeatureMap, StateGrad } from '../types.ts';
import { initWebGPU, type WebGPUKernels, type WebGPUOptions } from '../webgpu/kernels.ts';

/** The parts of tfjs-backend-webgpu's `WebGPUBackend` used here. */
interface TfWebGPUBackend {
  device: GPUDevice;
  uploadToGPU(dataId: object): void;
}

function webgpuBackend(fn: string): TfWebGPUBackend {
  if (tf.getBackend() !== 'webgpu') throw new Error(`${fn}: the TF.js backend is '${tf.getBackend()}', not 'webgpu' (use performerAttention)`);
  const be = tf.backend() as unknown as Partial<TfWebGPUBackend>;
  if (!be.device || typeof be.uploadToGPU !== 'function') throw new Error(`${fn}: the 'webgpu' TF.js backend exposes no GPUDevice (expected @tensorflow/tfjs-backend-webgpu 4.x)`);
  return be as TfWebGPUBackend;
}

/** WebGPU kernels on TF.js's own GPUDevice (the TF.js backend must be `webgpu`). */
export function initTfjsWebGPUKernels(opts: Omit<WebGPUOptions, 'device' | 'adapter'> = {}): Promise<WebGPUKernels> {
  try {
    const be = webgpuBackend('initTfjsWebGPUKernels');
    return initWebGPU({ ...opts, device: be.device });
  } catch (e) {
    return Promise.reject(e);
  }
}

export interface GPUAttentionOptions {
  /** From `initTfjsWebGPUKernels()` (it must share TF.js's GPUDevice). */
  kernels: WebGPUKernels;
  feature: FeatureMap;
  /** `[h, m, d]` random features (required for favor). */
  omega?: Float32Array;
  /** Number of features `m` (defaults to `d` when there is no omega). */
  m?: number;
  chunk?: number;
  /** The state to continue from (default empty). */
  state?: AttnState;
}

function check(fn: string, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: GPUAttentionOptions): TfWebGPUBackend {
  const be = webgpuBackend(fn);
  if (o.kernels.device !== be.device) throw new Error(`${fn}: the kernels run on another GPUDevice than TF.js (create them with initTfjsWebGPUKernels)`);
  const [b, h, t] = q.shape;
  if (k.shape.join() !== q.shape.join()) throw new TypeError(`${fn}: k must have q's shape [${q.shape}], got [${k.shape}]`);
  if (v.shape[0] !== b || v.shape[1] !== h || v.shape[2] !== t) throw new TypeError(`${fn}: v must be [${b}, ${h}, ${t}, dv], got [${v.shape}]`);
  for (const [name, x] of [['q', q], ['k', k], ['v', v]] as const) {
    if (x.dtype !== 'float32') throw new TypeError(`${fn}: ${name} must be float32, got ${x.dtype}`);
  }
  return be;
}

function dimsOf(q: tf.Tensor4D, v: tf.Tensor4D, o: GPUAttentionOptions) {
  const [b, h, t, d] = q.shape;
  const m = o.m ?? (o.omega ? o.omega.length / (h * d) : d);
  return { b, h, t, d, m, dv: v.shape[3] };
}

/** Runs `body` on GPU copies of `ts` (made on the GPU), freeing the copies afterwards. */
async function onGPU<T>(be: TfWebGPUBackend, ts: tf.Tensor[], body: (bufs: GPUBuffer[]) => Promise<T>): Promise<T> {
  const got: Array<{ buffer: GPUBuffer; tensorRef: tf.Tensor }> = [];
  try {
    for (const x of ts) {
      // A tensor made from host values lives on the host until first used: move it to the GPU
      // the way TF.js itself would (an upload, not a readback).
      be.uploadToGPU(x.dataId);
      got.push(x.dataToGPU() as { buffer: GPUBuffer; tensorRef: tf.Tensor });
    }
    return await body(got.map((g) => g.buffer));
  } finally {
    for (const g of got) g.tensorRef.dispose();
  }
}

/**
 * A tensor holding a GPU copy of `buf` (a kernel output), which goes back to the kernels' pool.
 * TF.js reads a tensor's whole buffer (`data()` would return the pool's 256-byte padding too), so
 * a padded output is first copied on the GPU into an exact-size buffer; TF.js then copies that
 * into a buffer it owns and frees with the tensor.
 */
function wrap<R extends tf.Rank>(K: WebGPUKernels, buf: GPUBuffer, shape: number[]): tf.Tensor<R> {
  const bytes = 4 * shape.reduce((a, x) => a * x, 1);
  const dev = K.device;
  let exact: GPUBuffer | undefined;
  try {
    if (buf.size !== bytes) {
      exact = dev.createBuffer({ size: bytes, usage: 0x80 | 0x04 | 0x08 /* STORAGE | COPY_SRC | COPY_DST */, label: 'performerAttentionGPU output' });
      const enc = dev.createCommandEncoder();
      enc.copyBufferToBuffer(buf, 0, exact, 0, bytes);
      dev.queue.submit([enc.finish()]);
    }
    return tf.tensor<R>({ buffer: exact ?? buf }, shape as tf.ShapeMap[R], 'float32');
  } finally {
    // TF.js encoded and submitted its copy already: later reuse of `buf` (and the deferred
    // destruction of `exact`) are ordered after it on the queue.
    K.release(buf);
    exact?.destroy();
  }
}

/**
 * Causal Performer attention on the `webgpu` TF.js backend without a CPU round trip:
 * `q, k: [b, h, t, d]`, `v: [b, h, t, dv]` → `out: [b, h, t, dv]` and the output state.
 */
export async function performerAttentionGPU(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, o: GPUAttentionOptions): Promise<{ out: tf.Tensor4D; state: AttnState }> {
  const fn = 'performerAttentionGPU';
  const be = check(fn, q, k, v, o);
  const dims = dimsOf(q, v, o);
  return onGPU(be, [q, k, v], async ([qb, kb, vb]) => {
    const r = await o.kernels.causalForwardGPU({ q: qb, k: kb, v: vb, dims, feature: o.feature, omega: o.omega, chunk: o.chunk, state: o.state });
    return { out: wrap<tf.Rank.R4>(o.kernels, r.out, [dims.b, dims.h, dims.t, dims.dv]), state: r.state };
  });
}

/**
 * Gradients of `performerAttentionGPU` given the upstream gradient `dOut` of `out` (and `dState`
 * of the output state): `dq, dk, dv` as tensors on the GPU and the input state's gradient.
 * `stateOut` is the state the forward returned.
 */
export async function performerAttentionGPUBackward(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  dOut: tf.Tensor4D,
  o: GPUAttentionOptions & { stateOut: AttnState; dState?: StateGrad },
): Promise<{ dq: tf.Tensor4D; dk: tf.Tensor4D; dv: tf.Tensor4D; dState: StateGrad }> {
  const fn = 'performerAttentionGPUBackward';
  const be = check(fn, q, k, v, o);
  if (dOut.shape.join() !== v.shape.join()) throw new TypeError(`${fn}: dOut must have v's shape [${v.shape}], got [${dOut.shape}]`);
  const dims = dimsOf(q, v, o);
  return onGPU(be, [q, k, v, dOut], async ([qb, kb, vb, gb]) => {
    const g = await o.kernels.causalBackwardGPU({
      q: qb, k: kb, v: vb, dOut: gb, dims, feature: o.feature, omega: o.omega, chunk: o.chunk,
      stateIn: o.state, stateOut: o.stateOut, dState: o.dState,
    });
    const { b, h, t, d } = dims;
    return {
      dq: wrap<tf.Rank.R4>(o.kernels, g.dq, [b, h, t, d]),
      dk: wrap<tf.Rank.R4>(o.kernels, g.dk, [b, h, t, d]),
      dv: wrap<tf.Rank.R4>(o.kernels, g.dv, [b, h, t, dims.dv]),
      dState: g.dState,
    };
  });
}

/**
 * tfjs-softmax: causal softmax attention on @tensorflow/tfjs-backend-wasm (SIMD, one thread).
 *
 * tfjs-wasm's BatchMatMul reaches XNNPACK only for batch 1 without transpose flags (otherwise a
 * scalar loop), so the fair baseline loops over heads with 2-D matMuls and an explicit
 * transpose: per head  S = (q/√d) kᵀ + mask, P = softmax(S), out = P v, with mask a
 * precomputed [T,T] tensor holding −1e9 above the diagonal. Forward+backward: one tf.grads over
 * all heads (as in training: the tape holds every head's activations), d/dq, d/dk, d/dv.
 * Timed calls include uploading q, k, v (tf.tensor) and reading the results back (dataSync).
 * Peak memory: tf.profile peakBytes (engine tensor bytes, mask included; tfjs counts bytes per
 * tensor, so tensors sharing a buffer, e.g. reshapes and pass-through gradients, count twice).
 * The JSON also holds the wasm heap high-water mark (fresh backend per case).
 */
import type { BenchCase, Inputs, Method, Mode } from '../harness/types.ts';
import { tf, tfjsReady, tfjsReset, tfjsTrim, profiledRun } from '../harness/tfjs.ts';

interface Ctx {
  c: BenchCase;
  x: Inputs;
  mask: tf.Tensor2D; // [T,T]
  scale: tf.Scalar;
}

/** [T,T] additive causal mask: 0 on/below the diagonal, −1e9 above. */
function causalMask(t: number): tf.Tensor2D {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) m.fill(-1e9, i * t + i + 1, (i + 1) * t);
  return tf.tensor2d(m, [t, t]);
}

/** One head: q, k [T,d], v [T,D] → [T,D]. */
function head(ctx: Ctx, q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D): tf.Tensor2D {
  const kT = tf.transpose(k); // [d,T]
  const s = tf.matMul(tf.mul(q, ctx.scale), kT); // [T,T]
  const p = tf.softmax(tf.add(s, ctx.mask)); // [T,T], row softmax
  return tf.matMul(p, v); // [T,D]
}

/** Per-head 2-D views of a [b·h, T, w] array. */
function heads(a: Float32Array, c: BenchCase, w: number): tf.Tensor2D[] {
  const n = c.t * w;
  return Array.from({ length: c.b * c.h }, (_, i) => tf.tensor2d(a.subarray(i * n, (i + 1) * n), [c.t, w]));
}

function fwd(ctx: Ctx): Float32Array {
  const { c, x } = ctx;
  const out = new Float32Array(c.b * c.h * c.t * c.dv);
  const n = c.t;
  for (let i = 0; i < c.b * c.h; i++) {
    tf.tidy(() => {
      const q = tf.tensor2d(x.q.subarray(i * n * c.d, (i + 1) * n * c.d), [n, c.d]);
      const k = tf.tensor2d(x.k.subarray(i * n * c.d, (i + 1) * n * c.d), [n, c.d]);
      const v = tf.tensor2d(x.v.subarray(i * n * c.dv, (i + 1) * n * c.dv), [n, c.dv]);
      out.set(head(ctx, q, k, v).dataSync(), i * n * c.dv);
    });
  }
  return out;
}

function fwdbwd(ctx: Ctx): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { c, x } = ctx;
  const H = c.b * c.h;
  const xs = [...heads(x.q, c, c.d), ...heads(x.k, c, c.d), ...heads(x.v, c, c.dv)];
  const dy = tf.tensor2d(x.dOut, [H * c.t, c.dv]);
  try {
    const f = (...a: tf.Tensor[]) =>
      tf.concat(
        Array.from({ length: H }, (_, i) => head(ctx, a[i] as tf.Tensor2D, a[H + i] as tf.Tensor2D, a[2 * H + i] as tf.Tensor2D)),
        0,
      );
    const g = tf.grads(f)(xs, dy);
    const read = (from: number, w: number) => {
      const r = new Float32Array(H * c.t * w);
      for (let i = 0; i < H; i++) r.set(g[from + i].dataSync(), i * c.t * w);
      return r;
    };
    const res = { dq: read(0, c.d), dk: read(H, c.d), dv: read(2 * H, c.dv) };
    tf.dispose(g);
    return res;
  } finally {
    tf.dispose([...xs, dy]);
  }
}

/**
 * Flops per head, counting the full T×T work tfjs does (no causal skipping):
 * fwd  = T·d (scale q) + 2T²d (QKᵀ) + T² (mask) + 5T² (softmax: max, sub, exp, sum, div) + 2T²D (PV)
 * bwd  = 2T²D (dP = dO Vᵀ) + 2T²D (dV = Pᵀ dO) + 4T² (softmax grad) + 2T²d (dQ) + 2T²d (dK) + T·d
 */
function flops(c: BenchCase, mode: Mode): number {
  const { t: T, d, dv: D } = c;
  const f = T * d + 2 * T * T * d + T * T + 5 * T * T + 2 * T * T * D;
  const b = 4 * T * T * D + 4 * T * T + 4 * T * T * d + T * d;
  return c.b * c.h * (mode === 'fwd' ? f : f + b);
}

/**
 * Rough peak: mask 4T² plus, per head, S, S+mask, P (3·4T² bytes). Forward frees each head
 * (tidy); forward+backward keeps every head on the tape, plus ~3·4T² of gradient temporaries.
 */
function estimateBytes(c: BenchCase, mode: Mode): number {
  const T2 = 4 * c.t * c.t;
  return mode === 'fwd' ? T2 * 4 : T2 * (1 + 3 * c.b * c.h + 3);
}

export const tfjsSoftmax: Method<Ctx> = {
  name: 'tfjs-softmax',
  about: 'causal softmax attention, tfjs-backend-wasm (SIMD, 1 thread), per-head 2-D matMuls, tf.grads',
  reference: 'softmax',
  dependsOnM: false,
  modes: ['fwd', 'fwdbwd'],
  init: tfjsReady,
  supports: () => true,
  estimateBytes,
  async setup(c, x) {
    await tfjsReset(); // fresh wasm heap: its size after a call is that call's high-water mark
    return { c, x, mask: causalMask(c.t), scale: tf.scalar(1 / Math.sqrt(c.d)) };
  },
  fwd,
  fwdbwd,
  measure: (ctx, mode) => profiledRun(() => (mode === 'fwd' ? fwd(ctx) : fwdbwd(ctx))),
  flops,
  async dispose(ctx) {
    tf.dispose([ctx.mask, ctx.scale]);
    await tfjsTrim();
  },
  recover: tfjsReset,
};

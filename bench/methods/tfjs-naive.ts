/**
 * tfjs-naive-linear: the causal linear attention a TF.js user writes, all heads batched, on the
 * wasm backend. Shapes per call (H = b·h):
 *   x' = x·d^(-1/4);  φ(x) = exp(x' ωᵀ − |x'|²/2)            [H,T,M]   (FAVOR+, no stabiliser)
 *   KV_j = φk_j v_jᵀ                                          [H,T,M,D] (broadcast mul)
 *   S = cumsum_T(KV)  via transpose → [H,M,D,T], cumsum on the last axis, transpose back
 *        (tf.cumsum's gradient fails on a non-last axis)
 *   num_i = φq_i S_i   via matMul [H·T,1,M] × [H·T,M,D]           [H,T,D]
 *   z = cumsum_T(φk)   (same transpose trick)                     [H,T,M]
 *   out = num / Σ_M(φq ∘ z)
 * Forward+backward: tf.grads w.r.t. q, k, v. Timed calls include the upload of q, k, v and the
 * read-back of the results. Peak memory: tf.profile peakBytes (engine tensor bytes; see
 * tfjs-softmax.ts); the JSON also holds the wasm heap high-water mark.
 */
import type { BenchCase, Inputs, Method, Mode } from '../harness/types.ts';
import { tf, tfjsReady, tfjsReset, tfjsTrim, profiledRun } from '../harness/tfjs.ts';

interface Ctx {
  c: BenchCase;
  x: Inputs;
  omega: tf.Tensor3D; // [H,M,d]
}

/** FAVOR+ features: x [H,T,d], omega [H,M,d] → [H,T,M]. */
function favor(x: tf.Tensor3D, omega: tf.Tensor3D, d: number): tf.Tensor3D {
  const xs = tf.mul(x, d ** -0.25);
  const u = tf.matMul(xs, omega, false, true); // [H,T,M]
  const half = tf.mul(tf.sum(tf.square(xs), -1, true), 0.5); // [H,T,1]
  return tf.exp(tf.sub(u, half)) as tf.Tensor3D;
}

/** Causal cumsum over axis 1 of [H,T,...rest], done on the last axis. */
function cumsumT(x: tf.Tensor): tf.Tensor {
  const r = x.rank;
  const perm = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1]; // T last
  const inv = [0, r - 1, ...Array.from({ length: r - 2 }, (_, i) => i + 1)];
  return tf.transpose(tf.cumsum(tf.transpose(x, perm), r - 1), inv);
}

function attention(ctx: Ctx, q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D): tf.Tensor3D {
  const { c } = ctx;
  const H = c.b * c.h;
  const { t: T, m: M, dv: D } = c;
  const fq = favor(q, ctx.omega, c.d); // [H,T,M]
  const fk = favor(k, ctx.omega, c.d); // [H,T,M]
  const kv = tf.mul(tf.reshape(fk, [H, T, M, 1]), tf.reshape(v, [H, T, 1, D])); // [H,T,M,D]
  const S = cumsumT(kv); // [H,T,M,D]
  const num = tf.matMul(tf.reshape(fq, [H * T, 1, M]), tf.reshape(S, [H * T, M, D])); // [H·T,1,D]
  const z = cumsumT(fk); // [H,T,M]
  const den = tf.sum(tf.mul(fq, z), -1, true); // [H,T,1]
  return tf.div(tf.reshape(num, [H, T, D]), den);
}

const shapeQ = (c: BenchCase): [number, number, number] => [c.b * c.h, c.t, c.d];
const shapeV = (c: BenchCase): [number, number, number] => [c.b * c.h, c.t, c.dv];

function fwd(ctx: Ctx): Float32Array {
  const { c, x } = ctx;
  return tf.tidy(() => {
    const out = attention(ctx, tf.tensor3d(x.q, shapeQ(c)), tf.tensor3d(x.k, shapeQ(c)), tf.tensor3d(x.v, shapeV(c)));
    return out.dataSync() as Float32Array;
  });
}

function fwdbwd(ctx: Ctx): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { c, x } = ctx;
  const xs = [tf.tensor3d(x.q, shapeQ(c)), tf.tensor3d(x.k, shapeQ(c)), tf.tensor3d(x.v, shapeV(c))];
  const dy = tf.tensor3d(x.dOut, shapeV(c));
  try {
    const g = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => attention(ctx, q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D))(xs, dy);
    const res = {
      dq: g[0].dataSync() as Float32Array,
      dk: g[1].dataSync() as Float32Array,
      dv: g[2].dataSync() as Float32Array,
    };
    tf.dispose(g);
    return res;
  } finally {
    tf.dispose([...xs, dy]);
  }
}

/**
 * Flops per head (elementwise ops count 1 per element, exp included):
 * features (q and k each): T·d (scale) + 2TMd (xωᵀ) + 2Td (|x|², ½) + 2TM (sub, exp)
 * fwd = 2·features + TMD (outer) + TMD (cumsum) + 2TMD (num) + TM (cumsum z) + 2TM (den) + TD (div)
 * bwd = 2TD (div grads) + 2TM + TM (den, z) + 4TMD (num matMul grads) + TMD (cumsum grad)
 *     + 4TMD (outer-product grads: Σ_D and Σ_M) + TM (z cumsum grad)
 *     + 2·(2TM (exp, sub) + 2TMd (dx = dℓ ω) + 3Td (|x|² and scale grads))
 */
function flops(c: BenchCase, mode: Mode): number {
  const { t: T, d, m: M, dv: D } = c;
  const feat = T * d + 2 * T * M * d + 2 * T * d + 2 * T * M;
  const f = 2 * feat + 4 * T * M * D + 3 * T * M + T * D;
  const b = 2 * T * D + 4 * T * M + 9 * T * M * D + 2 * (2 * T * M + 2 * T * M * d + 3 * T * d);
  return c.b * c.h * (mode === 'fwd' ? f : f + b);
}

/** Rough peak: four [T,M,D] float tensors per head in the forward (KV, its transpose, cumsum,
 *  transpose back); forward+backward ≈ 2.5× (tape + gradient tensors of the same size). */
function estimateBytes(c: BenchCase, mode: Mode): number {
  const fwdBytes = c.b * c.h * 4 * 4 * c.t * c.m * c.dv;
  return mode === 'fwd' ? fwdBytes : 2.5 * fwdBytes;
}

export const tfjsNaive: Method<Ctx> = {
  name: 'tfjs-naive-linear',
  about: 'naive causal linear attention in TF.js ([T,M,D] outer products + cumsum), wasm backend, tf.grads',
  reference: 'linear',
  dependsOnM: true,
  modes: ['fwd', 'fwdbwd'],
  init: tfjsReady,
  supports: () => true,
  estimateBytes,
  async setup(c, x) {
    await tfjsReset(); // fresh wasm heap: its size after a call is that call's high-water mark
    return { c, x, omega: tf.tensor3d(x.omega, [c.h, c.m, c.d]) };
  },
  fwd,
  fwdbwd,
  measure: (ctx, mode) => profiledRun(() => (mode === 'fwd' ? fwd(ctx) : fwdbwd(ctx))),
  flops,
  async dispose(ctx) {
    ctx.omega.dispose();
    await tfjsTrim();
  },
  recover: tfjsReset,
};

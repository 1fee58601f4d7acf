/**
 * The TF.js attention op (fused kernels, custom gradient) against the same computation written
 * with plain TF.js ops: explicit masked T×T score matrices for causal attention, the state terms
 * written out, offsets held constant. Values, `tf.grads` with respect to q, k, v, and the state
 * gradient through the side channel, on the cpu and wasm TF.js backends. Also: forward + gradient
 * through the op never creates a `[T, M, D]`-sized tensor.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { randomProjection } from '../../src/features/index.ts';
import { performerAttention } from '../../src/tfjs/op.ts';
import type { AttnState, Dims, FeatureMap, StateGrad } from '../../src/kernels/types.ts';
import { relErr } from '../util/assert.ts';
import { Rng } from '../util/rng.ts';
import { useTfjsBackend } from '../util/tfjs_backend.ts';

interface Problem extends Dims {
  feature: FeatureMap;
  omega?: Float32Array;
}

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** `[h, m, d]` → `[b, h, m, d]` tensor (tiled over the batch). */
function omegaTensor(p: Problem): tf.Tensor4D {
  return tf.tile(tf.tensor4d(p.omega!, [1, p.h, p.m, p.d]), [p.b, 1, 1, 1]) as tf.Tensor4D;
}

/** ℓ (favor) or u (other maps): `[b, h, t, m]`. */
function logits(x: tf.Tensor, p: Problem): tf.Tensor {
  if (p.feature === 'favor') {
    const xs = tf.mul(x, p.d ** -0.25);
    return tf.sub(tf.matMul(xs as tf.Tensor4D, omegaTensor(p), false, true), tf.div(tf.sum(tf.square(xs), -1, true), 2));
  }
  return p.omega ? tf.matMul(x as tf.Tensor4D, omegaTensor(p), false, true) : x;
}

/** Constant offsets: per query row (favor), and one key frame per (b, h) covering the state. */
function offsets(q: tf.Tensor, k: tf.Tensor, p: Problem, state?: AttnState): { cq: tf.Tensor; ck: tf.Tensor; s: tf.Tensor } {
  return tf.tidy(() => {
    const bh = p.b * p.h;
    if (p.feature !== 'favor') return { cq: tf.scalar(0), ck: tf.scalar(0), s: tf.ones([p.b, p.h, 1, 1]) };
    const cq = tf.max(logits(q, p), -1, true);
    const kmax = tf.max(logits(k, p), [2, 3]).dataSync();
    const ck = new Float32Array(bh);
    const s = new Float32Array(bh);
    for (let i = 0; i < bh; i++) {
      const off = state ? state.offset[i] : -Infinity;
      ck[i] = Math.max(kmax[i], off);
      s[i] = Math.exp(off - ck[i]);
    }
    return { cq, ck: tf.tensor4d(ck, [p.b, p.h, 1, 1]), s: tf.tensor4d(s, [p.b, p.h, 1, 1]) };
  });
}

function features(x: tf.Tensor, p: Problem, c: tf.Tensor): tf.Tensor {
  const l = logits(x, p);
  switch (p.feature) {
    case 'favor':
      return tf.exp(tf.sub(l, c));
    case 'relu':
      return tf.relu(l);
    default:
      throw new Error(`plain reference: ${p.feature} not written out`);
  }
}

/**
 * Plain TF.js attention: out = (M∘(ΦQ ΦKᵀ) V + s ΦQ S) / (M∘(ΦQ ΦKᵀ) 1 + s ΦQ z), M = tril (causal)
 * or all ones; output 0 where the denominator is 0. Also the output state in frame `offsetOut`.
 */
function plainAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  S: tf.Tensor | undefined,
  z: tf.Tensor | undefined,
  p: Problem & { causal: boolean },
  c: { cq: tf.Tensor; ck: tf.Tensor; s: tf.Tensor },
  offsetOut?: Float64Array,
): { out: tf.Tensor; S?: tf.Tensor; z?: tf.Tensor } {
  const phiQ = features(q, p, c.cq);
  const phiK = features(k, p, c.ck);
  let A = tf.matMul(phiQ as tf.Tensor4D, phiK as tf.Tensor4D, false, true); // [b, h, t, t]
  if (p.causal) A = tf.mul(A, tf.linalg.bandPart(tf.ones([p.t, p.t]), -1, 0));
  let num = tf.matMul(A as tf.Tensor4D, v as tf.Tensor4D);
  let den = tf.sum(A, -1, true);
  if (S && z) {
    num = tf.add(num, tf.mul(c.s, tf.matMul(phiQ as tf.Tensor4D, S as tf.Tensor4D)));
    den = tf.add(den, tf.mul(c.s, tf.matMul(phiQ as tf.Tensor4D, tf.expandDims(z, -1) as tf.Tensor4D)));
  }
  // The mask is a constant (read back, so the tape does not try to differentiate a comparison).
  const pos = tf.tensor(
    Uint8Array.from(den.dataSync(), (x) => (x > 0 ? 1 : 0)),
    den.shape,
    'bool',
  );
  const out = tf.where(tf.broadcastTo(pos, num.shape), tf.div(num, tf.where(pos, den, tf.onesLike(den))), tf.zerosLike(num));
  if (!p.causal) return { out };
  // State out, frame m_T: exp(ck − m_T) (s S_in + ΦKᵀ V).
  const bh = p.b * p.h;
  const ckv = c.ck.dataSync();
  const frame = tf.tensor4d(
    Float32Array.from({ length: bh }, (_, i) => (p.feature === 'favor' ? Math.exp(ckv[i] - offsetOut![i]) : 1)),
    [p.b, p.h, 1, 1],
  );
  let Sout = tf.matMul(phiK as tf.Tensor4D, v as tf.Tensor4D, true, false);
  let zout = tf.sum(phiK, 2);
  if (S && z) {
    Sout = tf.add(Sout, tf.mul(c.s, S));
    zout = tf.add(zout, tf.mul(tf.squeeze(c.s, [3]), z));
  }
  return { out, S: tf.mul(frame, Sout), z: tf.mul(tf.squeeze(frame, [3]), zout) };
}

function problem(feature: FeatureMap, withOmega: boolean, seed: number): Problem {
  const b = 2;
  const h = 2;
  const t = 13;
  const d = 8;
  const m = withOmega ? 12 : d;
  const dv = 6;
  return { b, h, t, d, m, dv, feature, omega: withOmega ? randomProjection({ h, m, d, seed }) : undefined };
}

let K: Kernels;
beforeAll(async () => {
  K = await init();
});
afterAll(() => K.dispose());

const TOL = 1e-5;

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`performerAttention on the ${backend} backend`, () => {
    beforeAll(async () => {
      await useTfjsBackend(backend);
      expect(tf.getBackend()).toBe(backend);
    });

    const cases: Array<{ feature: FeatureMap; omega: boolean; causal: boolean; state: boolean }> = [
      { feature: 'favor', omega: true, causal: true, state: false },
      { feature: 'favor', omega: true, causal: true, state: true },
      { feature: 'favor', omega: true, causal: false, state: false },
      { feature: 'relu', omega: true, causal: true, state: false },
      { feature: 'relu', omega: false, causal: true, state: true },
      { feature: 'relu', omega: false, causal: false, state: false },
    ];
    for (const cs of cases) {
      const name = `${cs.causal ? 'causal' : 'bidirectional'} ${cs.feature}${cs.omega ? '' : ' (no omega)'}${cs.state ? ', carried state' : ''}`;
      it(`${name}: value and tf.grads equal plain TF.js`, () => {
        const before = tf.memory().numTensors;
        tf.tidy(() => {
          const p = { ...problem(cs.feature, cs.omega, 7), causal: cs.causal };
          const { b, h, t, d, m, dv } = p;
          const rng = new Rng(11);
          const q = tf.tensor4d(randn(rng, b * h * t * d), [b, h, t, d]);
          const k = tf.tensor4d(randn(rng, b * h * t * d), [b, h, t, d]);
          const v = tf.tensor4d(randn(rng, b * h * t * dv), [b, h, t, dv]);
          const w = tf.tensor4d(randn(rng, b * h * t * dv), [b, h, t, dv]); // loss weights
          // A realistic carried state: what the kernels leave after a 9-token prefix.
          let state: AttnState | undefined;
          if (cs.state) {
            const pre = { b, h, t: 9, d, m, dv };
            state = K.causalForward({
              q: randn(rng, b * h * 9 * d),
              k: randn(rng, b * h * 9 * d),
              v: randn(rng, b * h * 9 * dv),
              dims: pre,
              feature: p.feature,
              omega: p.omega,
            }).state;
          }
          const up: StateGrad | undefined = cs.causal
            ? { S: Float64Array.from(randn(rng, b * h * m * dv)), z: Float64Array.from(randn(rng, b * h * m)) }
            : undefined;

          // The op.
          let stateOut: AttnState | undefined;
          let dState: StateGrad | undefined;
          const opGrads = tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) => {
            const r = performerAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, {
              kernels: K,
              feature: p.feature,
              omega: p.omega,
              m,
              causal: cs.causal,
              chunk: 4,
              ...(cs.causal ? { state, stateGrad: { upstream: up, onInput: (g: StateGrad) => (dState = g) } } : {}),
            });
            stateOut = r.state;
            return tf.sum(tf.mul(r.out, w));
          });
          const [gq, gk, gv] = opGrads([q, k, v]);
          const opOut = performerAttention(q, k, v, {
            kernels: K,
            feature: p.feature,
            omega: p.omega,
            m,
            causal: cs.causal,
            chunk: 4,
            ...(cs.causal ? { state } : {}),
          });

          // Plain TF.js, with the surrogate ⟨S_out, G⟩ + ⟨z_out, Gz⟩ for the upstream state gradient.
          const S = tf.tensor4d(Float32Array.from(state?.S ?? new Float64Array(b * h * m * dv)), [b, h, m, dv]);
          const z = tf.tensor3d(Float32Array.from(state?.z ?? new Float64Array(b * h * m)), [b, h, m]);
          const c = offsets(q, k, p, state);
          const G = up && tf.tensor4d(Float32Array.from(up.S), [b, h, m, dv]);
          const Gz = up && tf.tensor3d(Float32Array.from(up.z), [b, h, m]);
          const plainLoss = (qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor, Si?: tf.Tensor, zi?: tf.Tensor) => {
            const r = plainAttention(qi, ki, vi, cs.state ? Si : undefined, cs.state ? zi : undefined, p, c, stateOut?.offset);
            let loss = tf.sum(tf.mul(r.out, w));
            if (cs.causal) loss = tf.add(loss, tf.add(tf.sum(tf.mul(r.S!, G!)), tf.sum(tf.mul(r.z!, Gz!))));
            return loss as tf.Scalar;
          };
          const ref = plainAttention(q, k, v, cs.state ? S : undefined, cs.state ? z : undefined, p, c, stateOut?.offset);
          const refGrads = cs.state
            ? tf.grads(plainLoss)([q, k, v, S, z])
            : tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) => plainLoss(qi, ki, vi))([q, k, v]);

          expect(relErr(ref.out.dataSync(), opOut.out.dataSync()), 'out').toBeLessThan(TOL);
          expect(relErr(refGrads[0].dataSync(), gq.dataSync()), 'dq').toBeLessThan(TOL);
          expect(relErr(refGrads[1].dataSync(), gk.dataSync()), 'dk').toBeLessThan(TOL);
          expect(relErr(refGrads[2].dataSync(), gv.dataSync()), 'dv').toBeLessThan(TOL);
          if (cs.causal) {
            expect(relErr(ref.S!.dataSync(), stateOut!.S), 'state out S').toBeLessThan(TOL);
            expect(relErr(ref.z!.dataSync(), stateOut!.z), 'state out z').toBeLessThan(TOL);
            expect(dState, 'state gradient delivered').toBeDefined();
            if (cs.state) {
              expect(relErr(refGrads[3].dataSync(), dState!.S), 'dS').toBeLessThan(TOL);
              expect(relErr(refGrads[4].dataSync(), dState!.z), 'dz').toBeLessThan(TOL);
            } else {
              // The empty state's gradient is still defined (S, z enter linearly; 0 for favor, whose empty frame is exp(−∞)).
              const [dS0, dz0] = tf.grads((Si: tf.Tensor, zi: tf.Tensor) => {
                const r = plainAttention(q, k, v, Si, zi, p, c, stateOut!.offset);
                return tf.add(tf.sum(tf.mul(r.out, w)), tf.add(tf.sum(tf.mul(r.S!, G!)), tf.sum(tf.mul(r.z!, Gz!)))) as tf.Scalar;
              })([S, z]);
              expect(relErr(dS0.dataSync(), dState!.S), 'dS (empty state)').toBeLessThan(TOL);
              expect(relErr(dz0.dataSync(), dState!.z), 'dz (empty state)').toBeLessThan(TOL);
            }
            if (cs.feature === 'favor') {
              // The output offset is the running key maximum.
              const kmax = tf.tidy(() => tf.max(logits(k, p), [2, 3]).dataSync());
              for (let i = 0; i < b * h; i++) expect(stateOut!.offset[i]).toBeCloseTo(Math.max(kmax[i], state ? state.offset[i] : -Infinity), 4);
            }
          }
        });
        expect(tf.memory().numTensors, 'no tensors leaked').toBe(before);
      });
    }

    it('carries state: two calls equal one call, gradients included', () => {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const p = problem('favor', true, 3);
        const { b, h, d, m, dv } = p;
        const t = 12;
        const rng = new Rng(5);
        const q = tf.tensor4d(randn(rng, b * h * t * d), [b, h, t, d]);
        const k = tf.tensor4d(randn(rng, b * h * t * d), [b, h, t, d]);
        const v = tf.tensor4d(randn(rng, b * h * t * dv), [b, h, t, dv]);
        const w = tf.tensor4d(randn(rng, b * h * t * dv), [b, h, t, dv]);
        const opts = { kernels: K, feature: p.feature, omega: p.omega, m, causal: true, chunk: 4 };
        const whole = tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
          tf.sum(tf.mul(performerAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, opts).out, w)),
        )([q, k, v]);
        // Split at 5: second part first (its input state's gradient feeds the first part's upstream).
        const cut = (x: tf.Tensor, a: number, n: number) => tf.slice(x, [0, 0, a, 0], [-1, -1, n, -1]) as tf.Tensor4D;
        const first = performerAttention(cut(q, 0, 5), cut(k, 0, 5), cut(v, 0, 5), opts);
        let gMid: StateGrad | undefined;
        const g2 = tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
          tf.sum(
            tf.mul(
              performerAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, {
                ...opts,
                state: first.state,
                stateGrad: { onInput: (g) => (gMid = g) },
              }).out,
              cut(w, 5, 7),
            ),
          ),
        )([cut(q, 5, 7), cut(k, 5, 7), cut(v, 5, 7)]);
        const g1 = tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
          tf.sum(
            tf.mul(performerAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, { ...opts, stateGrad: { upstream: gMid } }).out, cut(w, 0, 5)),
          ),
        )([cut(q, 0, 5), cut(k, 0, 5), cut(v, 0, 5)]);
        for (let i = 0; i < 3; i++) {
          const joined = tf.concat([g1[i], g2[i]], 2);
          expect(relErr(whole[i].dataSync(), joined.dataSync()), `grad ${'qkv'[i]}`).toBeLessThan(TOL);
        }
      });
      expect(tf.memory().numTensors).toBe(before);
    });

    it('never creates a [T, M, D]-sized tensor in forward + gradient', async () => {
      // b = h = 1, T = 32, M = 32, D = 16: a [T, M, D] float32 tensor is 64 KiB; q, k, v and
      // their gradients are 2 KiB each. A plain prefix-sum implementation needs the big one.
      const b = 1;
      const h = 1;
      const t = 32;
      const d = 16;
      const m = 32;
      const dv = 16;
      const omega = randomProjection({ h, m, d, seed: 2 });
      const rng = new Rng(3);
      const q = tf.tensor4d(randn(rng, t * d), [b, h, t, d]);
      const k = tf.tensor4d(randn(rng, t * d), [b, h, t, d]);
      const v = tf.tensor4d(randn(rng, t * dv), [b, h, t, dv]);
      const tmd = t * m * dv * 4;
      const opGrads = () =>
        tf.grads((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
          tf.sum(
            performerAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, { kernels: K, feature: 'favor', omega, m, causal: true, chunk: 8 }).out,
          ),
        )([q, k, v]);
      const measure = (f: () => unknown) => tf.profile(() => void tf.tidy(() => void f()));
      const start = tf.memory().numBytes;
      const info = await measure(opGrads);
      expect(info.peakBytes - start).toBeLessThan(tmd / 2);
      const sizes = info.kernels.flatMap((kr) => kr.outputShapes.map((s) => s.reduce((a, x) => a * x, 1)));
      expect(Math.max(...sizes)).toBeLessThan(t * m * dv);
      // The check bites: the prefix-sum form (cumsum of φ(k_j) v_jᵀ over j) exceeds the bound.
      const naive = await measure(() =>
        tf.grads((ki: tf.Tensor, vi: tf.Tensor) => {
          const phiK = tf.exp(tf.matMul(tf.reshape(ki, [t, d]), tf.tensor2d(omega, [m, d]), false, true)); // [t, m]
          const outer = tf.mul(tf.reshape(phiK, [t, m, 1]), tf.reshape(vi, [t, 1, dv])); // [t, m, dv]
          // (cumsum along the last axis: TF.js's cumsum gradient along axis 0 of a matrix is broken)
          return tf.sum(tf.cumsum(tf.transpose(tf.reshape(outer, [t, m * dv])), 1));
        })([k, v]),
      );
      expect(naive.peakBytes - start).toBeGreaterThan(tmd);
      expect(tf.memory().numBytes).toBe(start);
      tf.dispose([q, k, v]);
    });
  });
}

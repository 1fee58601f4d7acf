/**
 * Soak: many small kernel calls and many training steps in one process.
 *
 * - `SLIM_SOAK_CALLS` (default 100 000) kernel calls — causalForward (with and without a carried
 *   state), causalBackward, bidirectionalForward/Backward — on random small shapes and every
 *   feature map: every call frees all it allocated (`liveBytes` back to 0), the wasm heap does
 *   not grow after a warm-up at the largest shapes, no result holds a NaN, and every 1000th call
 *   repeated gives the same bits.
 * - `SLIM_SOAK_STEPS` (default 1000) SLiM training steps of a tiny PerformerLM with random slice
 *   lengths and high learning rates (Adam 0.05, then 30 for the last 30 %, which drives weights
 *   and FAVOR+ offsets to extremes): no "stateOut is not the state" refusal ever, no non-finite
 *   loss or weight ever accepted (a step whose loss or gradients are not finite must be refused
 *   with a NonFiniteError and change nothing), no tensor or wasm leak.
 *
 * Both parts print their call/step counts and times (not asserted).
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { randomProjection } from '../../src/features/index.ts';
import { PerformerLM } from '../../src/model/performer_lm.ts';
import { NonFiniteError, SlimTrainer, type Batch } from '../../src/train/slim.ts';
import type { AttnState, Dims, FeatureMap } from '../../src/kernels/types.ts';
import { Rng } from '../util/rng.ts';
import { findNonFinite } from './harness.ts';

const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
function count(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}
const CALLS = count('SLIM_SOAK_CALLS', 100_000);
const STEPS = count('SLIM_SOAK_STEPS', 1000);

const FEATURES: FeatureMap[] = ['favor', 'relu', 'elu1', 'sqr'];
const MAX = { b: 2, h: 3, t: 40, d: 8, m: 16, dv: 8, chunk: 16 };

interface Call {
  name: string;
  run: () => unknown;
}

/** A random small problem: dims, feature, omega (favor always; the others when m ≠ d, or half the time). */
function problem(rng: Rng, largest = false) {
  const pick = (lo: number, hi: number) => (largest ? hi : lo + Math.floor(rng.next() * (hi - lo + 1)));
  const feature = FEATURES[Math.floor(rng.next() * FEATURES.length)];
  const d = largest ? MAX.d : [2, 4, 8][Math.floor(rng.next() * 3)];
  const useOmega = feature === 'favor' || largest || rng.next() < 0.5;
  const dims: Dims = { b: pick(1, MAX.b), h: pick(1, MAX.h), t: pick(1, MAX.t), d, m: useOmega ? pick(1, MAX.m) : d, dv: pick(1, MAX.dv) };
  const chunk = rng.next() < 0.2 ? undefined : pick(1, MAX.chunk);
  const omega = useOmega ? randomProjection({ h: dims.h, m: dims.m, d, seed: Math.floor(rng.next() * 1e6) }) : undefined;
  const f32 = (n: number, s = 1) => Float32Array.from(rng.normals(n, s));
  const { b, h, t, dv, m } = dims;
  return {
    dims,
    feature,
    omega,
    chunk,
    q: f32(b * h * t * d),
    k: f32(b * h * t * d),
    v: f32(b * h * t * dv),
    dOut: f32(b * h * t * dv),
    dState: { S: rng.normals(b * h * m * dv), z: rng.normals(b * h * m) },
  };
}

/** The calls of one random problem (a forward, its backward with and without the forward's output, bidirectional both ways, a continued forward). */
function calls(K: Kernels, p: ReturnType<typeof problem>): Call[] {
  const spec = { dims: p.dims, feature: p.feature, omega: p.omega, chunk: p.chunk };
  let fwd: { out: Float32Array; state: AttnState } | undefined;
  return [
    { name: 'causalForward', run: () => (fwd = K.causalForward({ ...spec, q: p.q, k: p.k, v: p.v })) },
    { name: 'causalBackward', run: () => K.causalBackward({ ...spec, q: p.q, k: p.k, v: p.v, stateOut: fwd!.state, dOut: p.dOut, dState: p.dState }) },
    { name: 'causalBackward (with out)', run: () => K.causalBackward({ ...spec, q: p.q, k: p.k, v: p.v, stateOut: fwd!.state, out: fwd!.out, dOut: p.dOut }) },
    { name: 'causalForward (carried state)', run: () => K.causalForward({ ...spec, q: p.k, k: p.q, v: p.v, state: fwd!.state }) },
    { name: 'bidirectionalForward', run: () => K.bidirectionalForward({ ...spec, q: p.q, k: p.k, v: p.v }) },
    { name: 'bidirectionalBackward', run: () => K.bidirectionalBackward({ ...spec, q: p.q, k: p.k, v: p.v, dOut: p.dOut }) },
  ];
}

function sameBits(a: unknown, b: unknown, where: string): void {
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array((a as Float32Array).buffer, (a as Float32Array).byteOffset, (a as Float32Array).byteLength);
    const y = new Uint8Array((b as Float32Array).buffer, (b as Float32Array).byteOffset, (b as Float32Array).byteLength);
    expect(x.length === y.length && x.every((v, i) => v === y[i]), `${where}: a repeated call gave other bits`).toBe(true);
    return;
  }
  if (a !== null && typeof a === 'object')
    for (const k of Object.keys(a)) sameBits((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`);
}

describe('soak', () => {
  let K: Kernels;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    tf.enableProdMode();
    K = await init();
  });
  afterAll(() => K?.dispose());

  it(`${CALLS} small kernel calls: flat wasm memory, no NaN, repeatable`, { timeout: 600_000 }, () => {
    const rng = new Rng(77);
    // Warm-up at the largest shapes of every feature map: the heap reaches its high-water mark.
    for (let i = 0; i < 4 * FEATURES.length; i++) for (const c of calls(K, problem(rng, true))) c.run();
    expect(K.liveBytes()).toBe(0);
    const heap = K.memoryBytes();
    const start = performance.now();
    const byName = new Map<string, number>();
    let done = 0;
    while (done < CALLS) {
      const p = problem(rng);
      for (const c of calls(K, p)) {
        if (done >= CALLS) break;
        const r = c.run();
        done++;
        byName.set(c.name, (byName.get(c.name) ?? 0) + 1);
        const live = K.liveBytes();
        if (live !== 0) expect(live, `call ${done} (${c.name}, ${p.feature}, ${JSON.stringify(p.dims)}) left wasm memory allocated`).toBe(0);
        const bad = findNonFinite(r);
        if (bad) expect(bad, `call ${done} (${c.name}, ${p.feature}, ${JSON.stringify(p.dims)}) returned a non-finite value`).toBeUndefined();
        if (done % 1000 === 0) sameBits(r, c.run(), `call ${done} (${c.name})`);
      }
    }
    const seconds = (performance.now() - start) / 1000;
    expect(K.memoryBytes(), 'the wasm heap grew after the warm-up').toBe(heap);
    expect(done).toBe(CALLS);
    console.log(
      `soak: ${done} kernel calls in ${seconds.toFixed(1)} s (${((seconds / done) * 1e6).toFixed(0)} µs/call; ${[...byName].map(([n, c]) => `${n} ${c}`).join(', ')}); wasm heap ${(heap / 2 ** 20).toFixed(1)} MiB, flat after warm-up`,
    );
  });

  it(`${STEPS} SLiM steps with random slice lengths and a high learning rate: no state refusal, no accepted NaN`, { timeout: 600_000 }, () => {
    const T = 12;
    const V = 13;
    const model = new PerformerLM(K, { vocabSize: V, dModel: 8, heads: 2, layers: 2, ffn: 16, feature: 'favor', features: 6, chunk: 4, seed: 3 });
    // 70 % of the steps at Adam lr 0.05 (already high for this model), the rest at lr 30, which
    // drives weights, activations and FAVOR+ offsets to extremes (the loss climbs into the 100s).
    const optimizer = tf.train.adam(0.05);
    const wildOptimizer = tf.train.adam(30);
    const trainer = new SlimTrainer(model, { sliceLength: T, optimizer });
    const wild = new SlimTrainer(model, { sliceLength: T, optimizer: wildOptimizer });
    const calm = Math.ceil(0.7 * STEPS);
    const rng = new Rng(99);
    // A learnable stream (each row counts up from a random start) so the loss has somewhere to go.
    const batch = (): Batch => {
      const tokens = new Int32Array(2 * (T + 1));
      for (let r = 0; r < 2; r++) {
        const s = Math.floor(rng.next() * V);
        for (let t = 0; t <= T; t++) tokens[r * (T + 1) + t] = (s + t * (1 + r)) % V;
      }
      const mask = rng.next() < 0.25 ? Uint8Array.from({ length: tokens.length }, () => (rng.next() < 0.9 ? 1 : 0)) : undefined;
      return { tokens, batch: 2, mask };
    };
    const losses: number[] = [];
    let refused = 0;
    let baseline = -1;
    const start = performance.now();
    for (let i = 0; i < STEPS; i++) {
      const tr = i < calm ? trainer : wild;
      tr.options.sliceLength = 1 + Math.floor(rng.next() * T);
      try {
        const r = tr.step(batch());
        expect(Number.isFinite(r.loss) && Number.isFinite(r.gradNorm), `step ${i}: a non-finite step was accepted (${r.loss}, ${r.gradNorm})`).toBe(true);
        losses.push(r.loss);
      } catch (e) {
        const message = (e as Error).message;
        expect(message, `step ${i}`).not.toMatch(/stateOut is not the state/);
        // The only acceptable refusal: a NonFiniteError (the weights are then unchanged).
        expect(e, `step ${i}: ${message}`).toBeInstanceOf(NonFiniteError);
        refused++;
      }
      if (i === 0 || i === calm) baseline = tf.memory().numTensors; // the second optimizer makes its slots at its first step
      expect(K.liveBytes()).toBe(0);
    }
    const seconds = (performance.now() - start) / 1000;
    expect(tf.memory().numTensors, 'tensors leaked across steps').toBe(baseline);
    for (const [name, v] of model.namedVariables()) expect(v.dataSync().every(Number.isFinite), `${name} is not finite`).toBe(true);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
    const head = mean(losses.slice(0, 50));
    const settled = mean(losses.slice(Math.max(0, calm - 50), calm));
    const tail = mean(losses.slice(-50));
    console.log(
      `soak: ${STEPS} SLiM steps in ${seconds.toFixed(1)} s (${((seconds / STEPS) * 1e3).toFixed(1)} ms/step, slice lengths 1–${T}, Adam lr 0.05 then 30 from step ${calm}): ` +
        `${losses.length} accepted, ${refused} refused as non-finite; mean loss ${head.toFixed(3)} over the first 50 steps, ${settled.toFixed(3)} before the switch, ${tail.toFixed(3)} over the last 50`,
    );
    expect(losses.length + refused).toBe(STEPS);
    model.dispose();
    optimizer.dispose();
    wildOptimizer.dispose();
  });
});

/**
 * Decoding with PerformerLM: token-by-token with carried states equals the full forward, slices
 * equal one pass, sampling is seeded (temperature, top-k, greedy), and the per-token work does
 * not depend on the context length (checked structurally: state sizes, tensors and kernels of a
 * step, no tensor leaks), not by timing.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { Rng as SeededRng } from '../../src/features/index.ts';
import { PerformerLM, sample } from '../../src/tfjs/index.ts';
import type { AttnState, FeatureMap } from '../../src/kernels/types.ts';
import { relErr } from '../util/assert.ts';
import { Rng } from '../util/rng.ts';

const V = 11;

function tokens(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.next() * V));
}

function stateSizes(states: AttnState[]): number[] {
  return states.flatMap((s) => [s.S.length, s.z.length, s.offset.length]);
}

function flatStates(states: AttnState[]): number[] {
  return states.flatMap((s) => [...s.S, ...s.z]);
}

/** Logits `[B, T, V]` of one pass over `ids: [B][T]`. */
function fullLogits(model: PerformerLM, ids: number[][]): Float32Array {
  return tf.tidy(() => model.forward(tf.tensor2d(ids, [ids.length, ids[0].length], 'int32')).logits.dataSync() as Float32Array);
}

/** Runs `ids: [B][T]` in slices of `slice` tokens with carried states; logits `[B, T, V]` and the final states. */
function slicedLogits(model: PerformerLM, ids: number[][], slice: number): { logits: Float32Array; states: AttnState[] } {
  const B = ids.length;
  const T = ids[0].length;
  const logits = new Float32Array(B * T * V);
  let states: AttnState[] | undefined;
  for (let t0 = 0; t0 < T; t0 += slice) {
    const n = Math.min(slice, T - t0);
    const part = tf.tidy(() => {
      const f = model.forward(
        tf.tensor2d(
          ids.map((row) => row.slice(t0, t0 + n)),
          [B, n],
          'int32',
        ),
        { offset: t0, states },
      );
      states = f.statesOut;
      return f.logits.dataSync() as Float32Array;
    });
    for (let b = 0; b < B; b++) logits.set(part.subarray(b * n * V, (b + 1) * n * V), (b * T + t0) * V);
  }
  return { logits, states: states! };
}

function argmaxLast(logits: Float32Array): number {
  const last = logits.subarray(logits.length - V);
  let best = 0;
  for (let i = 1; i < V; i++) if (last[i] > last[best]) best = i;
  return best;
}

let K: Kernels;
beforeAll(async () => {
  await tf.setBackend('cpu');
  K = await init();
});
afterAll(() => K.dispose());

const configs: Array<{ feature: FeatureMap; preLN: boolean }> = [
  { feature: 'favor', preLN: true },
  { feature: 'relu', preLN: false },
];

for (const { feature, preLN } of configs) {
  describe(`PerformerLM decoding (${feature}, ${preLN ? 'pre' : 'post'}-LN)`, () => {
    let model: PerformerLM;
    beforeAll(() => {
      model = new PerformerLM(K, { vocabSize: V, dModel: 16, heads: 2, layers: 2, ffn: 24, feature, features: 8, chunk: 4, preLN, seed: 5 });
    });
    afterAll(() => model.dispose());

    it('token by token with carried states equals the full forward', () => {
      const ids = [tokens(24, 1), tokens(24, 2)];
      const full = fullLogits(model, ids);
      const { logits, states } = slicedLogits(model, ids, 1);
      expect(relErr(full, logits)).toBeLessThan(1e-5);
      // and so does the final state
      let one: AttnState[] = [];
      tf.tidy(() => {
        one = model.forward(tf.tensor2d(ids, [2, 24], 'int32')).statesOut;
      });
      expect(relErr(flatStates(one), flatStates(states))).toBeLessThan(1e-5);
    });

    it('a prompt processed in slices equals one pass', () => {
      const ids = [tokens(29, 3)];
      const full = fullLogits(model, ids);
      for (const slice of [5, 8, 13]) {
        expect(relErr(full, slicedLogits(model, ids, slice).logits), `slice ${slice}`).toBeLessThan(1e-5);
      }
      const prompt = tokens(17, 4);
      const one = model.generate(prompt, { maxNewTokens: 8, temperature: 0, sliceLength: 256 });
      for (const sliceLength of [1, 3, 16])
        expect(model.generate(prompt, { maxNewTokens: 8, temperature: 0, sliceLength }), `sliceLength ${sliceLength}`).toEqual(one);
    });

    it('greedy at temperature 0 picks the argmax of the full forward at every step', () => {
      const prompt = tokens(6, 5);
      const out = model.generate(prompt, { maxNewTokens: 10, temperature: 0, seed: 1 });
      expect(model.generate(prompt, { maxNewTokens: 10, temperature: 0, seed: 99 })).toEqual(out);
      const seq = [...prompt];
      for (const tok of out) {
        expect(tok).toBe(argmaxLast(fullLogits(model, [seq])));
        seq.push(tok);
      }
    });

    it('sampling is reproducible from a seed and differs across seeds; top-k = 1 is greedy', () => {
      const prompt = tokens(5, 6);
      const o = { maxNewTokens: 24, temperature: 3 };
      const a = model.generate(prompt, { ...o, seed: 1 });
      expect(model.generate(prompt, { ...o, seed: 1 })).toEqual(a);
      const others = [2, 3, 4].map((seed) => model.generate(prompt, { ...o, seed }));
      for (const b of others) expect(b).not.toEqual(a);
      const greedy = model.generate(prompt, { maxNewTokens: 12, temperature: 0 });
      for (const seed of [1, 2]) expect(model.generate(prompt, { maxNewTokens: 12, temperature: 2, topK: 1, seed })).toEqual(greedy);
      const seen: number[] = [];
      expect(model.generate(prompt, { ...o, seed: 7, onToken: (t) => seen.push(t) })).toEqual(seen);
    });

    it('per-token work does not depend on the context length', () => {
      const ctx = (n: number) => slicedLogits(model, [tokens(n, 8)], 250).states;
      const s10 = ctx(10);
      const s1000 = ctx(1000);
      expect(stateSizes(s1000)).toEqual(stateSizes(s10));
      expect(stateSizes(s10)).toEqual(stateSizes(model.emptyStates(1)));
      // One decoding step at position 10 and at position 1000: same kernels, same tensors, same bytes.
      const step = (states: AttnState[], offset: number) =>
        tf.profile(() => {
          tf.tidy(() => {
            model.forward(tf.tensor2d([[3]], [1, 1], 'int32'), { offset, states }).logits.dataSync();
          });
        });
      return Promise.all([step(s10, 10), step(s1000, 1000)]).then(([a, b]) => {
        expect(a.kernels.length).toBeGreaterThan(50);
        expect(b.kernelNames).toEqual(a.kernelNames);
        expect(b.newTensors).toBe(a.newTensors);
        expect(b.newBytes).toBe(a.newBytes);
        expect(b.peakBytes - tf.memory().numBytes).toBe(a.peakBytes - tf.memory().numBytes);
        expect(b.kernels.map((k) => k.outputShapes)).toEqual(a.kernels.map((k) => k.outputShapes));
      });
    });

    it('generate leaks no tensors', () => {
      const prompt = tokens(9, 9);
      model.generate(prompt, { maxNewTokens: 3, seed: 1 }); // warm up
      const before = tf.memory().numTensors;
      const bytes = tf.memory().numBytes;
      for (const sliceLength of [2, 256]) model.generate(prompt, { maxNewTokens: 20, temperature: 1, topK: 4, seed: 3, sliceLength });
      model.generate(prompt, { maxNewTokens: 20, temperature: 0 });
      expect(tf.memory().numTensors).toBe(before);
      expect(tf.memory().numBytes).toBe(bytes);
    });
  });
}

describe('sample', () => {
  const logits = Float32Array.from([0.1, 2.0, -1.0, 1.5, 0.3, 1.9]);

  it('greedy at temperature 0 whatever the seed and top-k', () => {
    for (const topK of [0, 1, 3]) expect(sample(logits, 0, topK, new SeededRng(topK))).toBe(1);
  });

  it('top-k keeps only the k largest logits; top-k = 1 is greedy', () => {
    const rng = new SeededRng(4);
    const seen = new Set<number>();
    for (let i = 0; i < 400; i++) seen.add(sample(logits, 5, 3, rng));
    expect([...seen].sort()).toEqual([1, 3, 5]);
    for (let i = 0; i < 50; i++) expect(sample(logits, 5, 1, rng)).toBe(1);
  });

  it('follows softmax(logits / temperature)', () => {
    const rng = new SeededRng(11);
    const n = 20000;
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sample(logits, 2, 0, rng)]++;
    const w = Array.from(logits, (l) => Math.exp(l / 2));
    const z = w.reduce((a, b) => a + b, 0);
    w.forEach((p, i) => expect(Math.abs(counts[i] / n - p / z), `token ${i}`).toBeLessThan(0.015));
  });

  it('is reproducible from the seed', () => {
    const draw = (seed: number) => {
      const rng = new SeededRng(seed);
      return Array.from({ length: 30 }, () => sample(logits, 1, 0, rng));
    };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(3)).not.toEqual(draw(4));
  });
});

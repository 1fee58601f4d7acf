/**
 * SLiM training equals full backpropagation: whole-model gradients for slice lengths 1, 7,
 * T/2 and T, with and without padding masks, FAVOR+ and relu features, pre-LN and post-LN.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { PerformerLM } from '../../src/model/performer_lm.ts';
import { fullGradients, slimGradients, SlimTrainer, type Batch } from '../../src/train/slim.ts';
import type { FeatureMap } from '../../src/kernels/types.ts';
import { lmBatch } from '../util/lm.ts';
import { useTfjsBackend } from '../util/tfjs_backend.ts';

const T = 14;

const batch = (seed: number, vocab: number, masked: boolean): Batch => lmBatch(seed, vocab, masked, T);

function relErr(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.norm(tf.sub(a, b)).dataSync()[0] / Math.max(tf.norm(b).dataSync()[0], 1e-30));
}

describe('SLiM trainer', () => {
  let K: Kernels;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    K = await init();
  });
  afterAll(() => K.dispose());

  const cases: Array<{ feature: FeatureMap; preLN: boolean }> = [
    { feature: 'favor', preLN: true },
    { feature: 'relu', preLN: true },
    { feature: 'favor', preLN: false },
  ];
  for (const { feature, preLN } of cases) {
    for (const masked of [false, true]) {
      it(`gradients equal full backprop: ${feature}, ${preLN ? 'pre' : 'post'}-LN, ${masked ? 'with' : 'no'} padding mask`, () => {
        const model = new PerformerLM(K, {
          vocabSize: 11,
          dModel: 16,
          heads: 2,
          layers: 2,
          ffn: 24,
          feature,
          features: feature === 'favor' ? 12 : 8,
          chunk: 4,
          preLN,
          seed: 3,
        });
        const b = batch(5, 11, masked);
        const full = fullGradients(model, b);
        for (const slice of [1, 7, T / 2, T]) {
          const slim = slimGradients(model, b, slice);
          expect(Math.abs(slim.loss - full.loss) / full.loss, `loss, slice ${slice}`).toBeLessThan(1e-5);
          expect(slim.tokens).toBe(full.tokens);
          let worst = 0;
          let worstName = '';
          for (const [name, g] of full.grads) {
            const e = relErr(slim.grads.get(name)!, g);
            if (e > worst) [worst, worstName] = [e, name];
          }
          expect(worst, `slice ${slice}: worst parameter ${worstName}`).toBeLessThan(1e-4);
          for (const g of slim.grads.values()) g.dispose();
        }
        for (const g of full.grads.values()) g.dispose();
        model.dispose();
      });
    }
  }

  it('a step from full-backprop weights is the same step with SLiM (backward compatibility)', () => {
    const mk = () => new PerformerLM(K, { vocabSize: 11, dModel: 16, heads: 2, layers: 2, ffn: 24, feature: 'favor', features: 8, chunk: 4, seed: 9 });
    const a = mk();
    const b = mk();
    const data = batch(7, 11, false);
    new SlimTrainer(a, { sliceLength: T, mode: 'full', optimizer: tf.train.sgd(0.1) }).step(data);
    new SlimTrainer(b, { sliceLength: T, mode: 'full', optimizer: tf.train.sgd(0.1) }).step(data);
    const ta = new SlimTrainer(a, { sliceLength: 5, optimizer: tf.train.sgd(0.1) });
    const tb = new SlimTrainer(b, { sliceLength: T, mode: 'full', optimizer: tf.train.sgd(0.1) });
    const ra = ta.step(data);
    const rb = tb.step(data);
    expect(Math.abs(ra.loss - rb.loss) / rb.loss).toBeLessThan(1e-5);
    const vb = new Map(b.namedVariables());
    for (const [name, v] of a.namedVariables()) expect(relErr(v, vb.get(name)!), name).toBeLessThan(1e-5);
    a.dispose();
    b.dispose();
  });

  it('reports every slice of both passes, in order, through onSlice (and the trainer passes it on)', () => {
    const model = new PerformerLM(K, { vocabSize: 11, dModel: 16, heads: 2, layers: 1, ffn: 24, feature: 'favor', features: 8, chunk: 4, seed: 2 });
    const seen: string[] = [];
    const g = slimGradients(model, batch(2, 11, false), 4, (pass, done, total) => seen.push(`${pass}:${done}/${total}`));
    for (const t of g.grads.values()) t.dispose();
    // T = 14 in slices of 4: 4 slices forward, then 4 back
    expect(seen).toEqual(['1:1/4', '1:2/4', '1:3/4', '1:4/4', '2:1/4', '2:2/4', '2:3/4', '2:4/4']);
    seen.length = 0;
    const trainer = new SlimTrainer(model, { sliceLength: 7, onSlice: (pass, done, total) => seen.push(`${pass}:${done}/${total}`) });
    trainer.step(batch(3, 11, false));
    trainer.optimizer.dispose();
    expect(seen).toEqual(['1:1/2', '1:2/2', '2:1/2', '2:2/2']);
    model.dispose();
  });

  it('rejects bad batches with clear errors', () => {
    const model = new PerformerLM(K, { vocabSize: 11, dModel: 16, heads: 2, layers: 1, ffn: 24, feature: 'relu', chunk: 4 });
    expect(() => slimGradients(model, { tokens: new Int32Array([1, 2, 3]), batch: 2 }, 4)).toThrow(/tokens must be an Int32Array of shape \[batch, T \+ 1\]/);
    expect(() => slimGradients(model, { tokens: new Int32Array([1, 2, 30, 4]), batch: 1 }, 4)).toThrow(/tokens must lie in \[0, 11\), found 30/);
    expect(() => slimGradients(model, { tokens: new Int32Array([1, 2, 3, 4]), batch: 1 }, 0)).toThrow(/sliceLength must be a positive integer/);
    model.dispose();
  });
});

describe('SLiM trainer on the TF.js wasm backend', () => {
  it('trains (the embedding gradient needs no UnsortedSegmentSum) and matches full backprop', async () => {
    await useTfjsBackend('wasm');
    const K = await init();
    try {
      const model = new PerformerLM(K, { vocabSize: 11, dModel: 16, heads: 2, layers: 2, ffn: 24, feature: 'favor', features: 8, chunk: 4, seed: 4 });
      const b = batch(8, 11, true);
      const full = fullGradients(model, b);
      const slim = slimGradients(model, b, 5);
      for (const [name, g] of full.grads) expect(relErr(slim.grads.get(name)!, g), name).toBeLessThan(1e-4);
      const before = new SlimTrainer(model, { sliceLength: 5 }).step(b).loss;
      expect(Number.isFinite(before)).toBe(true);
      model.dispose();
    } finally {
      K.dispose();
      await tf.setBackend('cpu');
    }
  });
});

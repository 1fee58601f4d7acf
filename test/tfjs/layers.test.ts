/**
 * The TF.js layers: a sequential model (embedding → PerformerBlock → dense) trains with
 * model.fit, saves through tf.io and loads back with identical predictions; configs round-trip;
 * the attention layer agrees with a PerformerLM block; random features redraw deterministically.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomProjection } from '../../src/features/index.ts';
import { getKernels, initTfjs, PerformerAttention, PerformerBlock, performerLayers, redrawCallback, setKernels } from '../../src/tfjs/index.ts';
import { performerAttention } from '../../src/tfjs/op.ts';
import type { Kernels } from '../../src/index.ts';
import { Rng } from '../util/rng.ts';

const V = 11;
const T = 12;
const D = 16;

function lmModel(preLN: boolean, feature: 'favor' | 'relu' = 'favor'): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.embedding({ inputDim: V, outputDim: D, inputLength: T, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 0.5, seed: 1 }) }));
  model.add(new PerformerBlock({ heads: 2, features: 8, feature, causal: true, chunk: 4, ffn: 24, preLN, seed: 3, name: 'block' }));
  model.add(tf.layers.dense({ units: V, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  return model;
}

/** Next-token data: each sequence counts up mod V from a random start. */
function data(n: number, seed: number): { x: tf.Tensor2D; y: tf.Tensor3D } {
  const rng = new Rng(seed);
  const xs = new Float32Array(n * T);
  const ys = new Int32Array(n * T);
  for (let i = 0; i < n; i++) {
    const s = Math.floor(rng.next() * V);
    for (let t = 0; t < T; t++) {
      xs[i * T + t] = (s + t) % V;
      ys[i * T + t] = (s + t + 1) % V;
    }
  }
  return { x: tf.tensor2d(xs, [n, T]), y: tf.oneHot(tf.tensor2d(ys, [n, T], 'int32'), V) as tf.Tensor3D };
}

async function roundTrip(model: tf.LayersModel): Promise<tf.LayersModel> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  // Through JSON, as a file would go.
  const topology = JSON.parse(JSON.stringify(saved!.modelTopology));
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: topology, weightSpecs: saved!.weightSpecs, weightData: saved!.weightData }));
}

let K: Kernels;
beforeAll(async () => {
  await tf.setBackend('cpu');
  K = (await initTfjs()) as Kernels; // nothing set before: the wasm kernels
});
afterAll(() => {
  setKernels(undefined);
  K.dispose();
});

describe('PerformerBlock in a tf.sequential model', () => {
  for (const preLN of [true, false]) {
    it(`trains with model.fit, saves and loads with identical predictions (${preLN ? 'pre' : 'post'}-LN)`, async () => {
      const model = lmModel(preLN);
      const { x, y } = data(16, 7);
      const h = await model.fit(x, y, { epochs: 6, batchSize: 8, shuffle: false, verbose: 0 });
      const losses = h.history.loss as number[];
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.9);

      const loaded = await roundTrip(model);
      expect(loaded.layers[1]).toBeInstanceOf(PerformerBlock);
      expect(loaded.layers[1].getConfig()).toEqual(model.layers[1].getConfig());
      const a = model.predict(x) as tf.Tensor;
      const b = loaded.predict(x) as tf.Tensor;
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      // Every weight (the non-trainable random features included) came back.
      const wa = model.getWeights();
      const wb = loaded.getWeights();
      expect(wb.length).toBe(wa.length);
      wa.forEach((w, i) => expect(Array.from(wb[i].dataSync())).toEqual(Array.from(w.dataSync())));
      tf.dispose([x, y, a, b]);
      model.dispose();
      loaded.dispose();
    });
  }

  it('the trainable weights are the projections, layer norms and feed-forward; omega is not trainable', () => {
    const model = lmModel(true);
    const block = model.layers[1];
    const names = (ws: tf.LayerVariable[]) => ws.map((w) => w.originalName.split('/').pop());
    expect(names(block.trainableWeights)).toEqual([
      'ln1g',
      'ln1b',
      'attn_wq',
      'attn_bq',
      'attn_wk',
      'attn_bk',
      'attn_wv',
      'attn_bv',
      'attn_wo',
      'attn_bo',
      'ln2g',
      'ln2b',
      'w1',
      'b1',
      'w2',
      'b2',
    ]);
    expect(names(block.nonTrainableWeights)).toEqual(['attn_omega']);
    expect(block.nonTrainableWeights[0].shape).toEqual([2, 8, 8]);
    const hd = 8;
    expect(Array.from(block.nonTrainableWeights[0].read().dataSync())).toEqual(Array.from(randomProjection({ h: 2, m: 8, d: hd, seed: 3 })));
    model.dispose();
  });
});

describe('PerformerAttention', () => {
  it('getConfig round trip, through tf.serialization and JSON', () => {
    const layer = new PerformerAttention({ heads: 4, features: 6, feature: 'relu', causal: true, chunk: 8, seed: 9, redrawEvery: 3, name: 'att' });
    const config = layer.getConfig();
    expect(config).toMatchObject({ heads: 4, features: 6, feature: 'relu', causal: true, chunk: 8, seed: 9, redrawEvery: 3, redrawStep: 0, name: 'att' });
    // Both classes are registered under their class names, so tf.loadLayersModel finds them.
    const registered = tf.serialization.SerializationMap.getMap().classNameMap;
    const [attnCls, attnFromConfig] = registered.PerformerAttention;
    expect(attnCls).toBe(PerformerAttention);
    const again = attnFromConfig(attnCls, JSON.parse(JSON.stringify(config))) as PerformerAttention;
    expect(again).toBeInstanceOf(PerformerAttention);
    expect(again.getConfig()).toEqual(config);
    const block = new PerformerBlock({ heads: 2, ffn: 20, preLN: false, causal: false, name: 'blk' });
    const [blockCls, blockFromConfig] = registered.PerformerBlock;
    const blockAgain = blockFromConfig(blockCls, JSON.parse(JSON.stringify(block.getConfig()))) as PerformerBlock;
    expect(blockAgain.getConfig()).toEqual(block.getConfig());
    expect(block.getConfig()).toMatchObject({ heads: 2, ffn: 20, preLn: false, causal: false, feature: 'favor', chunk: 64, seed: 1, epsilon: 1e-5 });
    // Defaults: bidirectional favor, pre-LN.
    expect(new PerformerBlock({ heads: 2 }).getConfig()).toMatchObject({ causal: false, feature: 'favor', preLn: true, redrawEvery: 0 });
  });

  it('equals the op on the projected heads (causal and bidirectional)', () => {
    for (const causal of [true, false]) {
      const layer = new PerformerAttention({ heads: 2, features: 12, causal, chunk: 4, seed: 5 });
      const rng = new Rng(2);
      const x = tf.tensor3d(
        Float32Array.from({ length: 2 * T * D }, () => rng.normal()),
        [2, T, D],
      );
      const got = layer.apply(x) as tf.Tensor;
      const [wq, bq, wk, bk, wv, bv, wo, bo, omega] = layer.getWeights();
      const want = tf.tidy(() => {
        const split = (w: tf.Tensor, b: tf.Tensor) =>
          tf.transpose(tf.reshape(tf.add(tf.matMul(tf.reshape(x, [-1, D]), w), b), [2, T, 2, D / 2]), [0, 2, 1, 3]) as tf.Tensor4D;
        const { out } = performerAttention(split(wq, bq), split(wk, bk), split(wv, bv), {
          kernels: K,
          feature: 'favor',
          omega: omega.dataSync() as Float32Array,
          m: 12,
          causal,
          chunk: 4,
        });
        return tf.reshape(tf.add(tf.matMul(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, D]), wo), bo), [2, T, D]);
      });
      expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
      // Causal: output t does not depend on tokens after t.
      if (causal) {
        const x2 = tf.concat([tf.slice(x, [0, 0, 0], [-1, 6, -1]), tf.randomNormal([2, T - 6, D], 0, 1, 'float32', 3)], 1);
        const got2 = layer.apply(x2) as tf.Tensor;
        const head = (t: tf.Tensor) => Array.from(tf.slice(t, [0, 0, 0], [-1, 6, -1]).dataSync());
        expect(head(got2)).toEqual(head(got));
        tf.dispose([x2, got2]);
      }
      tf.dispose([x, got, want]);
      layer.dispose();
    }
  });

  it('redraws random features deterministically from seed and step', async () => {
    const mk = (redrawStep = 0) => {
      const l = new PerformerAttention({ heads: 2, features: 8, seed: 4, redrawEvery: 2, redrawStep });
      l.build([null, T, D]);
      return l;
    };
    const omegaOf = (l: PerformerAttention) => Array.from(l.getWeights()[8].dataSync());
    const a = mk();
    const first = omegaOf(a);
    expect(first).toEqual(Array.from(randomProjection({ h: 2, m: 8, d: 8, seed: 4 })));
    expect(a.redrawStep()).toBe(false);
    expect(omegaOf(a)).toEqual(first);
    expect(a.redrawStep()).toBe(true);
    const second = omegaOf(a);
    expect(second).not.toEqual(first);
    expect(a.getConfig().redrawStep).toBe(2);
    // A layer built from the saved config resumes the schedule with the same features.
    expect(omegaOf(mk(2))).toEqual(second);
    const never = new PerformerAttention({ heads: 2, features: 8, seed: 4 });
    never.build([null, T, D]);
    for (let i = 0; i < 5; i++) expect(never.redrawStep()).toBe(false);
    expect(omegaOf(never)).toEqual(first);

    // redrawCallback steps every Performer layer once per batch during fit.
    const model = lmModel(true);
    const block = model.layers[1] as PerformerBlock;
    expect(performerLayers(model)).toEqual([block]);
    const { x, y } = data(8, 1);
    await model.fit(x, y, { epochs: 1, batchSize: 2, verbose: 0, callbacks: [redrawCallback(model)] });
    expect(block.getConfig().redrawStep).toBe(4);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('rejects bad configs and a missing kernel instance with clear errors', () => {
    expect(() => new PerformerAttention({ heads: 0 })).toThrow(/heads must be a positive integer/);
    expect(() => new PerformerAttention({ heads: 2, feature: 'softmax' as never })).toThrow(/feature must be one of favor, relu, elu1, sqr/);
    expect(() => new PerformerBlock({ heads: 2, ffn: -1 })).toThrow(/ffn must be a positive integer/);
    const odd = new PerformerAttention({ heads: 3 });
    expect(() => odd.build([null, T, D])).toThrow(/width 16 must split into 3 heads of even width/);
    const layer = new PerformerAttention({ heads: 2 });
    const x = tf.zeros([1, 4, D]);
    setKernels(undefined);
    try {
      expect(() => getKernels()).toThrow(/call `await initTfjs\(\)`/);
      expect(() => layer.apply(x)).toThrow(/no kernel instance/);
    } finally {
      setKernels(K);
    }
    expect((layer.apply(x) as tf.Tensor).shape).toEqual([1, 4, D]);
    tf.dispose(x);
  });
});

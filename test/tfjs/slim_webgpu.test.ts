/**
 * SLiM training on the TF.js webgpu backend with the WebGPU kernels (src/train/slim_webgpu.ts):
 * the gradients of the whole sequence for several slice lengths equal full backpropagation on
 * the cpu backend with the wasm kernels, with and without a padding mask, and nothing is read
 * back synchronously; a trainer step equals SlimTrainer's; decoding on the GPU gives the tokens
 * of `generate`. Skipped without a WebGPU adapter.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { PerformerLM } from '../../src/model/performer_lm.ts';
import { fullGradients, SlimTrainer, type Batch } from '../../src/train/slim.ts';
import { slimGradientsWebGPU, SlimTrainerWebGPU } from '../../src/train/slim_webgpu.ts';
import { tfjsWebGPUDevice } from '../../src/tfjs/webgpu_op.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';
import type { FeatureMap } from '../../src/kernels/types.ts';
import { relErr } from '../util/assert.ts';
import { lmBatch } from '../util/lm.ts';
import { tfWebGPU } from '../util/tfjs_webgpu.ts';

const T = 14;
const ok = await tfWebGPU();

const batch = (seed: number, vocab: number, masked: boolean): Batch => lmBatch(seed, vocab, masked, T);

describe.skipIf(!ok)('SLiM on the GPU (TF.js webgpu backend, WebGPU kernels)', () => {
  let W: Kernels;
  let G: WebGPUKernels;
  beforeAll(async () => {
    W = await init();
    G = await initWebGPU({ device: tfjsWebGPUDevice(), poison: true });
  });
  afterAll(async () => {
    G?.dispose();
    W?.dispose();
    await tf.setBackend('webgpu');
  });

  for (const [feature, masked] of [
    ['favor', false],
    ['favor', true],
    ['relu', false],
  ] as Array<[FeatureMap, boolean]>) {
    it(`gradients equal full backprop on the cpu backend: ${feature}, ${masked ? 'with' : 'no'} padding mask`, async () => {
      await tf.setBackend('cpu');
      const model = new PerformerLM(W, {
        vocabSize: 11,
        dModel: 16,
        heads: 2,
        layers: 2,
        ffn: 24,
        feature,
        features: feature === 'favor' ? 12 : 8,
        chunk: 4,
        seed: 3,
      });
      const b = batch(5, 11, masked);
      const full = fullGradients(model, b);
      const ref = new Map([...full.grads].map(([n, g]) => [n, g.dataSync() as Float32Array]));
      for (const g of full.grads.values()) g.dispose();
      await tf.setBackend('webgpu');
      const be = tf.backend() as unknown as { readSync: (...a: unknown[]) => unknown };
      const readSync = be.readSync;
      be.readSync = () => {
        throw new Error('synchronous readback');
      };
      try {
        for (const slice of [1, 5, T]) {
          const before = tf.memory().numTensors;
          const slim = await slimGradientsWebGPU(model, G, b, slice);
          expect(Math.abs(slim.loss - full.loss) / full.loss, `loss, slice ${slice}`).toBeLessThan(1e-5);
          expect(slim.tokens).toBe(full.tokens);
          let worst = 0;
          let worstName = '';
          for (const [name, g] of ref) {
            const e = relErr(g, await slim.grads.get(name)!.data());
            if (e > worst) [worst, worstName] = [e, name];
          }
          expect(worst, `slice ${slice}: worst parameter ${worstName}`).toBeLessThan(1e-4);
          for (const g of slim.grads.values()) g.dispose();
          expect(tf.memory().numTensors, `slice ${slice}: tensors left behind`).toBe(before);
        }
      } finally {
        be.readSync = readSync;
        model.dispose();
      }
    });
  }

  it('SlimTrainerWebGPU takes the step SlimTrainer takes on the cpu backend (clipped SGD)', async () => {
    const config = { vocabSize: 11, dModel: 16, heads: 2, layers: 2, ffn: 24, feature: 'favor' as const, features: 12, chunk: 4, seed: 9 };
    const b = batch(7, 11, false);
    await tf.setBackend('cpu');
    const cpuModel = new PerformerLM(W, config);
    const cpu = new SlimTrainer(cpuModel, { sliceLength: 5, optimizer: tf.train.sgd(0.1), clipNorm: 0.5 }).step(b);
    const after = new Map(cpuModel.namedVariables().map(([n, v]) => [n, v.dataSync() as Float32Array]));
    cpuModel.dispose();
    await tf.setBackend('webgpu');
    const gpuModel = new PerformerLM(W, config);
    const gpu = await new SlimTrainerWebGPU(gpuModel, G, { sliceLength: 5, optimizer: tf.train.sgd(0.1), clipNorm: 0.5 }).step(b);
    expect(cpu.gradNorm).toBeGreaterThan(0.5); // the clip is active
    expect(Math.abs(gpu.gradNorm - cpu.gradNorm) / cpu.gradNorm).toBeLessThan(1e-4);
    expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-5);
    for (const [n, v] of gpuModel.namedVariables()) expect(relErr(after.get(n)!, await v.data()), n).toBeLessThan(1e-5);
    gpuModel.dispose();
  });

  it('generateWebGPU decodes the tokens generate does on the cpu backend (greedy and sampled), states on the GPU', async () => {
    const config = { vocabSize: 11, dModel: 16, heads: 2, layers: 2, ffn: 24, feature: 'favor' as const, features: 12, chunk: 4, seed: 4 };
    const prompt = [1, 5, 2, 7, 3, 3, 9];
    const runs = [
      { maxNewTokens: 9, temperature: 0 },
      { maxNewTokens: 9, temperature: 1, topK: 5, seed: 3, sliceLength: 3 },
    ];
    await tf.setBackend('cpu');
    const cpuModel = new PerformerLM(W, config);
    const want = runs.map((o) => cpuModel.generate(prompt, o));
    cpuModel.dispose();
    await tf.setBackend('webgpu');
    const gpuModel = new PerformerLM(W, config);
    const before = tf.memory().numTensors;
    for (const [i, o] of runs.entries()) {
      const seen: number[] = [];
      const got = await gpuModel.generateWebGPU(prompt, { ...o, kernels: G, onToken: (t) => seen.push(t) });
      expect(got, `run ${i}`).toEqual(want[i]);
      expect(seen).toEqual(got);
    }
    expect(tf.memory().numTensors, 'no tensors left behind').toBe(before);
    gpuModel.dispose();
  });

  it('refuses another TF.js backend and a bad slice length', async () => {
    await tf.setBackend('cpu');
    const model = new PerformerLM(W, { vocabSize: 5, dModel: 8, heads: 2, layers: 1, ffn: 8, feature: 'relu', chunk: 4 });
    const b = { tokens: new Int32Array([1, 2, 3, 4]), batch: 1 };
    await expect(slimGradientsWebGPU(model, G, b, 2)).rejects.toThrow(/the TF.js backend is 'cpu', not 'webgpu'/);
    await tf.setBackend('webgpu');
    await expect(slimGradientsWebGPU(model, G, b, 0)).rejects.toThrow(/sliceLength must be a positive integer/);
    model.dispose();
  });
});

/**
 * Exactness against the SLiM paper's reference implementation: for every model in
 * test/fixtures/slim-reference (produced by its PyTorch code in float64), our logits, full
 * backprop loss and gradients, and our slice-by-slice gradients match the reference's.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { parseSafetensors, type Tensor } from '../../src/io/safetensors.ts';
import { ReferenceLM } from '../../src/model/reference_lm.ts';
import { fullGradients, slimGradients, type Batch } from '../../src/train/slim.ts';
import { relErr } from '../util/assert.ts';

const DIR = resolve(import.meta.dirname, '../fixtures/slim-reference');
const MODELS = readdirSync(DIR)
  .filter((f) => f.endsWith('.weights.safetensors'))
  .map((f) => f.replace('.weights.safetensors', ''));

const load = (f: string) => parseSafetensors(new Uint8Array(readFileSync(resolve(DIR, f))));

describe('matches the SLiM reference implementation', () => {
  let K: Kernels;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    K = await init();
  });
  afterAll(() => K.dispose());

  it('has reference models to check', () => expect(MODELS.length).toBeGreaterThan(0));

  for (const name of MODELS) {
    describe(name, () => {
      const w = load(`${name}.weights.safetensors`);
      const vec = load(`${name}.vectors.safetensors`);
      const config = JSON.parse(w.metadata.config);
      const rfs = [...vec.tensors.keys()]
        .filter((k) => k.startsWith('rfs.'))
        .sort()
        .map((k) => vec.tensors.get(k)!.data as Float64Array);
      const tokens = vec.tensors.get('tokens')!;
      const mask = vec.tensors.get('mask')!;
      const [B, T1] = tokens.shape;
      const batch: Batch = { tokens: Int32Array.from(tokens.data as Int32Array), batch: B, mask: Uint8Array.from(mask.data as Uint8Array) };
      const make = () => {
        const m = new ReferenceLM(K, config, rfs.length ? rfs : undefined);
        m.setWeights(w.tensors as Map<string, Tensor & { data: Float64Array }>);
        return m;
      };
      const grads = (prefix: string) =>
        [...vec.tensors].filter(([k]) => k.startsWith(`${prefix}.`)).map(([k, t]) => [k.slice(prefix.length + 1), t.data as Float64Array] as const);

      it('logits (relative error ≤ 1e-5)', () => {
        const model = make();
        const logits = tf.tidy(() => {
          const inputs = Int32Array.from({ length: B * (T1 - 1) }, (_, i) => batch.tokens[Math.floor(i / (T1 - 1)) * T1 + (i % (T1 - 1))]);
          return model.forward(tf.tensor2d(inputs, [B, T1 - 1], 'int32')).logits.dataSync();
        });
        expect(relErr(vec.tensors.get('logits')!.data as Float64Array, logits)).toBeLessThan(1e-5);
        model.dispose();
      });

      it('full-backprop loss and gradients', () => {
        const model = make();
        const g = fullGradients(model, batch);
        expect(Math.abs(g.loss - Number(vec.metadata.loss_full)) / Number(vec.metadata.loss_full)).toBeLessThan(1e-5);
        for (const [param, ref] of grads('grad_full')) expect(relErr(ref, g.grads.get(param)!.dataSync()), param).toBeLessThan(1e-4);
        model.dispose();
      });

      const slices = [...new Set([...vec.tensors.keys()].map((k) => /^grad_slim(\d+)\./.exec(k)?.[1]).filter(Boolean))].map(Number);
      for (const C of slices) {
        it(`SLiM gradients, slice length ${C}`, () => {
          const model = make();
          const g = slimGradients(model, batch, C);
          for (const [param, ref] of grads(`grad_slim${C}`)) expect(relErr(ref, g.grads.get(param)!.dataSync()), param).toBeLessThan(1e-4);
          model.dispose();
        });
      }
    });
  }
});

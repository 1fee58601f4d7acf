/**
 * Checkpoints: bit-identical round trip of weights and Adam state (training continues exactly
 * as if uninterrupted), clear errors for truncated, corrupt, foreign and mismatched files, and
 * atomic writes.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { PerformerLM, type PerformerLMConfig } from '../../src/model/performer_lm.ts';
import {
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  loadInto,
  packCheckpoint,
  restoreCheckpoint,
  saveCheckpoint,
  saveCheckpointToIndexedDB,
} from '../../src/train/checkpoint/index.ts';
import { SlimTrainer, type Batch } from '../../src/train/slim.ts';
import { Rng } from '../util/rng.ts';

const CONFIG: PerformerLMConfig = { vocabSize: 13, dModel: 16, heads: 2, layers: 2, ffn: 24, feature: 'favor', features: 8, chunk: 4, seed: 5 };
const T = 12;
const STEPS = 2;

function batch(seed: number): Batch {
  const rng = new Rng(seed);
  return { tokens: Int32Array.from({ length: 2 * (T + 1) }, () => Math.floor(rng.next() * CONFIG.vocabSize)), batch: 2 };
}

const bits = (t: tf.Tensor) => Buffer.from((t.dataSync() as Float32Array).buffer).toString('base64');

function expectSameWeights(a: PerformerLM, b: PerformerLM): void {
  const vb = new Map(b.namedVariables());
  for (const [name, v] of a.namedVariables()) expect(bits(v), name).toBe(bits(vb.get(name)!));
  a.omegas.forEach((w, l) => expect(w && Buffer.from(w.buffer).equals(Buffer.from(b.omegas[l]!.buffer)), `features ${l}`).toBe(w ? true : undefined));
}

describe('checkpoints', () => {
  let K: Kernels;
  let dir: string;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    K = await init();
    dir = mkdtempSync(path.join(tmpdir(), 'slim-ckpt-'));
  });
  afterAll(() => {
    K.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A model and Adam optimizer after some SLiM steps. */
  function trained(steps = 2) {
    const model = new PerformerLM(K, CONFIG);
    const optimizer = tf.train.adam(0.01);
    const trainer = new SlimTrainer(model, { sliceLength: 5, optimizer });
    for (let i = 1; i <= steps; i++) trainer.step(batch(i));
    return { model, optimizer, trainer };
  }

  // Already after 2 steps, Adam's setWeights alone would recompute β₂ᵗ = pow(β₂, t) one ulp away
  // from the running product the uninterrupted optimizer holds (the checkpoint keeps it exactly).
  it('round trip is bit-identical: training continues exactly as without the checkpoint', async () => {
    const a = trained(STEPS);
    const file = path.join(dir, 'roundtrip.ckpt');
    const size = await saveCheckpoint(file, a.model, a.optimizer, { meta: { note: 'test' } });
    expect(readFileSync(file).length).toBe(size);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // A new model and optimizer built from the file…
    const b = await loadCheckpoint(file, K);
    expect(b.step).toBe(STEPS);
    expect(b.meta).toEqual({ note: 'test' });
    expect(b.optimizer?.getClassName()).toBe('Adam');
    expectSameWeights(a.model, b.model);
    // …and a fresh model (other seed) and optimizer loaded in place.
    const c = { model: new PerformerLM(K, { ...CONFIG, seed: 99 }), optimizer: tf.train.adam(0.01) };
    await loadInto(file, c.model, c.optimizer);
    expectSameWeights(a.model, c.model);

    const wa = await a.optimizer.getWeights();
    for (const o of [b.optimizer!, c.optimizer]) {
      const w = await o.getWeights();
      expect(w.length).toBe(wa.length);
      w.forEach((x, i) => expect(bits(x.tensor), `optimizer weight ${i}`).toBe(bits(wa[i].tensor)));
      expect(o.iterations).toBe(STEPS);
    }

    a.trainer.step(batch(STEPS + 1));
    const rb = new SlimTrainer(b.model, { sliceLength: 5, optimizer: b.optimizer }).step(batch(STEPS + 1));
    const rc = new SlimTrainer(c.model, { sliceLength: 5, optimizer: c.optimizer }).step(batch(STEPS + 1));
    expect(rb.loss).toBe(rc.loss);
    expectSameWeights(a.model, b.model);
    expectSameWeights(a.model, c.model);
    for (const m of [a, b, c]) {
      m.model.dispose();
      m.optimizer!.dispose();
    }
  });

  it('restoring into an existing model and optimizer leaks no tensors', async () => {
    const a = trained();
    const bytes = await encodeCheckpoint(a.model, a.optimizer);
    const before = tf.memory().numTensors;
    await restoreCheckpoint(decodeCheckpoint(bytes), a.model, a.optimizer);
    await restoreCheckpoint(decodeCheckpoint(bytes), a.model, a.optimizer);
    expect(tf.memory().numTensors).toBe(before);
    a.model.dispose();
    a.optimizer.dispose();
  });

  describe('rejects bad files with clear errors', () => {
    let bytes: Uint8Array;
    let model: PerformerLM;
    beforeAll(async () => {
      model = new PerformerLM(K, CONFIG);
      bytes = await encodeCheckpoint(model, undefined, { step: 7 });
    });
    afterAll(() => model.dispose());

    it('truncated', async () => {
      for (const n of [bytes.length - 1, bytes.length >> 1, 40, 12]) {
        expect(() => decodeCheckpoint(bytes.slice(0, n)), `${n} bytes`).toThrow(/checkpoint truncated/);
      }
      const file = path.join(dir, 'truncated.ckpt');
      writeFileSync(file, bytes.slice(0, bytes.length - 100));
      await expect(loadCheckpoint(file, K)).rejects.toThrow(/truncated\.ckpt: checkpoint truncated: expected \d+ bytes, got \d+/);
    });

    it('a flipped byte (payload or header)', () => {
      for (const at of [bytes.length - 50, 30, bytes.length - 2]) {
        const bad = bytes.slice();
        bad[at] ^= 0x10;
        expect(() => decodeCheckpoint(bad), `byte ${at}`).toThrow(/checkpoint checksum mismatch .*the file is corrupt/);
      }
    });

    it('a foreign file', async () => {
      const pkg = readFileSync(path.join(__dirname, '../../package.json'));
      expect(() => decodeCheckpoint(new Uint8Array(pkg))).toThrow(/not a slim-performer checkpoint/);
      expect(() => decodeCheckpoint(new Uint8Array([0x89, 0x50, 0x4e, 0x47]))).toThrow(/not a slim-performer checkpoint/);
      const file = path.join(dir, 'foreign.ckpt');
      writeFileSync(file, pkg);
      await expect(loadCheckpoint(file, K)).rejects.toThrow(/foreign\.ckpt: not a slim-performer checkpoint/);
      const newer = bytes.slice();
      newer[8] = 2;
      expect(() => decodeCheckpoint(newer)).toThrow(/format version 2 is not supported/);
    });

    it('a model of another config, a missing or misshapen tensor, another optimizer', async () => {
      const ck = decodeCheckpoint(bytes);
      expect(ck.header.step).toBe(7);
      const other = new PerformerLM(K, { ...CONFIG, dModel: 32, layers: 1 });
      await expect(restoreCheckpoint(ck, other)).rejects.toThrow(
        /checkpoint config mismatch: dModel is 16 in the checkpoint but 32 in the model; layers is 2 in the checkpoint but 1 in the model/,
      );
      other.dispose();

      const { tensors: _, ...header } = ck.header;
      const list = [...ck.tensors].map(([name, t]) => ({ name, ...t }));
      const misshapen = list.map((t) => (t.name === 'model/blocks.1.wq' ? { ...t, shape: [8, 32] } : t));
      await expect(restoreCheckpoint(decodeCheckpoint(packCheckpoint(header, misshapen)), model)).rejects.toThrow(
        /checkpoint shape mismatch for model\/blocks\.1\.wq: \[8,32\] in the checkpoint, \[16,16\] in the model/,
      );
      const missing = list.filter((t) => t.name !== 'model/head.b');
      await expect(restoreCheckpoint(decodeCheckpoint(packCheckpoint(header, missing)), model)).rejects.toThrow(/checkpoint lacks tensor model\/head\.b/);

      await expect(restoreCheckpoint(ck, model, tf.train.sgd(0.1))).rejects.toThrow(/checkpoint holds no optimizer state/);
      const a = trained();
      const withAdam = decodeCheckpoint(await encodeCheckpoint(a.model, a.optimizer));
      await expect(restoreCheckpoint(withAdam, model, tf.train.sgd(0.1))).rejects.toThrow(
        /optimizer mismatch: the checkpoint holds Adam state, the optimizer is SGD/,
      );
      a.model.dispose();
      a.optimizer.dispose();
    });
  });

  it('writes atomically: a failed save leaves no partial file and the previous checkpoint intact', async () => {
    const model = new PerformerLM(K, CONFIG);
    const missing = path.join(dir, 'no-such-dir', 'model.ckpt');
    await expect(saveCheckpoint(missing, model)).rejects.toThrow(/could not write checkpoint .*no-such-dir\/model\.ckpt: ENOENT/);
    expect(existsSync(path.dirname(missing))).toBe(false);

    // The rename fails (the target is a directory) after the temporary file was written.
    const target = path.join(dir, 'occupied.ckpt');
    mkdirSync(target);
    await expect(saveCheckpoint(target, model)).rejects.toThrow(/could not write checkpoint/);
    expect(readdirSync(dir).filter((f) => f.includes('occupied'))).toEqual(['occupied.ckpt']);

    // Overwriting: the old file is replaced whole.
    const file = path.join(dir, 'overwrite.ckpt');
    await saveCheckpoint(file, model, undefined, { step: 1 });
    await saveCheckpoint(file, model, undefined, { step: 2 });
    expect(decodeCheckpoint(new Uint8Array(readFileSync(file))).header.step).toBe(2);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    model.dispose();
  });

  it('the slim-performer/tfjs entry exports the checkpoint API: a file saved there loads back bit-identical', async () => {
    const entry = await import('../../src/tfjs/index.ts');
    for (const f of [
      'encodeCheckpoint',
      'decodeCheckpoint',
      'saveCheckpoint',
      'loadCheckpoint',
      'loadInto',
      'restoreCheckpoint',
      'modelFromCheckpoint',
      'optimizerFromCheckpoint',
      'readCheckpoint',
      'saveCheckpointToIndexedDB',
      'loadCheckpointFromIndexedDB',
      'downloadCheckpoint',
    ] as const) {
      expect(typeof entry[f], f).toBe('function');
    }
    const model = new entry.PerformerLM(K, CONFIG);
    const file = path.join(dir, 'entry.slimckpt');
    try {
      await entry.saveCheckpoint(file, model, undefined, { step: 3 });
      const back = await entry.loadCheckpoint(file, K);
      expect(back.step).toBe(3);
      expectSameWeights(model, back.model);
      back.model.dispose();
    } finally {
      model.dispose();
    }
  });

  it('browser helpers say clearly when IndexedDB is missing', async () => {
    await expect(saveCheckpointToIndexedDB('k', new Uint8Array(4))).rejects.toThrow(/IndexedDB is not available in this runtime/);
  });
});

/** A PerformerLM's weights and random features, and a TF.js optimizer's state, to and from a {@link Checkpoint}. */
import * as tf from '@tensorflow/tfjs';
import type { SyncKernels } from '../../kernels/interface.ts';
import { PerformerLM } from '../../model/performer_lm.ts';
import { CHECKPOINT_VERSION, type Checkpoint, type OptimizerState, packCheckpoint } from './format.ts';

export interface SaveOptions {
  /** Training step (default: the optimizer's iteration count, else 0). */
  step?: number;
  /** Anything JSON-serialisable: vocabulary, data set, command line… */
  meta?: Record<string, unknown>;
}

/**
 * Optimizer scalars that `getWeights()` leaves out and `setWeights` does not restore (Adam's β₁ᵗ,
 * β₂ᵗ): whoever moves an optimizer's state (a checkpoint, a backend switch) carries them too.
 */
export const SCALAR_SLOTS: readonly string[] = ['accBeta1', 'accBeta2'];

/** Encodes a model (and an optimizer's state) as checkpoint bytes. */
export async function encodeCheckpoint(model: PerformerLM, optimizer?: tf.Optimizer, o: SaveOptions = {}): Promise<Uint8Array> {
  const tensors: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
  const byVarName = new Map<string, string>();
  for (const [name, v] of model.namedVariables()) {
    tensors.push({ name: `model/${name}`, shape: v.shape, data: v.dataSync() as Float32Array });
    byVarName.set(v.name, name);
  }
  const hd = model.config.dModel / model.config.heads;
  model.omegas.forEach((w, l) => {
    if (w) tensors.push({ name: `features/${l}`, shape: [model.config.heads, model.config.features, hd], data: w });
  });
  let opt: OptimizerState | null = null;
  if (optimizer) {
    const weights = await optimizer.getWeights();
    const iter = weights[0]?.name === 'iter' ? weights[0] : undefined;
    const slots = iter ? weights.slice(1) : weights;
    const names: string[] = [];
    for (const { name, tensor } of slots) {
      const cut = name.lastIndexOf('/');
      const owner = byVarName.get(name.slice(0, cut));
      if (cut < 0 || owner === undefined) throw new Error(`encodeCheckpoint: optimizer weight ${name} belongs to no variable of this model`);
      names.push(`optimizer/${owner}/${name.slice(cut + 1)}`);
      tensors.push({ name: names[names.length - 1], shape: tensor.shape, data: Float32Array.from(tensor.dataSync()) });
    }
    const iterations = iter ? (await iter.tensor.data())[0] : optimizer.iterations;
    iter?.tensor.dispose();
    const scalars: Record<string, number> = {};
    for (const k of SCALAR_SLOTS) {
      const v = (optimizer as unknown as Record<string, unknown>)[k];
      if (v instanceof tf.Variable && v.size === 1) scalars[k] = v.dataSync()[0];
    }
    const className = (optimizer.constructor as unknown as { className?: string }).className ?? optimizer.getClassName();
    opt = { className, config: optimizer.getConfig() as Record<string, unknown>, iterations, weights: names, scalars };
  }
  const header = {
    format: 'slim-performer-checkpoint' as const,
    version: CHECKPOINT_VERSION,
    created: new Date().toISOString(),
    step: o.step ?? opt?.iterations ?? 0,
    meta: o.meta ?? {},
    config: model.config,
    optimizer: opt,
  };
  return packCheckpoint(header, tensors);
}

/** Every config field must match, except the seed: the random features come from the file. */
function checkConfig(saved: Record<string, unknown>, actual: Record<string, unknown>): void {
  const diffs: string[] = [];
  for (const k of new Set([...Object.keys(saved), ...Object.keys(actual)])) {
    if (k === 'seed') continue;
    if (JSON.stringify(saved[k]) !== JSON.stringify(actual[k]))
      diffs.push(`${k} is ${JSON.stringify(saved[k])} in the checkpoint but ${JSON.stringify(actual[k])} in the model`);
  }
  if (diffs.length) throw new Error(`checkpoint config mismatch: ${diffs.join('; ')}`);
}

function take(ck: Checkpoint, name: string, shape: number[]): Float32Array {
  const t = ck.tensors.get(name);
  if (!t) throw new Error(`checkpoint lacks tensor ${name}`);
  if (t.shape.join() !== shape.join()) throw new Error(`checkpoint shape mismatch for ${name}: [${t.shape}] in the checkpoint, [${shape}] in the model`);
  const i = t.data.findIndex((x) => !Number.isFinite(x));
  if (i >= 0) throw new Error(`checkpoint tensor ${name}[${i}] is ${t.data[i]}; weights and optimizer state must be finite`);
  return t.data;
}

/**
 * Writes a checkpoint's weights and random features into `model` (its config must match) and,
 * when given, its state into `optimizer` (same class; the moments map to the model's variables
 * in `namedVariables()` order, which is the order `SlimTrainer` applies gradients in).
 */
export async function restoreCheckpoint(ck: Checkpoint, model: PerformerLM, optimizer?: tf.Optimizer): Promise<void> {
  checkConfig(ck.header.config as unknown as Record<string, unknown>, model.config as unknown as Record<string, unknown>);
  const vars = model.namedVariables();
  const values = vars.map(([name, v]) => take(ck, `model/${name}`, v.shape));
  const hd = model.config.dModel / model.config.heads;
  const features = model.omegas.map((w, l) => (w ? take(ck, `features/${l}`, [model.config.heads, model.config.features, hd]) : undefined));
  const byName = new Map(vars);
  let slotData: Array<{ name: string; data: Float32Array; shape: number[] }> = [];
  if (optimizer) {
    const saved = ck.header.optimizer;
    if (!saved) throw new Error('checkpoint holds no optimizer state');
    const className = (optimizer.constructor as unknown as { className?: string }).className ?? optimizer.getClassName();
    if (saved.className !== className)
      throw new Error(`checkpoint optimizer mismatch: the checkpoint holds ${saved.className} state, the optimizer is ${className}`);
    if (!Array.isArray(saved.weights) || !saved.weights.every((w) => typeof w === 'string' && w.startsWith('optimizer/')))
      throw new Error('checkpoint corrupt: optimizer.weights must list optimizer/<variable>/<slot> names');
    if (!Number.isSafeInteger(saved.iterations) || saved.iterations < 0)
      throw new Error(`checkpoint corrupt: optimizer.iterations is ${String(saved.iterations)}`);
    if (
      typeof saved.scalars !== 'object' ||
      saved.scalars === null ||
      !Object.values(saved.scalars).every((x) => typeof x === 'number' && Number.isFinite(x))
    ) {
      throw new Error('checkpoint corrupt: optimizer.scalars must map names to finite numbers');
    }
    slotData = saved.weights.map((full) => {
      const rest = full.slice('optimizer/'.length);
      const cut = rest.lastIndexOf('/');
      const v = byName.get(rest.slice(0, cut));
      if (!v) throw new Error(`checkpoint optimizer weight ${full} names no variable of this model`);
      return { name: `${v.name}/${rest.slice(cut + 1)}`, data: take(ck, full, v.shape), shape: v.shape };
    });
  }
  // Everything checked: now write (the model and optimizer are untouched when any check fails).
  const slots = slotData.map((s) => ({ name: s.name, tensor: tf.tensor(s.data, s.shape) }));
  tf.tidy(() => vars.forEach(([, v], i) => v.assign(tf.tensor(values[i], v.shape))));
  features.forEach((f, l) => f && model.omegas[l]!.set(f));
  if (optimizer) {
    const saved = ck.header.optimizer!;
    const old = await optimizer.getWeights();
    const iter = tf.scalar(saved.iterations, 'int32');
    await optimizer.setWeights([{ name: 'iter', tensor: iter }, ...slots]);
    tf.tidy(() => {
      for (const [k, x] of Object.entries(saved.scalars)) {
        const v = (optimizer as unknown as Record<string, unknown>)[k];
        if (v instanceof tf.Variable) v.assign(tf.scalar(x));
      }
    });
    tf.dispose([iter, ...slots.map((s) => s.tensor), ...old.map((w) => w.tensor)]);
  }
}

/** A new model built from a checkpoint's config, holding its weights. */
export async function modelFromCheckpoint(ck: Checkpoint, kernels: SyncKernels): Promise<PerformerLM> {
  const model = new PerformerLM(kernels, ck.header.config);
  try {
    await restoreCheckpoint(ck, model);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** A new optimizer of the checkpoint's class and config, holding its state (or undefined if it has none). */
export async function optimizerFromCheckpoint(ck: Checkpoint, model: PerformerLM): Promise<tf.Optimizer | undefined> {
  const saved = ck.header.optimizer;
  if (!saved) return undefined;
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[saved.className];
  if (!entry) throw new Error(`checkpoint optimizer class ${saved.className} is not registered with TF.js`);
  const [cls, fromConfig] = entry;
  const optimizer = fromConfig(cls, saved.config as tf.serialization.ConfigDict) as tf.Optimizer;
  try {
    await restoreCheckpoint(ck, model, optimizer);
  } catch (e) {
    optimizer.dispose();
    throw e;
  }
  return optimizer;
}

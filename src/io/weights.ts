/**
 * Model weights as safetensors: PyTorch `state_dict` names for the reference-compatible model,
 * our own names for `PerformerLM`, float32 written, float32 or float64 read, the config in the
 * metadata. A model trained by the paper's PyTorch code loads here, and goes back.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgError } from '../kernels/validate.ts';
import { parseSafetensors, writeSafetensors, type TensorData } from './safetensors.ts';

export interface WeightedModel {
  namedVariables(): Array<[string, tf.Variable]>;
}

/** Weights (and `metadata`, e.g. `{ config: JSON }`) as a safetensors file. */
export function exportWeights(model: WeightedModel, metadata: Record<string, string> = {}): Uint8Array {
  const tensors = new Map<string, { shape: number[]; data: TensorData }>();
  for (const [name, v] of model.namedVariables()) tensors.set(name, { shape: v.shape, data: Float32Array.from(v.dataSync()) });
  return writeSafetensors(tensors, { format: 'slim-performer', ...metadata });
}

/**
 * Loads every variable of `model` from a safetensors file: names and shapes must match exactly
 * (missing or extra tensors are an error), dtypes F32 or F64. Returns the file's metadata.
 */
export function importWeights(model: WeightedModel, bytes: Uint8Array): Record<string, string> {
  if (typeof model?.namedVariables !== 'function') throw new ArgError('importWeights: model must have namedVariables() (a PerformerLM or ReferenceLM)');
  const { tensors, metadata } = parseSafetensors(bytes);
  const vars = model.namedVariables();
  const names = new Set(vars.map(([n]) => n));
  const missing = vars.filter(([n]) => !tensors.has(n)).map(([n]) => n);
  const extra = [...tensors.keys()].filter((n) => !names.has(n));
  if (missing.length || extra.length) {
    throw new Error(`importWeights: the file does not fit this model: missing [${missing.join(', ')}], unexpected [${extra.join(', ')}]`);
  }
  const values = vars.map(([name, v]) => {
    const t = tensors.get(name)!;
    if (t.dtype !== 'F32' && t.dtype !== 'F64') throw new Error(`importWeights: ${name} is ${t.dtype}; weights must be F32 or F64`);
    if (t.shape.join() !== v.shape.join()) throw new Error(`importWeights: ${name} must be [${v.shape}], the file has [${t.shape}]`);
    const data = Float32Array.from(t.data as Float32Array | Float64Array);
    const i = data.findIndex((x) => !Number.isFinite(x));
    if (i >= 0)
      throw new Error(`importWeights: ${name}[${i}] is ${data[i]} in the file${Number.isFinite(t.data[i]) ? ' (beyond float32)' : ''}; weights must be finite`);
    return data;
  });
  // Everything checked: now write (the model is untouched when any check fails).
  tf.tidy(() => vars.forEach(([, v], i) => v.assign(tf.tensor(values[i], v.shape))));
  return metadata;
}

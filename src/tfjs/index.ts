/**
 * `slim-performer/tfjs`: everything that needs TF.js (a peer dependency, imported only here).
 *
 * - {@link performerAttention}: the attention op with a custom gradient that calls the fused
 *   backward kernel (autograd keeps q, k, v only), state in and out, gradients through the state.
 * - {@link performerAttentionWebGPU}: the same op on the `webgpu` TF.js backend with the WebGPU
 *   kernels, on TF.js's GPU buffers (synchronous, differentiable, the state a GPU tensor).
 * - {@link PerformerAttention}, {@link PerformerBlock}: serialisable `tf.layers.Layer`s; call
 *   `await initTfjs()` (or `setKernels(k)`) once before running them.
 * - {@link PerformerLM}: a language model with slice-carried state and O(1)-per-token decoding.
 * - {@link ReferenceLM}: the SLiM paper's own architecture with PyTorch parameter names;
 *   {@link exportWeights} / {@link importWeights} move its (or any model's) weights as safetensors.
 * - {@link dense}: the dense layer op (every product on the fast path) under the models.
 * - {@link SlimTrainer}, {@link slimGradients}, {@link fullGradients}: SLiM training;
 *   {@link SlimTrainerWebGPU}, {@link slimGradientsWebGPU}: the same on the `webgpu` TF.js backend.
 * - {@link saveCheckpoint} / {@link loadCheckpoint} (Node files), {@link encodeCheckpoint} /
 *   {@link decodeCheckpoint} (bytes, any runtime), IndexedDB and download helpers: a PerformerLM's
 *   weights and an optimizer's state in one checksummed file.
 */
export { performerAttention, type AttentionOptions, type AttentionResult } from './op.ts';
export { performerAttentionWebGPU, tfjsWebGPUDevice, type WebGPUAttentionOptions, type WebGPUAttentionResult } from './webgpu_op.ts';
export {
  PerformerAttention,
  PerformerBlock,
  setKernels,
  getKernels,
  initTfjs,
  performerLayers,
  redrawCallback,
  type PerformerAttentionArgs,
  type PerformerBlockArgs,
} from './layers.ts';
export {
  PerformerLM,
  sample,
  positions,
  type PerformerLMConfig,
  type ForwardOptions,
  type GenerateOptions,
  type ForwardResult,
  type StateSource,
} from '../model/performer_lm.ts';
export { dense, type DenseOptions } from './ops/dense.ts';
export { gelu } from './ops/activation.ts';
export { layerNorm } from './ops/norm.ts';
export { SlimTrainer, slimGradients, fullGradients, type Batch, type Gradients, type TrainerOptions, type SliceProgress } from '../train/slim.ts';
export { SlimTrainerWebGPU, slimGradientsWebGPU } from '../train/slim_webgpu.ts';
export { ReferenceLM, type ReferenceConfig } from '../model/reference_lm.ts';
export { exportWeights, importWeights, type WeightedModel } from '../io/weights.ts';
export {
  type Checkpoint,
  type CheckpointHeader,
  decodeCheckpoint,
  downloadCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
  loadCheckpointFromIndexedDB,
  loadInto,
  modelFromCheckpoint,
  optimizerFromCheckpoint,
  readCheckpoint,
  restoreCheckpoint,
  type SaveOptions,
  saveCheckpoint,
  saveCheckpointToIndexedDB,
} from '../train/checkpoint/index.ts';

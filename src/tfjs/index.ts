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
 * - {@link SlimTrainer}, {@link slimGradients}, {@link fullGradients}: SLiM training;
 *   {@link SlimTrainerWebGPU}, {@link slimGradientsWebGPU}: the same on the `webgpu` TF.js backend.
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
export { SlimTrainer, slimGradients, fullGradients, type Batch, type Gradients, type TrainerOptions } from '../train/slim.ts';
export { SlimTrainerWebGPU, slimGradientsWebGPU } from '../train/slim_webgpu.ts';

/** Float64 reference implementations ("twins") of every kernel: ground truth for tests and benchmarks. */
export type { Arr } from './util.ts';
export { emptyState, rescale } from './util.ts';
export { refFeatureMap, applyFeature, featureBackward, rowMax } from './featureMap.ts';
export {
  DEFAULT_EPS,
  type RefCausalArgs,
  type RefCausalFeaturesArgs,
  refCausalForward,
  refCausalForwardRecurrent,
  refCausalBackward,
  refCausalBackwardRecurrent,
  refCausalForwardFeatures,
  refCausalBackwardFeatures,
} from './causal.ts';
export { type RefBidirectionalArgs, refBidirectionalForward, refBidirectionalBackward } from './bidirectional.ts';
export { type RefRecurrentStepArgs, refRecurrentStep } from './step.ts';
export { type RefCausalUnrollArgs, refCausalUnroll } from './unroll.ts';
export { type RefDenseArgs, refDense, refDenseBackward } from './dense.ts';
export { refErf, refGelu, refGeluBackward } from './activation.ts';

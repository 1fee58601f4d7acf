/** Float64 reference implementations ("twins") of every kernel: ground truth for tests and benchmarks. */
export type { Arr } from './util.ts';
export { emptyState, rescale } from './util.ts';
export { refFeatureMap, applyFeature, featureBackward, rowMax } from './feature_map.ts';
export { DEFAULT_EPS, type RefCausalArgs, type RefCausalFeaturesArgs } from './causal_slice.ts';
export { refCausalForward, refCausalForwardRecurrent, refCausalForwardFeatures } from './causal_forward.ts';
export { refCausalBackward, refCausalBackwardRecurrent, refCausalBackwardFeatures } from './causal_backward.ts';
export { type RefBidirectionalArgs, refBidirectionalForward, refBidirectionalBackward } from './bidirectional.ts';
export { type RefRecurrentStepArgs, refRecurrentStep } from './recurrent_step.ts';
export { type RefCausalUnrollArgs, refCausalUnroll } from './causal_unroll.ts';
export { type RefDenseArgs, refDense, refDenseBackward } from './dense.ts';
export { refErf, refGelu, refGeluBackward } from './activation.ts';

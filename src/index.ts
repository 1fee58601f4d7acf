export type {
  AttnState,
  BidirectionalBackwardArgs,
  BidirectionalGrads,
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalGrads,
  Dims,
  FeatureGrads,
  FeatureMap,
  FeatureSpec,
  FeaturesArgs,
  FeaturesBackwardArgs,
  FeaturesForwardArgs,
  CausalForwardResult,
  StateGrad,
  StepArgs,
  UnrollArgs,
} from './kernels/types.ts';
export type { AttentionKernels, KernelBackend, KernelResult, StepKernels, SyncKernels } from './kernels/interface.ts';
export { emptyState } from './kernels/state.ts';
export { init, Kernels, type CallStats, type InitOptions } from './wasm/kernels.ts';
export { BINARY_LABEL, bestBinary, relaxedSimdSupported, simdSupported, type SimdOption, type WasmBinary, type WasmSource } from './wasm/loader.ts';
export { ArgError } from './kernels/validate.ts';
export { randomProjection, headProjection, FeatureRedraw, Rng } from './features/index.ts';
// WebGPU (WebGPUKernels, createKernels, …) lives in the `slim-performer/webgpu` entry: src/webgpu/index.ts.

export type { AttnState, Dims, FeatureMap, FeatureSpec, StateGrad } from './types.ts';
export { init, emptyState, Kernels } from './wasm/kernels.ts';
export type {
  BidirectionalBackwardArgs,
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalGrads,
  CallStats,
  FeaturesArgs,
  InitOptions,
  StepArgs,
} from './wasm/kernels.ts';
export { BINARY_LABEL, bestBinary, relaxedSimdSupported, simdSupported, type SimdOption, type WasmBinary, type WasmSource } from './wasm/loader.ts';
export { ArgError } from './validate.ts';
export { randomProjection, headProjection, FeatureRedraw, Rng } from './features/index.ts';
// WebGPU (WebGPUKernels, createKernels, …) lives in the `slim-performer/webgpu` entry: src/webgpu/index.ts.

export type { AttnState, Dims, FeatureMap, FeatureSpec, StateGrad } from './types.ts';
export { init, emptyState, Kernels } from './wasm/kernels.ts';
export type {
  CausalArgs,
  CausalBackwardArgs,
  CausalForwardArgs,
  CausalGrads,
  CallStats,
  FeaturesArgs,
  InitOptions,
  StepArgs,
} from './wasm/kernels.ts';
export { simdSupported, type WasmSource } from './wasm/loader.ts';
export { ArgError } from './validate.ts';
export { randomProjection, headProjection, FeatureRedraw, Rng } from './features/index.ts';

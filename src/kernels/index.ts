/** The backend-neutral kernel layer: types, the one interface, and what every backend shares. */
export type * from './types.ts';
export type { AttentionKernels, KernelBackend, KernelResult, StepKernels, SyncKernels } from './interface.ts';
export { FEATURE_CODES, emptyState, featureDims } from './state.ts';

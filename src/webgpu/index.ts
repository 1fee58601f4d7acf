/**
 * `slim-performer/webgpu`: the WebGPU backend and backend selection, kept out of the core entry
 * (`slim-performer`) so that wasm-only users do not ship the WGSL sources and device code.
 */
export { WebGPUKernels, initWebGPU, type WebGPUOptions, type GpuCausalArgs, type GpuSyncArgs, type GpuCallStats } from './kernels.ts';
export { gpuStateWords, toGpuState, fromGpuState } from './state.ts';
export { findAdapter, GpuContext, WebGPUError, type AcquireOptions, type AdapterChoice } from './device.ts';
export { createKernels, forwardWork, type BackendName, type CreateKernelsOptions, type KernelChoice } from '../backend.ts';

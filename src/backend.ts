/// <reference types="@webgpu/types" />
/**
 * Backend selection: `createKernels({ backend: 'auto' | 'wasm' | 'webgpu' })`.
 * 'auto' picks WebGPU when a hardware adapter exists and the expected problem is large enough
 * to pay for the transfers and dispatches, else the SIMD wasm kernels; the choice and the
 * reason are returned. Both backends have the same methods and arguments; the WebGPU ones
 * return Promises, so callers `await` every call (harmless on wasm results).
 */
import type { Dims } from './kernels/types.ts';
import { init, type InitOptions, type Kernels } from './wasm/kernels.ts';
import { BINARY_LABEL } from './wasm/loader.ts';
import { findAdapter, type AdapterChoice } from './webgpu/device.ts';
import { WebGPUKernels, type WebGPUOptions } from './webgpu/kernels.ts';

export type BackendName = 'wasm' | 'webgpu';

export interface CreateKernelsOptions {
  backend?: 'auto' | BackendName;
  /** Use this GPUDevice for the WebGPU backend. */
  device?: GPUDevice;
  /** A typical call's sizes: 'auto' weighs its work against `minWorkForGpu`. */
  dims?: Dims;
  /** Flops (≈ 4·b·h·t·m·(d + dv) per forward) from which 'auto' prefers a GPU (default 2^28). */
  minWorkForGpu?: number;
  /** 'auto' also accepts software adapters (llvmpipe, SwiftShader): only useful for testing. */
  allowSoftwareGpu?: boolean;
  wasm?: InitOptions;
  webgpu?: WebGPUOptions;
}

export interface KernelChoice {
  kernels: Kernels | WebGPUKernels;
  backend: BackendName;
  /** Why this backend was chosen, e.g. "webgpu: vulkan: nvidia … (work 1.2e10 ≥ 2.7e8)". */
  reason: string;
}

/** Work of one causal forward call, in flops. */
export function forwardWork(dims: Dims): number {
  const { b, h, t, d, m, dv } = dims;
  return 2 * b * h * t * m * (2 * d + 2 * dv);
}

export async function createKernels(opts: CreateKernelsOptions = {}): Promise<KernelChoice> {
  const want = opts.backend ?? 'auto';
  if (want !== 'auto' && want !== 'wasm' && want !== 'webgpu')
    throw new TypeError(`createKernels: backend must be 'auto', 'wasm' or 'webgpu', got ${String(want)}`);
  const wasm = async (reason: string): Promise<KernelChoice> => {
    const kernels = await init(opts.wasm);
    return { kernels, backend: 'wasm', reason: `wasm (${BINARY_LABEL[kernels.binary]}): ${reason}` };
  };
  if (want === 'wasm') return wasm('requested');
  if (want === 'webgpu' || opts.device) {
    const kernels = await WebGPUKernels.create({ ...opts.webgpu, device: opts.device ?? opts.webgpu?.device });
    return { kernels, backend: 'webgpu', reason: `webgpu: ${want === 'webgpu' ? 'requested' : 'a GPUDevice was given'} (${kernels.description})` };
  }
  let choice: AdapterChoice | null = null;
  try {
    choice = await findAdapter(opts.webgpu);
  } catch {
    choice = null;
  }
  if (!choice) return wasm('no WebGPU adapter');
  if (choice.software && !opts.allowSoftwareGpu) return wasm(`the only WebGPU adapter is a software renderer (${choice.description})`);
  const min = opts.minWorkForGpu ?? 2 ** 28;
  if (!opts.dims) return wasm(`no dims given, so the problem size is unknown (pass dims to let a GPU (${choice.description}) be chosen)`);
  const work = forwardWork(opts.dims);
  if (work < min) return wasm(`problem too small for the GPU (work ${work.toExponential(2)} < minWorkForGpu ${min.toExponential(2)})`);
  const kernels = await WebGPUKernels.create({ ...opts.webgpu, adapter: choice.adapter });
  return { kernels, backend: 'webgpu', reason: `webgpu: ${choice.description} (work ${work.toExponential(2)} ≥ ${min.toExponential(2)})` };
}

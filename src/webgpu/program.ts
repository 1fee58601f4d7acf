/// <reference types="@webgpu/types" />
/** Compute programs and the pipeline cache: one pipeline per shader key. */
import type { GpuContext } from './device.ts';
import { WebGPUError } from './device.ts';
import { kernelSource, type KernelName, type ShaderFile } from './shaders/index.ts';

export interface Program {
  /** `kernel/wg=N` (and `/tiled`): identifies the WGSL text and its specialisation. */
  shaderKey: string;
  kernel: KernelName;
  workgroupSize: number;
  /** Built with the tiled products (shaders/tile.wgsl). */
  tiled: boolean;
  pipeline: GPUComputePipeline;
  /** Encodes one dispatch of `groups` workgroups (2-D when over the per-dimension limit). */
  dispatch(pass: GPUComputePassEncoder, bindGroup: GPUBindGroup, groups: number): void;
}

/** Workgroups along x and y for `n` groups. */
export function grid(n: number, maxPerDim: number): [number, number] {
  const x = Math.min(n, maxPerDim);
  return [x, Math.ceil(n / x)];
}

/** Workgroups of at least this many invocations can run the tiled products (an 8 × 8 grid computes). */
export const TILED_MIN_WORKGROUP = 64;

function key(kernel: KernelName, workgroupSize: number, tiled: boolean): string {
  return `${kernel}/wg=${workgroupSize}${tiled ? '/tiled' : ''}`;
}

/**
 * Pipeline constants (shaders/common.wgsl, shaders/tile.wgsl): the workgroup size, whether the
 * products are tiled, and the tile's invocation grid (16 × 16 from 256 invocations, else 8 × 8).
 */
function constants(kernel: KernelName, workgroupSize: number, tiled: boolean): Record<string, number> | undefined {
  if (kernel === 'fill') return undefined;
  if (tiled && workgroupSize < TILED_MIN_WORKGROUP)
    throw new Error(`tiled kernels need workgroups of ${TILED_MIN_WORKGROUP} invocations or more, got ${workgroupSize}`);
  return { WG: workgroupSize, TILED: tiled ? 1 : 0, TS: workgroupSize >= 256 ? 16 : 8 };
}

export class ProgramCache {
  private cache = new Map<string, Promise<Program>>();
  /** Programs whose pipeline exists (built by `get` or `getSync`). */
  private ready = new Map<string, Program>();

  constructor(
    private readonly ctx: GpuContext,
    private readonly files: Record<ShaderFile, string>,
  ) {}

  /** Number of distinct pipelines built so far. */
  get size(): number {
    return this.cache.size;
  }

  get(kernel: KernelName, workgroupSize: number, tiled = false): Promise<Program> {
    const shaderKey = key(kernel, workgroupSize, tiled);
    let p = this.cache.get(shaderKey);
    if (!p) {
      p = this.build(kernel, workgroupSize, tiled, shaderKey);
      this.cache.set(shaderKey, p);
      p.catch(() => this.cache.delete(shaderKey));
    }
    return p;
  }

  /**
   * The program without waiting: from the cache when built, else built now with the synchronous
   * `createComputePipeline` (compilation errors then surface through the caller's error scope).
   */
  getSync(kernel: KernelName, workgroupSize: number, tiled = false): Program {
    const shaderKey = key(kernel, workgroupSize, tiled);
    let p = this.ready.get(shaderKey);
    if (!p) {
      const device = this.ctx.device;
      const module = device.createShaderModule({ code: kernelSource(this.files, kernel), label: shaderKey });
      const pipeline = device.createComputePipeline({
        layout: 'auto',
        compute: { module, entryPoint: 'main', constants: constants(kernel, workgroupSize, tiled) },
        label: shaderKey,
      });
      p = this.program(kernel, workgroupSize, tiled, shaderKey, pipeline);
      this.ready.set(shaderKey, p);
      if (!this.cache.has(shaderKey)) this.cache.set(shaderKey, Promise.resolve(p));
    }
    return p;
  }

  private program(kernel: KernelName, workgroupSize: number, tiled: boolean, shaderKey: string, pipeline: GPUComputePipeline): Program {
    const maxPerDim = this.ctx.device.limits.maxComputeWorkgroupsPerDimension;
    return {
      shaderKey,
      kernel,
      workgroupSize,
      tiled,
      pipeline,
      dispatch(pass, bindGroup, groups) {
        const [x, y] = grid(groups, maxPerDim);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(x, y);
      },
    };
  }

  private async build(kernel: KernelName, workgroupSize: number, tiled: boolean, shaderKey: string): Promise<Program> {
    const device = this.ctx.device;
    const code = kernelSource(this.files, kernel);
    return this.ctx.scoped(`shader ${shaderKey}`, async () => {
      const module = device.createShaderModule({ code, label: shaderKey });
      const info = await module.getCompilationInfo?.();
      const errors = info?.messages.filter((m) => m.type === 'error') ?? [];
      if (errors.length) {
        throw new WebGPUError(`shader ${shaderKey} failed to compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
      }
      const pipeline = await device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module, entryPoint: 'main', constants: constants(kernel, workgroupSize, tiled) },
        label: shaderKey,
      });
      const p = this.program(kernel, workgroupSize, tiled, shaderKey, pipeline);
      this.ready.set(shaderKey, p);
      return p;
    });
  }
}

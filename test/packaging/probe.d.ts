export interface ProbeResult {
  simd: boolean;
  /** The wasm binary ('relaxed' | 'simd' | 'scalar'); absent for WebGPU kernels. */
  binary?: string;
  forward: string;
  backward: string;
  sumOut: number;
}
export function probe(lib: unknown, kernels: unknown): Promise<ProbeResult>;
export function probeAll(lib: unknown, inline: unknown, createPool: unknown, r: Record<string, unknown>): Promise<Record<string, unknown>>;

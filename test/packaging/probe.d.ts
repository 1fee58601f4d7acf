export interface ProbeResult {
  simd: boolean;
  forward: string;
  backward: string;
  sumOut: number;
}
export function probe(lib: unknown, kernels: unknown): Promise<ProbeResult>;
export function probeAll(lib: unknown, inline: unknown, createPool: unknown, r: Record<string, unknown>): Promise<Record<string, unknown>>;

export interface ProbeResult {
  simd: boolean;
  forward: string;
  backward: string;
  sumOut: number;
}
export function probe(lib: unknown, kernels: unknown): Promise<ProbeResult>;

/** Machine header printed first and stored in the JSON. */
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Smallest module using a v128 instruction (wasm-feature-detect's SIMD probe). */
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

export interface MachineInfo {
  cpu: string;
  cores: number;
  totalMemGiB: number;
  node: string;
  v8: string;
  platform: string;
  date: string;
  tfjsCore: string;
  tfjsBackendWasm: string;
  wasmSimd: boolean;
  cpuFlags: string;
}

function cpuModel(): { model: string; flags: string } {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim();
    const flags = /^flags\s*:\s*(.+)$/m.exec(info)?.[1] ?? '';
    const simd = flags.split(/\s+/).filter((f) => /^(sse4_2|avx|avx2|fma|avx512f)$/.test(f));
    if (model) return { model, flags: simd.join(' ') };
  } catch {
    /* not Linux */
  }
  return { model: os.cpus()[0]?.model ?? 'unknown', flags: '' };
}

function pkgVersion(name: string): string {
  try {
    return require(`${name}/package.json`).version;
  } catch {
    return 'not installed';
  }
}

export function machineInfo(): MachineInfo {
  const { model, flags } = cpuModel();
  let wasmSimd = false;
  try {
    wasmSimd = WebAssembly.validate(SIMD_PROBE);
  } catch {
    /* no simd */
  }
  return {
    cpu: model,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    totalMemGiB: +(os.totalmem() / 1024 ** 3).toFixed(1),
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform} ${os.release()} ${process.arch}`,
    date: new Date().toISOString(),
    tfjsCore: pkgVersion('@tensorflow/tfjs-core'),
    tfjsBackendWasm: pkgVersion('@tensorflow/tfjs-backend-wasm'),
    wasmSimd,
    cpuFlags: flags,
  };
}

export function machineMarkdown(m: MachineInfo): string {
  return [
    `- CPU: ${m.cpu} (${m.cores} cores${m.cpuFlags ? `; ${m.cpuFlags}` : ''})`,
    `- Memory: ${m.totalMemGiB} GiB`,
    `- Node ${m.node}, V8 ${m.v8}, ${m.platform}`,
    `- tfjs-core ${m.tfjsCore}, tfjs-backend-wasm ${m.tfjsBackendWasm}`,
    `- wasm SIMD detected: ${m.wasmSimd ? 'yes' : 'no'}`,
    `- Date: ${m.date}`,
  ].join('\n');
}

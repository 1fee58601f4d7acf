/** Messages between the page (main.ts) and the training worker (worker.ts). */

export type Request =
  | { type: 'init'; tfBackend: 'wasm' | 'cpu' }
  | { type: 'load-url'; url: string }
  | { type: 'load-bytes'; bytes: ArrayBuffer; name: string }
  | { type: 'scratch'; text: string; seed: number }
  | { type: 'train'; text: string; seq: number; slice: number; batch: number; steps: number; lr: number; device: TrainDevice }
  | { type: 'long-step'; text: string; source: 'text' | 'random'; tokens: number; slice: number }
  | { type: 'stop' }
  | { type: 'eval'; text: string; seq: number; slice: number }
  | { type: 'generate'; prompt: string; tokens: number; temperature: number; topK: number; seed: number }
  | { type: 'save-idb'; key: string }
  | { type: 'restore-idb'; key: string }
  | { type: 'export' }
  | { type: 'webgpu-check' };

/**
 * Where fine-tuning runs: `auto` (WebGPU when the check found a hardware adapter, else wasm),
 * `webgpu` (also on a software adapter: slow, for testing) or `wasm`.
 */
export type TrainDevice = 'auto' | 'webgpu' | 'wasm';

/** What a training run used: the device and why. */
export interface TrainedOn {
  device: 'webgpu' | 'wasm';
  reason: string;
}

export interface BackendInfo {
  /** TF.js backend running the model's dense layers. */
  tfBackend: string;
  /** Why this TF.js backend (e.g. wasm failed to load → cpu). */
  tfReason: string;
  /** The SLiM attention kernels: always the wasm Kernels (the trainer calls them synchronously). */
  kernels: string;
  simd: boolean;
  threads: string;
  crossOriginIsolated: boolean;
}

export interface WebGPUInfo {
  available: boolean;
  /** Plain words: what was found and what it is used for. */
  summary: string;
  adapter?: string;
  software?: boolean;
  /** Max |webgpu − wasm| of the check's attention output. */
  maxDiff?: number;
  /** Whether `auto` fine-tuning runs on WebGPU (a hardware adapter was found). */
  trainsOnGpu?: boolean;
}

export interface MemoryInfo {
  /** Slim kernels' wasm heap (bytes). */
  kernelsHeap: number;
  /** Bytes live in the kernels' heap right now. */
  kernelsLive: number;
  /** TF.js tensors' bytes (tf.memory().numBytes). */
  tensorBytes: number;
  /** TF.js wasm backend heap (0 on cpu). */
  tfHeap: number;
}

export interface ModelInfo {
  source: string;
  vocab: string;
  config: Record<string, unknown>;
  params: number;
  step: number;
  /** Suggested sequence / slice length from the checkpoint's meta. */
  seq?: number;
  slice?: number;
}

export type Event =
  | {
      id: number;
      type: 'progress';
      step: number;
      steps: number;
      loss: number;
      tokPerSec: number;
      msPerStep: number;
      memory: MemoryInfo;
      dropped: number;
      device: 'webgpu' | 'wasm';
    }
  | { id: number; type: 'slice-progress'; pass: 1 | 2; done: number; total: number; memory: MemoryInfo }
  | { id: number; type: 'token'; text: string }
  | { id: number; type: 'done'; result?: unknown }
  | { id: number; type: 'error'; message: string; detail?: string };

export type Ready = { id: number; type: 'done'; result: BackendInfo };

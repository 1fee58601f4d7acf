/** Messages between the pool and its workers. */
import type { InitOptions } from '../wasm/kernels.ts';
import type { WasmBinary } from '../wasm/loader.ts';

export const METHODS = [
  'causalForward',
  'causalBackward',
  'causalForwardFeatures',
  'causalBackwardFeatures',
  'bidirectionalForward',
  'bidirectionalBackward',
] as const;
export type Method = (typeof METHODS)[number];

export type ToWorker =
  | { type: 'init'; options: { simd?: InitOptions['simd']; wasm?: Exclude<InitOptions['wasm'], URL | Response> } }
  | { type: 'call'; id: number; method: Method; args: unknown };

export type FromWorker =
  | { type: 'ready'; binary: WasmBinary }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; name: string; message: string };

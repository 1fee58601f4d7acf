/**
 * The TF.js `webgpu` backend for tests: in browsers navigator.gpu as it is; in Node Dawn from npm
 * `webgpu` (node_gpu.ts). False when there is no adapter.
 */
import * as tf from '@tensorflow/tfjs';
import { installNodeGpu } from './node_gpu.ts';

export async function tfWebGPU(): Promise<boolean> {
  if ((await installNodeGpu()) !== undefined) return false;
  await import('@tensorflow/tfjs-backend-webgpu'); // registers 'webgpu' only if navigator.gpu exists
  return tf.setBackend('webgpu').catch(() => false);
}

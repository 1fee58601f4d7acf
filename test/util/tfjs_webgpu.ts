/**
 * The TF.js `webgpu` backend for tests: in browsers navigator.gpu as it is; in Node Dawn from npm
 * `webgpu`. On Mesa GLES only a compatibility-level adapter exists, which TF.js does not ask
 * for, so navigator.gpu is wrapped to request one. False when there is no adapter.
 */
import * as tf from '@tensorflow/tfjs';

export async function tfWebGPU(): Promise<boolean> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!g.navigator?.gpu) {
    if (typeof window !== 'undefined') return false;
    try {
      const spec = 'webgpu';
      const { create, globals } = (await import(/* @vite-ignore */ spec)) as { create: (f: string[]) => GPU; globals: object };
      Object.assign(globalThis, globals);
      const backends = process.env.SLIM_WEBGPU_BACKEND ? process.env.SLIM_WEBGPU_BACKEND.split(',') : ['default', 'opengles'];
      let gpu: GPU | undefined;
      for (const b of backends) {
        const cand = create(b === 'default' ? [] : [`backend=${b}`]);
        if (await cand.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions).catch(() => null)) {
          gpu = cand;
          break;
        }
      }
      if (!gpu) return false;
      const dawn = gpu;
      const wrapped = {
        // Core first, then compatibility (all Mesa GLES offers).
        requestAdapter: async (o: GPURequestAdapterOptions = {}) =>
          (await dawn.requestAdapter(o).catch(() => null)) ?? dawn.requestAdapter({ ...o, featureLevel: 'compatibility' } as GPURequestAdapterOptions),
        getPreferredCanvasFormat: () => 'rgba8unorm',
        wgslLanguageFeatures: (dawn as { wgslLanguageFeatures?: unknown }).wgslLanguageFeatures,
      };
      g.navigator ??= {};
      Object.defineProperty(g.navigator, 'gpu', { value: wrapped, configurable: true });
    } catch {
      return false;
    }
  }
  await import('@tensorflow/tfjs-backend-webgpu'); // registers 'webgpu' only if navigator.gpu exists
  return tf.setBackend('webgpu').catch(() => false);
}

/**
 * Preloaded (`node --import`) before a doc snippet marked `<!-- snippet: webgpu -->`: gives Node
 * what a browser has, `navigator.gpu`, from npm `webgpu` (Dawn), before the snippet's imports run
 * (`@tensorflow/tfjs-backend-webgpu` registers its backend only if navigator.gpu exists then).
 * On Mesa GLES (llvmpipe) Dawn offers only a compatibility-level adapter, which TF.js does not
 * ask for, so requestAdapter falls back to it. Without any adapter it exits with SKIP_CODE.
 */
import { SKIP_CODE } from './snippets.ts';

const g = globalThis as { navigator?: { gpu?: GPU } };
if (!g.navigator?.gpu) {
  let gpu: GPU | undefined;
  let why = 'no adapter';
  try {
    const spec = 'webgpu';
    const { create, globals } = (await import(spec)) as { create: (f: string[]) => GPU; globals: object };
    Object.assign(globalThis, globals);
    const backends = process.env.SLIM_WEBGPU_BACKEND ? process.env.SLIM_WEBGPU_BACKEND.split(',') : ['default', 'opengles'];
    for (const b of backends) {
      const cand = create(b === 'default' ? [] : [`backend=${b}`]);
      if (await cand.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions).catch(() => null)) {
        gpu = cand;
        break;
      }
    }
  } catch (e) {
    why = `npm webgpu: ${(e as Error).message}`;
  }
  if (!gpu) {
    process.stdout.write(`SNIPPET-SKIP: no WebGPU adapter in Node (${why}; Mesa's needs EGL_PLATFORM=surfaceless)\n`);
    process.exit(SKIP_CODE);
  }
  const dawn = gpu;
  const wrapped = {
    requestAdapter: async (o: GPURequestAdapterOptions = {}) =>
      (await dawn.requestAdapter(o).catch(() => null)) ?? dawn.requestAdapter({ ...o, featureLevel: 'compatibility' } as GPURequestAdapterOptions),
    getPreferredCanvasFormat: () => 'rgba8unorm',
    wgslLanguageFeatures: (dawn as { wgslLanguageFeatures?: unknown }).wgslLanguageFeatures,
  };
  g.navigator ??= {};
  Object.defineProperty(g.navigator, 'gpu', { value: wrapped, configurable: true });
}

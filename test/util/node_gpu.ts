/**
 * `navigator.gpu` for Node from npm `webgpu` (Dawn), as a browser has it. On Mesa GLES (llvmpipe)
 * Dawn offers only a compatibility-level adapter, which TF.js does not ask for, so the installed
 * `requestAdapter` asks for core first and falls back to compatibility. Used by the TF.js webgpu
 * tests (tfjs_webgpu.ts) and the README snippets' preload (test/docs/webgpu-prelude.ts).
 */

/** Installs it unless navigator.gpu exists; undefined on success, else why not. */
export async function installNodeGpu(): Promise<string | undefined> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (g.navigator?.gpu) return undefined;
  if (typeof window !== 'undefined') return 'a browser without navigator.gpu';
  let gpu: GPU | undefined;
  try {
    const spec = 'webgpu';
    const { create, globals } = (await import(/* @vite-ignore */ spec)) as { create: (f: string[]) => GPU; globals: object };
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
    return `npm webgpu: ${(e as Error).message}`;
  }
  if (!gpu) return 'no adapter';
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
  return undefined;
}

/**
 * Performer attention on TF.js's own GPU buffers (src/tfjs/webgpu_op.ts) with the TF.js `webgpu`
 * backend: forward, output state and gradients against the wasm kernels (what `performerAttention`
 * runs), and no readback of tensor data to the CPU during the calls. In Node the TF.js backend
 * runs on Dawn (npm `webgpu`); on Mesa GLES only a compatibility-level adapter exists, which
 * TF.js does not ask for, so navigator.gpu is wrapped to request one. Skipped without an adapter.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { initTfjsWebGPUKernels, performerAttentionGPU, performerAttentionGPUBackward } from '../../src/tfjs/webgpu_op.ts';
import type { WebGPUKernels } from '../../src/webgpu/kernels.ts';
import type { FeatureMap } from '../../src/types.ts';
import { assertClose } from '../util/assert.ts';
import { makeProblem, upstream } from '../util/problems.ts';

async function tfWebGPU(): Promise<boolean> {
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

const ok = await tfWebGPU();

describe.skipIf(!ok)('performerAttentionGPU on the TF.js webgpu backend', () => {
  let G: WebGPUKernels;
  let W: Kernels;
  let reads = 0;
  beforeAll(async () => {
    G = await initTfjsWebGPUKernels();
    W = await init();
    const be = tf.backend() as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of ['readSync', 'read', 'getBufferData']) {
      const orig = be[name].bind(be);
      be[name] = (...a: unknown[]) => {
        reads++;
        return orig(...a);
      };
    }
  });
  afterAll(() => G?.dispose());

  const dims = { b: 1, h: 2, t: 33, d: 8, m: 8, dv: 8 };
  for (const feature of ['favor', 'relu'] as FeatureMap[]) {
    it(`${feature}: forward, state and gradients match the wasm kernels with no CPU readback`, async () => {
      const p = makeProblem(feature, dims, feature === 'favor' ? 11 : 12);
      const { dOut, dState } = upstream(dims, 13);
      const { b, h, t, d, dv } = dims;
      const q = tf.tensor4d(p.q, [b, h, t, d]);
      const k = tf.tensor4d(p.k, [b, h, t, d]);
      const v = tf.tensor4d(p.v, [b, h, t, dv]);
      const gy = tf.tensor4d(dOut, [b, h, t, dv]);
      const opts = { kernels: G, feature, omega: p.omega, chunk: 8 };

      reads = 0;
      const before = tf.memory().numTensors;
      const f = await performerAttentionGPU(q, k, v, opts);
      const g = await performerAttentionGPUBackward(q, k, v, gy, { ...opts, stateOut: f.state, dState });
      const y = tf.tidy(() => f.out.mul(2)); // TF.js ops consume the outputs on the GPU
      expect(reads, 'no tensor data was read back to the CPU').toBe(0);
      expect(tf.memory().numTensors - before).toBe(5); // out, dq, dk, dv, y: the GPU copies of the inputs are freed
      expect(G.liveBuffers(), 'kernel outputs go back to the pool').toBe(0);

      const ref = W.causalForward({ ...p, chunk: 8 });
      const rg = W.causalBackward({ ...p, chunk: 8, stateOut: ref.state, out: ref.out, dOut, dState });
      assertClose('out', ref.out, await f.out.data(), 1e-4);
      assertClose('2·out', ref.out.map((x) => 2 * x), await y.data(), 1e-4);
      assertClose('state.S', ref.state.S, f.state.S, 1e-4);
      assertClose('dq', rg.dq, await g.dq.data(), 1e-4);
      assertClose('dk', rg.dk, await g.dk.data(), 1e-4);
      assertClose('dv', rg.dv, await g.dv.data(), 1e-4);
      assertClose('dState.S', rg.dState.S, g.dState.S, 1e-4);
      assertClose('dState.z', rg.dState.z, g.dState.z, 1e-4);
      expect(reads, 'the readback spy sees data() reads').toBeGreaterThan(0);
      tf.dispose([q, k, v, gy, f.out, g.dq, g.dk, g.dv, y]);
    });
  }

  it('refuses kernels on another device', async () => {
    const q = tf.zeros([1, 1, 4, 8]) as tf.Tensor4D;
    const other = { device: {} } as unknown as WebGPUKernels;
    await expect(performerAttentionGPU(q, q, q, { kernels: other, feature: 'relu' })).rejects.toThrow(/another GPUDevice/);
    q.dispose();
  });
});

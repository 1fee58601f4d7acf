/**
 * Performer attention as a TF.js op on TF.js's own GPU buffers (src/tfjs/webgpu_op.ts) with the
 * TF.js `webgpu` backend: forward, output state and gradients (through tf.grads, the state both
 * ways) against the wasm kernels, slices chained through the state against the whole sequence,
 * the layers on WebGPU kernels against the same layers on the wasm kernels, no readback of tensor
 * data to the CPU, no leaked tensors or buffers, and errors. In Node the TF.js backend
 * runs on Dawn (npm `webgpu`); on Mesa GLES only a compatibility-level adapter exists, which
 * TF.js does not ask for, so navigator.gpu is wrapped to request one. Skipped without an adapter.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { performerAttentionWebGPU, tfjsWebGPUDevice } from '../../src/tfjs/webgpu_op.ts';
import { PerformerAttention, PerformerBlock, setKernels } from '../../src/tfjs/layers.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';
import { fromGpuState, gpuStateWords, toGpuState } from '../../src/webgpu/state.ts';
import type { Dims, FeatureMap } from '../../src/kernels/types.ts';
import { assertClose } from '../util/assert.ts';
import { makeProblem, prefixState, upstream } from '../util/problems.ts';
import { Rng } from '../util/rng.ts';
import { tfWebGPU } from '../util/tfjs_webgpu.ts';

const ok = await tfWebGPU();

/** The upstream state gradient in the GPU layout: S, z in the hi part, zero elsewhere. */
function stateGradTensor(dS: { S: Float64Array; z: Float64Array }, dims: Dims): tf.Tensor2D {
  const { b, h, m, dv } = dims;
  const sw = gpuStateWords(m, dv);
  const g = new Float32Array(b * h * sw);
  for (let i = 0; i < b * h; i++) {
    for (let e = 0; e < m * dv; e++) g[i * sw + e] = dS.S[i * m * dv + e];
    for (let r = 0; r < m; r++) g[i * sw + m * dv + r] = dS.z[i * m + r];
  }
  return tf.tensor2d(g, [b * h, sw]);
}

/** The hi part (S, z) of each slice of a GPU-layout state gradient, as {S, z}. */
function hiPart(g: Float32Array, dims: Dims): { S: Float64Array; z: Float64Array } {
  const { b, h, m, dv } = dims;
  const sw = gpuStateWords(m, dv);
  const S = new Float64Array(b * h * m * dv);
  const z = new Float64Array(b * h * m);
  for (let i = 0; i < b * h; i++) {
    S.set(g.subarray(i * sw, i * sw + m * dv), i * m * dv);
    z.set(g.subarray(i * sw + m * dv, i * sw + m * dv + m), i * m);
  }
  return { S, z };
}

describe.skipIf(!ok)('performerAttentionWebGPU on the TF.js webgpu backend', () => {
  let G: WebGPUKernels;
  let W: Kernels;
  let reads = 0;
  beforeAll(async () => {
    G = await initWebGPU({ device: tfjsWebGPUDevice(), poison: true });
    await G.prepare();
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
    it(`${feature} causal: out, state and tf.grads (q, k, v, state in, state out) match the wasm kernels, no CPU readback`, async () => {
      const p = makeProblem(feature, dims, feature === 'favor' ? 11 : 12);
      const s0 = prefixState(p, 9, 5);
      const { dOut, dState } = upstream(dims, 13);
      const { b, h, t, d, dv } = dims;
      const q = tf.tensor4d(p.q, [b, h, t, d]);
      const k = tf.tensor4d(p.k, [b, h, t, d]);
      const v = tf.tensor4d(p.v, [b, h, t, dv]);
      const state0 = tf.tensor2d(toGpuState(s0, dims), [b * h, gpuStateWords(dims.m, dv)]);
      const wOut = tf.tensor4d(dOut, [b, h, t, dv]);
      const wState = stateGradTensor(dState, dims);
      const opts = { kernels: G, feature, omega: p.omega, chunk: 8, causal: true };
      const before = tf.memory().numTensors;

      reads = 0;
      const f = performerAttentionWebGPU(q, k, v, { ...opts, state: state0 });
      const loss = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, ss: tf.Tensor) => {
        const r = performerAttentionWebGPU(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, { ...opts, state: ss as tf.Tensor2D });
        return tf.add(tf.sum(tf.mul(r.out, wOut)), tf.sum(tf.mul(r.state!, wState))) as tf.Scalar;
      };
      const [gq, gk, gv, gs] = tf.grads(loss)([q, k, v, state0]);
      expect(reads, 'no tensor data was read back to the CPU').toBe(0);
      expect(G.liveBuffers(), 'kernel outputs went back to the pool').toBe(0);
      await G.flush();

      const ref = W.causalForward({ ...p, chunk: 8, state: s0 });
      const rg = W.causalBackward({ ...p, chunk: 8, stateIn: s0, stateOut: ref.state, out: ref.out, dOut, dState });
      assertClose('out', ref.out, await f.out.data(), 1e-4);
      const st = fromGpuState((await f.state!.data()) as Float32Array, dims, feature);
      assertClose('state.S', ref.state.S, st.S, 1e-4);
      assertClose('state.z', ref.state.z, st.z, 1e-4);
      assertClose('dq', rg.dq, await gq.data(), 1e-4);
      assertClose('dk', rg.dk, await gk.data(), 1e-4);
      assertClose('dv', rg.dv, await gv.data(), 1e-4);
      const ds = hiPart((await gs.data()) as Float32Array, dims);
      assertClose('dState.S', rg.dState.S, ds.S, 1e-4);
      assertClose('dState.z', rg.dState.z, ds.z, 1e-4);
      expect(reads, 'the readback spy sees data() reads').toBeGreaterThan(0);
      tf.dispose([f.out, f.state!, gq, gk, gv, gs]);
      expect(tf.memory().numTensors, 'no tensors left behind').toBe(before);
      tf.dispose([q, k, v, state0, wOut, wState]);
    });
  }

  it('slices chained through the state in one tape get the gradient of the whole sequence', async () => {
    const p = makeProblem('favor', dims, 21);
    const { b, h, t, d, dv } = dims;
    const q = tf.tensor4d(p.q, [b, h, t, d]);
    const k = tf.tensor4d(p.k, [b, h, t, d]);
    const v = tf.tensor4d(p.v, [b, h, t, dv]);
    const w = tf.tensor4d(upstream(dims, 22).dOut, [b, h, t, dv]);
    const opts = { kernels: G, feature: 'favor' as const, omega: tf.tensor3d(p.omega!, [h, dims.m, d]), chunk: 4, causal: true };
    const cut = (x: tf.Tensor, a: number, n: number) => tf.slice(x, [0, 0, a, 0], [b, h, n, -1]) as tf.Tensor4D;
    const whole = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
      tf.sum(tf.mul(performerAttentionWebGPU(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, { ...opts, returnState: false }).out, w)) as tf.Scalar;
    const sliced = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => {
      let state: tf.Tensor2D | undefined;
      const outs: tf.Tensor[] = [];
      for (const [a, n] of [
        [0, 13],
        [13, 7],
        [20, 13],
      ]) {
        const r = performerAttentionWebGPU(cut(qq, a, n), cut(kk, a, n), cut(vv, a, n), { ...opts, state });
        outs.push(r.out);
        state = r.state;
      }
      return tf.sum(tf.mul(tf.concat(outs, 2), w)) as tf.Scalar;
    };
    const gw = tf.grads(whole)([q, k, v]);
    const gs = tf.grads(sliced)([q, k, v]);
    for (let i = 0; i < 3; i++) assertClose(['dq', 'dk', 'dv'][i], await gw[i].data(), await gs[i].data(), 1e-4);
    assertClose('loss', await whole(q, k, v).data(), await sliced(q, k, v).data(), 1e-5);
    // …and the whole-sequence gradient is the wasm kernels' one.
    const ref = W.causalForward({ ...p, chunk: 4 });
    const rg = W.causalBackward({ ...p, chunk: 4, stateOut: ref.state, dOut: (await w.data()) as Float32Array });
    assertClose('dq (wasm)', rg.dq, await gw[0].data(), 1e-4);
    tf.dispose([q, k, v, w, opts.omega, ...gw, ...gs]);
  });

  it('bidirectional: out and tf.grads match the wasm kernels', async () => {
    const bd = { b: 2, h: 1, t: 21, d: 8, m: 16, dv: 4 };
    const p = makeProblem('favor', bd, 31);
    const { b, h, t, d, dv } = bd;
    const { dOut } = upstream(bd, 32);
    const q = tf.tensor4d(p.q, [b, h, t, d]);
    const k = tf.tensor4d(p.k, [b, h, t, d]);
    const v = tf.tensor4d(p.v, [b, h, t, dv]);
    const w = tf.tensor4d(dOut, [b, h, t, dv]);
    const opts = { kernels: G, feature: 'favor' as const, omega: p.omega, chunk: 8, causal: false };
    reads = 0;
    const out = performerAttentionWebGPU(q, k, v, opts).out;
    const g = tf.grads(
      (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
        tf.sum(tf.mul(performerAttentionWebGPU(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, opts).out, w)) as tf.Scalar,
    )([q, k, v]);
    expect(reads).toBe(0);
    const ref = W.bidirectionalForward({ ...p, chunk: 8 });
    const rg = W.bidirectionalBackward({ ...p, chunk: 8, dOut });
    assertClose('out', ref.out, await out.data(), 1e-4);
    assertClose('dq', rg.dq, await g[0].data(), 1e-4);
    assertClose('dk', rg.dk, await g[1].data(), 1e-4);
    assertClose('dv', rg.dv, await g[2].data(), 1e-4);
    tf.dispose([q, k, v, w, out, ...g]);
  });

  it('PerformerAttention on WebGPU kernels computes what it computes on the wasm kernels (outputs and weight gradients)', async () => {
    const rng = new Rng(41);
    const [B, T, D] = [2, 19, 16];
    const xv = Float32Array.from(rng.normals(B * T * D));
    const run = async (backend: string, kernels: Kernels | WebGPUKernels) => {
      await tf.setBackend(backend);
      setKernels(kernels);
      const layer = new PerformerAttention({ heads: 2, features: 12, feature: 'favor', causal: true, chunk: 4, seed: 7 });
      const x = tf.tensor3d(xv, [B, T, D]);
      layer.apply(x); // builds the weights (glorot initialisers are seeded below)
      layer.setWeights(
        layer.getWeights().map((wt, i) =>
          tf.tensor(
            Float32Array.from(new Rng(100 + i).normals(wt.size)).map((z) => z * 0.3),
            wt.shape,
          ),
        ),
      );
      const y = layer.apply(x) as tf.Tensor;
      const trainable = layer.trainableWeights.map((wt) => wt.read() as tf.Variable);
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(layer.apply(x) as tf.Tensor)) as tf.Scalar, trainable);
      const out = { y: await y.data(), g: await Promise.all(trainable.map((wt) => grads[wt.name].data())) };
      tf.dispose([x, y, ...Object.values(grads)]);
      layer.dispose();
      return out;
    };
    try {
      const cpu = await run('cpu', W);
      reads = 0;
      const gpu = await run('webgpu', G);
      assertClose('layer output', cpu.y, gpu.y, 1e-4);
      expect(cpu.g.length).toBe(8);
      cpu.g.forEach((g, i) => assertClose(`weight gradient ${i}`, g, gpu.g[i], 1e-4));
    } finally {
      setKernels(undefined);
      await tf.setBackend('webgpu');
    }
  });

  it('a model with a PerformerBlock trains with model.fit on the GPU kernels as it does on the wasm kernels', async () => {
    const [V, T, D, N] = [9, 12, 16, 8];
    const rng = new Rng(51);
    const xs = Float32Array.from({ length: N * T }, () => Math.floor(rng.next() * V));
    const ys = Int32Array.from(xs, (x) => (x + 1) % V);
    const train = async (backend: string, kernels: Kernels | WebGPUKernels) => {
      await tf.setBackend(backend);
      setKernels(kernels);
      const model = tf.sequential();
      model.add(
        tf.layers.embedding({ inputDim: V, outputDim: D, inputLength: T, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 0.5, seed: 1 }) }),
      );
      model.add(new PerformerBlock({ heads: 2, features: 8, feature: 'favor', causal: true, chunk: 4, ffn: 24, seed: 3 }));
      model.add(tf.layers.dense({ units: V, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }));
      model.compile({ optimizer: tf.train.sgd(0.5), loss: 'categoricalCrossentropy' });
      const x = tf.tensor2d(xs, [N, T]);
      const y = tf.oneHot(tf.tensor2d(ys, [N, T], 'int32'), V);
      const h = await model.fit(x, y, { epochs: 3, batchSize: N, shuffle: false, verbose: 0 });
      tf.dispose([x, y]);
      model.dispose();
      return h.history.loss as number[];
    };
    try {
      const cpu = await train('cpu', W);
      const gpu = await train('webgpu', G);
      expect(gpu[2], 'the loss falls').toBeLessThan(gpu[0]);
      assertClose('losses of three steps', cpu, gpu, 1e-4);
    } finally {
      setKernels(undefined);
      await tf.setBackend('webgpu');
    }
  });

  it('bad input: a clear error naming the argument, and the next call works', async () => {
    const q = tf.zeros([1, 2, 5, 8]) as tf.Tensor4D;
    const opts = { kernels: G, feature: 'relu' as const, causal: true };
    expect(() => performerAttentionWebGPU(q, q, q, { ...opts, state: tf.zeros([2, 3]) as tf.Tensor2D })).toThrow(
      /state must be a float32 tensor \[b·h, gpuStateWords\(m, dv\)\] = \[2, 145\]/,
    );
    expect(() => performerAttentionWebGPU(q, tf.zeros([1, 2, 4, 8]) as tf.Tensor4D, q, opts)).toThrow(/k must have q's shape/);
    expect(() => performerAttentionWebGPU(q, q, q, { ...opts, feature: 'favor' })).toThrow(/omega .* is required for feature 'favor'/);
    expect(() => performerAttentionWebGPU(q, q, q, { ...opts, kernels: { backend: 'webgpu', device: {} } as unknown as WebGPUKernels })).toThrow(
      /another GPUDevice/,
    );
    const r = performerAttentionWebGPU(q, q, q, opts);
    expect(Array.from(await r.out.data()).every((x) => x === 0)).toBe(true); // zero keys: zero denominators → 0
    tf.dispose([q, r.out, r.state!]);
    expect(G.liveBuffers()).toBe(0);
  });

  it('a GPU validation error of a synchronous call is reported by flush() and by the next call, naming the call', async () => {
    const dev = G.device;
    const mk = (n: number) => dev.createBuffer({ size: n * 4, usage: 0x80 | 0x04 | 0x08 });
    const d4 = { b: 1, h: 1, t: 4, d: 4, m: 4, dv: 4 };
    const [q, k, v] = [mk(16), mk(16), mk(16)];
    q.destroy(); // using a destroyed buffer in a submit is a validation error, seen only by the device
    const r = G.causalForwardSync({ q, k, v, dims: d4, feature: 'relu' });
    G.release(r.out);
    G.release(r.state);
    await expect(G.flush()).rejects.toThrow(/causalForwardSync: WebGPU validation error/);
    await expect(G.flush()).resolves.toBeUndefined(); // reported once
    const q2 = mk(16);
    const again = G.causalForwardSync({ q: q2, k, v, dims: d4, feature: 'relu' });
    G.release(again.out);
    G.release(again.state);
    await expect(G.flush()).resolves.toBeUndefined();
    // Not flushed: the next call throws it.
    q2.destroy();
    const bad = G.causalForwardSync({ q: q2, k, v, dims: d4, feature: 'relu' });
    G.release(bad.out);
    G.release(bad.state);
    await new Promise((r2) => setTimeout(r2, 50));
    await dev.queue.onSubmittedWorkDone();
    expect(() => G.causalForwardSync({ q: mk(16), k, v, dims: d4, feature: 'relu' })).toThrow(
      /causalForwardSync: an earlier call failed on the GPU: causalForwardSync: WebGPU validation error/,
    );
    k.destroy();
    v.destroy();
  });
});

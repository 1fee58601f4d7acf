/**
 * What is specific to the WebGPU backend (the kernel suite itself runs on it in
 * kernels.test.ts): shader loading on both paths, the pipeline cache, GPUBuffer variants,
 * buffer accounting, clear errors for bad input and for WebGPU validation errors, the storage
 * binding limit, checkpoint memory, and backend selection. Skipped without an adapter.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ArgError } from '../../src/index.ts';
import { createKernels } from '../../src/webgpu/index.ts';
import { refBidirectionalForward, refCausalBackward, refCausalForward } from '../../src/reference/index.ts';
import { findAdapter, WebGPUError } from '../../src/webgpu/device.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';
import { loadShaders, SHADER_FILES } from '../../src/webgpu/shaders/index.ts';
import { assertClose } from '../util/assert.ts';
import { FEATURES, makeProblem, upstream } from '../util/problems.ts';

const inBrowser = typeof window !== 'undefined';
const gpu = await findAdapter().catch(() => null);

describe('WGSL sources', () => {
  it('load through Vite (import.meta.glob ?raw) under Vitest', async () => {
    const v = await loadShaders('vite');
    expect(v.origin).toBe('vite');
    for (const f of SHADER_FILES) expect(v.files[f]).toMatch(/@compute|fn |struct /);
  });
  it.skipIf(inBrowser)('load from disk in plain Node (fs fallback) with the same text', async () => {
    const [v, f] = await Promise.all([loadShaders('vite'), loadShaders('fs')]);
    expect(f.origin).toBe('fs');
    for (const name of SHADER_FILES) expect(f.files[name]).toBe(v.files[name]);
  });
});

describe.skipIf(!gpu)(`WebGPU backend specifics (${gpu?.description ?? 'skipped: no WebGPU adapter'})`, () => {
  let K: WebGPUKernels;
  beforeAll(async () => {
    K = await initWebGPU({ adapter: gpu!.adapter, poison: true });
  });
  afterEach(() => {
    expect(K.liveBuffers(), 'every buffer is released after each call').toBe(0);
  });
  afterAll(() => K?.dispose());

  const dims = { b: 1, h: 2, t: 37, d: 8, m: 12, dv: 5 };
  const p = makeProblem('favor', dims, 3);

  it('caches pipelines by shader key', async () => {
    await K.causalForward({ ...p, chunk: 8 });
    const n = K.pipelines;
    await K.causalForward({ ...p, chunk: 16 });
    await K.causalForward({ ...p, chunk: 5 });
    expect(K.pipelines).toBe(n);
  });

  it('a call that fails before running leaves no NaN fill behind for the next call (poison mode)', async () => {
    // dv = d: the failed call's output comes back from the pool as an input of the next call.
    const p8 = makeProblem('favor', { ...dims, dv: dims.d }, 5);
    const f = await K.causalForward({ ...p8, chunk: 8 });
    // Make the next pipeline lookup fail, as a shader that does not compile would.
    const programs = (K as unknown as { core: { programs: { get: (...a: unknown[]) => Promise<unknown> } } }).core.programs;
    const get = programs.get;
    programs.get = () => Promise.reject(new Error('pipeline unavailable'));
    try {
      await expect(K.causalForward({ ...p8, chunk: 8 })).rejects.toThrow(/causalForward: pipeline unavailable/);
    } finally {
      programs.get = get;
    }
    const { dOut } = upstream(p8.dims, 6);
    const rg = refCausalBackward({ ...p8, dOut });
    const g = await K.causalBackward({ ...p8, dOut, stateOut: f.state, chunk: 8 });
    assertClose('dq after a failed call', rg.dq, g.dq, 1e-5);
    assertClose('dv after a failed call', rg.dv, g.dv, 1e-5);
  });

  it('GPUBuffer variants take and return buffers without copying the tensors', async () => {
    const dev = K.device;
    const put = (a: Float32Array) => {
      const b = dev.createBuffer({ size: a.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      dev.queue.writeBuffer(b, 0, a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
      return b;
    };
    const [q, k, v] = [put(p.q), put(p.k), put(p.v)];
    const { dOut, dState } = upstream(dims, 4);
    const g = put(dOut);
    try {
      const f = await K.causalForwardGPU({ ...p, q, k, v, chunk: 8 });
      expect(K.liveBuffers()).toBe(1);
      const ref = refCausalForward(p);
      const host = await K.causalForward({ ...p, chunk: 8 });
      assertClose('state', ref.state.S, f.state.S, 1e-5);
      K.release(f.out);
      const gr = await K.causalBackwardGPU({ ...p, q, k, v, dOut: g, stateOut: f.state, dState, chunk: 8 });
      expect(K.liveBuffers()).toBe(3);
      for (const b of [gr.dq, gr.dk, gr.dv]) K.release(b);
      const rg = refCausalBackward({ ...p, dOut, dState });
      assertClose('dState.S', rg.dState.S, gr.dState.S, 1e-5);
      assertClose('out (host path)', ref.out, host.out, 1e-5);
      expect(() => K.release(gr.dq)).toThrow(/not handed out/);
    } finally {
      for (const b of [q, k, v, g]) b.destroy();
    }
  });

  it('bad shapes get an ArgError naming the argument, and the backend stays usable', async () => {
    await expect(K.causalForward({ ...p, q: p.q.subarray(1) })).rejects.toThrow(/q must be a Float32Array of shape \[b, h, t, d\]/);
    await expect(K.causalForward({ ...p, q: p.q.subarray(1) })).rejects.toBeInstanceOf(ArgError);
    await expect(K.causalForward({ ...p, chunk: 0 })).rejects.toThrow(/chunk must be a positive integer/);
    const small = K.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    await expect(K.causalForwardGPU({ ...p, q: small, k: small, v: small })).rejects.toThrow(
      /causalForwardGPU: q must hold at least \d+ bytes, got a GPUBuffer of 16/,
    );
    small.destroy();
    const other = (await K.causalForward({ ...p, k: p.q })).state;
    await expect(K.causalBackward({ ...p, stateOut: other, dOut: upstream(dims, 5).dOut })).rejects.toThrow(/stateOut is not the state the forward produced/);
    expect((await K.causalForward(p)).out.every(Number.isFinite)).toBe(true);
  });

  it('refuses tensors beyond the storage binding limit before allocating', async () => {
    const huge = { b: 64, h: 64, t: 65_536, d: 64, m: 128, dv: 64 };
    const fake = K.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    await expect(K.causalForwardGPU({ ...p, omega: undefined, feature: 'relu', dims: { ...huge, m: 64 }, q: fake, k: fake, v: fake })).rejects.toThrow(
      /storage binding, more than this device's .* MiB limit \(maxStorageBufferBindingSize\)/,
    );
    fake.destroy();
  });

  it('a WebGPU validation error is caught and reported with the call name, not swallowed', async () => {
    await expect(
      K.ctx.scoped('probe', () => {
        K.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.MAP_READ });
      }),
    ).rejects.toThrow(/probe: WebGPU validation error/);
    await expect(K.ctx.scoped('probe', () => 1)).resolves.toBe(1);
    expect(new WebGPUError('x')).toBeInstanceOf(Error);
  });

  it('workgroups stay within the device limit', async () => {
    expect(K.workgroupSize).toBeLessThanOrEqual(K.device.limits.maxComputeInvocationsPerWorkgroup);
    await expect(initWebGPU({ workgroupSize: 100_000 })).rejects.toThrow(/workgroupSize must be an integer/);
  });

  it('the largest workgroup the device allows (up to 256) gives the same results, both schedules', async () => {
    const wg = Math.min(256, K.device.limits.maxComputeInvocationsPerWorkgroup, K.device.limits.maxComputeWorkgroupSizeX);
    const { dOut, dState } = upstream(dims, 7);
    const ref = refCausalForward(p);
    const rg = refCausalBackward({ ...p, dOut, dState });
    const rb = refBidirectionalForward(p);
    for (const chunkParallel of [true, false]) {
      const KW = await initWebGPU({ device: K.device, workgroupSize: wg, chunkParallel, chunkWindow: 2, poison: true });
      expect(KW.workgroupSize).toBe(wg);
      const f = await KW.causalForward({ ...p, chunk: 8 });
      assertClose(`out (wg ${wg}, chunkParallel ${chunkParallel})`, ref.out, f.out, 1e-5);
      const g = await KW.causalBackward({ ...p, stateOut: f.state, dOut, dState, chunk: 8 });
      assertClose(`dk (wg ${wg}, chunkParallel ${chunkParallel})`, rg.dk, g.dk, 1e-5);
      assertClose(`bidirectional out (wg ${wg}, chunkParallel ${chunkParallel})`, rb.out, (await KW.bidirectionalForward({ ...p, chunk: 8 })).out, 1e-5);
      KW.dispose();
    }
  });

  it('tiled products (the default from 64 invocations) agree with the float64 twins and the plain loops: partial, several and diagonal tiles, every feature map, both schedules', async () => {
    expect(K.tiled).toBe(K.workgroupSize >= 64);
    const small = await initWebGPU({ device: K.device, workgroupSize: 32 });
    expect(small.tiled).toBe(false);
    small.dispose();
    await expect(initWebGPU({ device: K.device, workgroupSize: 32, tiled: true })).rejects.toThrow(ArgError);
    await expect(initWebGPU({ device: K.device, workgroupSize: 32, tiled: true })).rejects.toThrow(/tiled needs a workgroupSize of 64 or more/);
    // Tiles are 32 × 32 (64 invocations): d, m, dv and the chunk are not multiples of it, m and
    // the chunk span two tiles, so tiles above the diagonal are skipped and the last is partial.
    const shapes = [
      { b: 1, h: 2, t: 150, d: 24, m: 40, dv: 36 },
      { b: 2, h: 1, t: 70, d: 20, m: 20, dv: 9 }, // m = d: relu / elu1 / sqr without ω (no tiled projection)
    ];
    const kernels = [true, false].flatMap((chunkParallel) =>
      [true, false].map((tiled) => ({ chunkParallel, tiled, K: initWebGPU({ device: K.device, chunkParallel, tiled, chunkWindow: 2, poison: true }) })),
    );
    for (const dims of shapes) {
      for (const feature of FEATURES) {
        const q = makeProblem(feature, dims, 41);
        const { dOut, dState } = upstream(dims, 42);
        const ref = refCausalForward(q);
        const rg = refCausalBackward({ ...q, dOut, dState });
        const rb = refBidirectionalForward(q);
        for (const x of kernels) {
          const KT = await x.K;
          expect(KT.tiled).toBe(x.tiled);
          const what = `${feature} d ${dims.d} m ${dims.m} (${x.tiled ? 'tiled' : 'plain'}, chunkParallel ${x.chunkParallel})`;
          const f = await KT.causalForward({ ...q, chunk: 48 });
          assertClose(`out ${what}`, ref.out, f.out, 1e-5);
          const g = await KT.causalBackward({ ...q, stateOut: f.state, dOut, dState, chunk: 48 });
          for (const k of ['dq', 'dk', 'dv'] as const) assertClose(`${k} ${what}`, rg[k], g[k], 1e-5);
          assertClose(`dState.S ${what}`, rg.dState.S, g.dState.S, 1e-5);
          assertClose(`bidirectional out ${what}`, rb.out, (await KT.bidirectionalForward({ ...q, chunk: 48 })).out, 1e-5);
        }
      }
    }
    for (const x of kernels) (await x.K).dispose();
  });

  it('memory: per slice, forward independent of T and backward O(√(T/C)) checkpoints; chunk-parallel, bounded by windowBytes plus a checkpoint per window', async () => {
    const windowBytes = 1 << 20;
    const KS = await initWebGPU({ device: K.device, chunkParallel: false });
    const KP = await initWebGPU({ device: K.device, chunkParallel: true, windowBytes });
    const scratch = async (t: number) => {
      const q = makeProblem('favor', { b: 1, h: 2, t, d: 8, m: 16, dv: 8 }, 95);
      const { dOut } = upstream(q.dims, 96);
      const f = await KS.causalForward({ ...q, chunk: 64 });
      const fwd = KS.lastCall().scratchBytes;
      const fp = await KP.causalForward({ ...q, chunk: 64 });
      assertClose('chunk-parallel out', f.out, fp.out, 1e-5);
      const par = KP.lastCall().scratchBytes;
      const g = await KS.causalBackward({ ...q, stateOut: f.state, dOut, chunk: 64 });
      const bwd = KS.lastCall().scratchBytes;
      const gp = await KP.causalBackward({ ...q, stateOut: fp.state, dOut, chunk: 64 });
      assertClose('chunk-parallel dk', g.dk, gp.dk, 1e-5);
      return { fwd, par, windows: KP.lastSteps / 8, bwd, parBwd: KP.lastCall().scratchBytes };
    };
    const short = await scratch(256);
    const long = await scratch(4096);
    const longer = await scratch(16_384);
    expect(long.fwd).toBe(short.fwd);
    expect(longer.fwd).toBe(short.fwd);
    // chunk-parallel: grows with T until a window fills windowBytes (plus the states and ω), then stays
    expect(short.windows).toBe(1);
    expect(long.windows).toBeGreaterThan(1);
    expect(longer.par).toBe(long.par);
    expect(longer.par).toBeLessThanOrEqual(windowBytes + 64 * 1024);
    const stateBytes = 4 * (2 * (16 * 8 + 16) + 1);
    // chunk-parallel backward: the same windows, plus one checkpoint state per window and slice
    expect(longer.parBwd - long.parBwd).toBeLessThanOrEqual(2 * stateBytes * (longer.windows - long.windows) + 256);
    expect(longer.parBwd).toBeLessThanOrEqual(windowBytes + 2 * stateBytes * longer.windows + 64 * 1024);
    // chunks 4 → 64: groups of ⌈√n⌉ chunks, ⌈n/group⌉ checkpoints, per slice (2 slices)
    expect(long.bwd - short.bwd).toBeLessThanOrEqual(2 * stateBytes * (8 + 8 - (2 + 2)) + 2 * 256);
    KP.dispose();
    KS.dispose();
  });

  it('dispose destroys every buffer', async () => {
    const K2 = await initWebGPU();
    await K2.causalForward(p);
    expect(K2.memoryBytes()).toBeGreaterThan(0);
    K2.dispose();
    expect(K2.memoryBytes()).toBe(0);
    await expect(K2.causalForward(p)).rejects.toThrow(/disposed/);
  });

  it('a lost device is a clear error on every later call, async or synchronous', async () => {
    const K2 = await initWebGPU();
    await K2.causalForward(p);
    K2.device.destroy();
    await K2.device.lost;
    await expect(K2.causalForward(p)).rejects.toThrow(/causalForward: the WebGPU device was lost/);
    const buf = { size: 1 << 20, usage: GPUBufferUsage.STORAGE } as unknown as GPUBuffer;
    expect(() => K2.causalForwardSync({ q: buf, k: buf, v: buf, dims, feature: 'favor', omega: p.omega })).toThrow(
      /causalForwardSync: the WebGPU device was lost/,
    );
    K2.dispose();
  });
});

describe('backend selection', () => {
  it("'wasm' gives the wasm kernels and says so", async () => {
    const c = await createKernels({ backend: 'wasm' });
    expect(c.backend).toBe('wasm');
    expect(c.reason).toMatch(/requested/);
    (c.kernels as { dispose(): void }).dispose();
  });
  it("'auto' picks wasm for a small problem or a software adapter, and reports why", async () => {
    const c = await createKernels({ backend: 'auto', dims: { b: 1, h: 1, t: 16, d: 4, m: 4, dv: 4 } });
    expect(c.backend).toBe('wasm');
    expect(c.reason).toMatch(/no WebGPU adapter|software renderer|too small/);
    (c.kernels as { dispose(): void }).dispose();
  });
  it.skipIf(!gpu)("'auto' picks WebGPU for a large problem when the adapter is allowed", async () => {
    const c = await createKernels({ backend: 'auto', allowSoftwareGpu: true, dims: { b: 8, h: 8, t: 65_536, d: 64, m: 128, dv: 64 } });
    expect(c.backend).toBe('webgpu');
    expect(c.reason).toMatch(/^webgpu: .*≥/);
    c.kernels.dispose();
  });
});

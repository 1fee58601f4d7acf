/**
 * The kernel suite, run once per backend against the float64 references
 * (crate/src/linear_attn/README.md is the contract).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ArgError, emptyState, init, relaxedSimdSupported, type Kernels, type StepKernels, type WasmBinary } from '../../src/index.ts';
import { findAdapter } from '../../src/webgpu/device.ts';
import { initWebGPU } from '../../src/webgpu/kernels.ts';
import type { Dims, FeatureMap } from '../../src/kernels/types.ts';
import {
  refBidirectionalBackward,
  refBidirectionalForward,
  refCausalBackward,
  refCausalBackwardFeatures,
  refCausalForward,
  refCausalForwardFeatures,
  refCausalUnroll,
} from '../../src/reference/index.ts';
import { assertClose } from '../util/assert.ts';
import { Rng } from '../util/rng.ts';
import { assertStateClose, concatT, FEATURES, makeProblem, prefixState, sliceT, upstream } from '../util/problems.ts';

/** Fast kernels in float32 against float64 twins: |err| ≤ TOL · max|ref| elementwise. */
const TOL = 1e-5;

/**
 * The kernels under test: the interface every backend implements (results or Promises: the suite
 * awaits every call), the memory counters both have, and the wasm-only `causalUnroll` / `binary`.
 */
type UnderTest = StepKernels & Pick<Kernels, 'liveBytes' | 'memoryBytes' | 'lastCall'> & Partial<Pick<Kernels, 'causalUnroll' | 'binary'>>;

interface Backend {
  name: string;
  kind: 'wasm' | 'webgpu';
  make: () => Promise<UnderTest>;
  binary?: WasmBinary;
  /** Why this backend is skipped here (no adapter, no relaxed SIMD). */
  skip?: string;
}

/**
 * Backends: the three wasm binaries, and WebGPU (npm `webgpu` on Mesa llvmpipe in Node, the
 * browser's adapter under `vitest.browser.config.ts`) when an adapter exists.
 * `SLIM_TEST_BACKENDS=webgpu` (comma-separated prefixes) runs a subset.
 */
const inBrowser = typeof window !== 'undefined';
const gpu = await findAdapter().catch(() => null);
const gpuName = inBrowser ? 'webgpu-browser' : 'webgpu-node';
const NO_GPU = 'no WebGPU adapter (Node: npm "webgpu" with Mesa EGL and EGL_PLATFORM=surfaceless; browser: --enable-unsafe-webgpu)';
const ALL_BACKENDS: Backend[] = [
  ...(inBrowser
    ? []
    : [
        {
          name: 'wasm-relaxed',
          kind: 'wasm' as const,
          make: () => init({ simd: 'relaxed' }),
          binary: 'relaxed' as const,
          skip: relaxedSimdSupported()
            ? undefined
            : 'this engine has no WebAssembly relaxed SIMD (Node 21+, or Node 20 with --experimental-wasm-relaxed-simd as vitest.config.ts sets)',
        },
        { name: 'wasm-simd', kind: 'wasm' as const, make: () => init({ simd: true }), binary: 'simd' as const },
        { name: 'wasm-scalar', kind: 'wasm' as const, make: () => init({ simd: false }), binary: 'scalar' as const },
      ]),
  {
    name: gpu ? `${gpuName} (${gpu.description})` : gpuName,
    kind: 'webgpu',
    make: async () => await initWebGPU({ adapter: gpu!.adapter, poison: true, chunkParallel: false }),
    skip: gpu ? undefined : NO_GPU,
  },
  {
    // The chunk-parallel causal forward (the default on hardware adapters), 3 chunks per window
    // so that the suite's shapes cross windows.
    name: `${gpuName}-chunk-parallel`,
    kind: 'webgpu',
    make: async () => await initWebGPU({ poison: true, chunkParallel: true, chunkWindow: 3 }), // its own adapter
    skip: gpu ? undefined : NO_GPU,
  },
  {
    // The plain one-element-per-invocation products (the fallback; the two above run tiled).
    name: `${gpuName}-chunk-parallel-plain`,
    kind: 'webgpu',
    make: async () => await initWebGPU({ poison: true, chunkParallel: true, chunkWindow: 3, tiled: false }),
    skip: gpu ? undefined : NO_GPU,
  },
];
const only = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SLIM_TEST_BACKENDS?.split(',');
const BACKENDS = only ? ALL_BACKENDS.filter((b) => only.some((o) => b.name.startsWith(o))) : ALL_BACKENDS;

interface Shape {
  name: string;
  dims: Omit<Dims, 'm'> & { m: number };
  chunk: number;
}

/** T not a multiple of C, C = 1, C ≥ T, M ≠ D, B·H > 1, D = 60. */
const SHAPES: Shape[] = [
  { name: 'T=1', dims: { b: 1, h: 1, t: 1, d: 4, m: 6, dv: 3 }, chunk: 64 },
  { name: 'T=63 C=16 BH=6 M≠D', dims: { b: 2, h: 3, t: 63, d: 8, m: 12, dv: 5 }, chunk: 16 },
  { name: 'C=1', dims: { b: 1, h: 2, t: 20, d: 6, m: 10, dv: 7 }, chunk: 1 },
  { name: 'C≥T', dims: { b: 1, h: 1, t: 10, d: 8, m: 8, dv: 8 }, chunk: 64 },
  { name: 'T=100 D=60', dims: { b: 1, h: 2, t: 100, d: 16, m: 24, dv: 60 }, chunk: 32 },
];

/** sqr runs without a projection (m = d) so that the identity path is covered. */
function dimsFor(feature: FeatureMap, s: Shape): Dims {
  return feature === 'sqr' ? { ...s.dims, m: s.dims.d } : s.dims;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

describe.each(BACKENDS)('$name', (backend) => {
  if (backend.skip) {
    it.skip(`skipped: ${backend.skip}`, () => {});
    return;
  }
  const wasm = backend.kind === 'wasm';
  let K: UnderTest;
  beforeAll(async () => {
    K = await backend.make();
    if (wasm) expect(K.binary).toBe(backend.binary);
  });
  afterEach(() => {
    expect(K.liveBytes(), 'every wasm allocation / GPU buffer is freed after each call').toBe(0);
  });
  afterAll(() => K?.dispose());

  describe('causal forward and backward match the float64 reference', () => {
    for (const feature of FEATURES) {
      for (const s of SHAPES) {
        for (const withState of [false, true]) {
          it(`${feature}, ${s.name}, ${withState ? 'with' : 'no'} state`, async () => {
            const dims = dimsFor(feature, s);
            const p = makeProblem(feature, dims, 11);
            const state = withState ? prefixState(p, 5, 12) : undefined;
            const { dOut, dState } = upstream(dims, 13);
            const ref = refCausalForward({ ...p, state });
            const got = await K.causalForward({ ...p, state, chunk: s.chunk });
            assertClose('out', ref.out, got.out, TOL);
            assertStateClose('state', ref.state, got.state, dims, TOL);
            const rg = refCausalBackward({ ...p, state, dOut, dState });
            const g = await K.causalBackward({ ...p, stateIn: state, stateOut: got.state, dOut, dState, chunk: s.chunk });
            // At T = 1 without a state out = v_0 whatever q is, so dq is exactly 0 and only
            // rounding remains: input gradients are measured against the problem's largest one.
            const scale = TOL * Math.max(maxAbs(rg.dq), maxAbs(rg.dk), maxAbs(rg.dv));
            assertClose('dq', rg.dq, g.dq, TOL, scale);
            assertClose('dk', rg.dk, g.dk, TOL, scale);
            assertClose('dv', rg.dv, g.dv, TOL, scale);
            assertClose('dState.S', rg.dState.S, g.dState.S, TOL);
            assertClose('dState.z', rg.dState.z, g.dState.z, TOL);
            const kept = await K.causalBackward({ ...p, stateIn: state, stateOut: got.state, out: got.out, dOut, dState, chunk: s.chunk });
            for (const key of ['dq', 'dk', 'dv'] as const) assertClose(`${key} with the forward's out kept`, rg[key], kept[key], TOL, scale);
          });
        }
      }
    }
  });

  it('precomputed features (forward, backward, carried state) match the reference', async () => {
    const dims = { b: 2, h: 2, t: 37, d: 9, m: 9, dv: 6 };
    const rng = new Rng(21);
    const n = dims.b * dims.h * dims.t * dims.m;
    const phiQ = Float32Array.from(rng.uniforms(n, 0, 1));
    const phiK = Float32Array.from(rng.uniforms(n, 0, 1));
    const v = Float32Array.from(rng.normals(dims.b * dims.h * dims.t * dims.dv));
    const state = refCausalForwardFeatures({ phiQ: phiQ.slice(0, 0), phiK: phiK.slice(0, 0), v: v.slice(0, 0), dims: { ...dims, b: 0 } }).state;
    expect(state.S.length).toBe(0);
    const { dOut, dState } = upstream(dims, 22);
    const ref = refCausalForwardFeatures({ phiQ, phiK, v, dims });
    const got = await K.causalForwardFeatures({ phiQ, phiK, v, dims, chunk: 8 });
    assertClose('out', ref.out, got.out, TOL);
    assertStateClose('state', ref.state, got.state, dims, TOL);
    const rg = refCausalBackwardFeatures({ phiQ, phiK, v, dims, dOut, dState });
    const g = await K.causalBackwardFeatures({ phiQ, phiK, v, dims, stateOut: got.state, dOut, dState, chunk: 8 });
    assertClose('dPhiQ', rg.dPhiQ, g.dPhiQ, TOL);
    assertClose('dPhiK', rg.dPhiK, g.dPhiK, TOL);
    assertClose('dv', rg.dv, g.dv, TOL);
    assertClose('dState.S', rg.dState.S, g.dState.S, TOL);
  });

  describe('bidirectional matches the reference', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[1]);
        const p = makeProblem(feature, dims, 31);
        const { dOut } = upstream(dims, 32);
        assertClose('out', refBidirectionalForward(p).out, (await K.bidirectionalForward({ ...p, chunk: 16 })).out, TOL);
        const rg = refBidirectionalBackward({ ...p, dOut });
        const g = await K.bidirectionalBackward({ ...p, dOut, chunk: 16 });
        assertClose('dq', rg.dq, g.dq, TOL);
        assertClose('dk', rg.dk, g.dk, TOL);
        assertClose('dv', rg.dv, g.dv, TOL);
      });
    }
  });

  describe('recurrent steps equal the causal forward', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[2]);
        const p = makeProblem(feature, dims, 41);
        const { b, h, t, d, dv } = dims;
        const whole = await K.causalForward({ ...p, chunk: 7 });
        let state = (
          await K.causalForward({
            ...p,
            dims: { ...dims, t: 1 },
            q: sliceT(p.q, b * h, t, d, 0, 1),
            k: sliceT(p.k, b * h, t, d, 0, 1),
            v: sliceT(p.v, b * h, t, dv, 0, 1),
          })
        ).state;
        const outs = [sliceT(whole.out, b * h, t, dv, 0, 1)];
        for (let i = 1; i < t; i++) {
          const r = await K.recurrentStep({
            ...p,
            q: sliceT(p.q, b * h, t, d, i, i + 1),
            k: sliceT(p.k, b * h, t, d, i, i + 1),
            v: sliceT(p.v, b * h, t, dv, i, i + 1),
            state,
          });
          state = r.state;
          outs.push(r.out);
        }
        const stepped = outs.reduce((acc, o, i) => (i === 0 ? o : concatT(acc, i, o, 1, b * h, dv)));
        assertClose('out', whole.out, stepped, TOL);
        assertStateClose('state', whole.state, state, dims, TOL);
      });
    }
  });

  // causalUnroll is exact float64 state arithmetic (1e-9): a wasm/host kernel, not a WebGPU one.
  describe.skipIf(!wasm)('causalUnroll recovers the input state from the output state', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[1]);
        const p = makeProblem(feature, dims, 55);
        const state = prefixState(p, 7, 56);
        const f = await K.causalForward({ ...p, state, chunk: 16 });
        const back = K.causalUnroll!({ ...p, stateOut: f.state, offsetIn: state.offset, chunk: 16 });
        assertStateClose('state', state, back, dims, 1e-9);
        // The float64 twin undoes a float64 forward exactly, and the kernel's float32 forward to TOL
        // (the kernel itself recomputes the increment with the forward's own rounding: 1e-9 above).
        const exact = refCausalForward({ ...p, state });
        assertStateClose('twin of the float64 forward', state, refCausalUnroll({ ...p, stateOut: exact.state, offsetIn: state.offset }), dims, 1e-9);
        assertStateClose('twin of the kernel forward', state, refCausalUnroll({ ...p, stateOut: f.state, offsetIn: state.offset }), dims, TOL);
        // An input frame above the keys' logits: the output stays in it (favor), so the twin must
        // move the slice's own contribution into that frame.
        const high = { ...state, offset: state.offset.map((o) => (feature === 'favor' ? o + 30 : o)) };
        const fromHigh = refCausalForward({ ...p, state: high });
        assertStateClose('twin, high input frame', high, refCausalUnroll({ ...p, stateOut: fromHigh.state, offsetIn: high.offset }), dims, 1e-9);
        const fromEmpty = await K.causalForward({ ...p, chunk: 16 });
        const empty = K.causalUnroll!({ ...p, stateOut: fromEmpty.state, offsetIn: emptyState(dims, feature).offset, chunk: 16 });
        expect(empty.S.every((x) => x === 0)).toBe(true);
      });
    }

    it('refuses when the offset jumped beyond recovery, and when the state does not match', async () => {
      const dims = SHAPES[1].dims;
      const p = makeProblem('favor', dims, 57);
      const state = prefixState(p, 7, 58);
      const low = { ...state, offset: state.offset.map((o) => o - 100) };
      const f = await K.causalForward({ ...p, state: low, chunk: 16 });
      expect(() => K.causalUnroll!({ ...p, stateOut: f.state, offsetIn: low.offset, chunk: 16 })).toThrow(/raised the FAVOR\+ offset by more than 10/);
      const g = await K.causalForward({ ...p, state, chunk: 16 });
      expect(() => K.causalUnroll!({ ...p, k: p.q, stateOut: g.state, offsetIn: state.offset, chunk: 16 })).toThrow(/stateOut is not the state/);
    });
  });

  describe('chunk-size invariance', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[1]);
        const p = makeProblem(feature, dims, 51);
        const { dOut, dState } = upstream(dims, 52);
        const base = await K.causalForward({ ...p, chunk: 64 });
        const gb = await K.causalBackward({ ...p, stateOut: base.state, dOut, dState, chunk: 64 });
        for (const chunk of [1, 5, 16, 63]) {
          const f = await K.causalForward({ ...p, chunk });
          assertClose(`out C=${chunk}`, base.out, f.out, TOL);
          assertStateClose(`state C=${chunk}`, base.state, f.state, dims, TOL);
          const g = await K.causalBackward({ ...p, stateOut: f.state, dOut, dState, chunk });
          assertClose(`dq C=${chunk}`, gb.dq, g.dq, TOL);
          assertClose(`dk C=${chunk}`, gb.dk, g.dk, TOL);
          assertClose(`dv C=${chunk}`, gb.dv, g.dv, TOL);
        }
      });
    }
  });

  describe('split-and-resume equals one call (state carry and its gradient)', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[1]);
        const { b, h, t, d, dv } = dims;
        const bh = b * h;
        const p = makeProblem(feature, dims, 61);
        const { dOut, dState } = upstream(dims, 62);
        const whole = await K.causalForward({ ...p, chunk: 16 });
        const gw = await K.causalBackward({ ...p, stateOut: whole.state, dOut, dState, chunk: 16 });
        const t1 = 23;
        const part = (t0: number, t2: number) => ({
          ...p,
          dims: { ...dims, t: t2 - t0 },
          q: sliceT(p.q, bh, t, d, t0, t2),
          k: sliceT(p.k, bh, t, d, t0, t2),
          v: sliceT(p.v, bh, t, dv, t0, t2),
          chunk: 16,
        });
        const f1 = await K.causalForward(part(0, t1));
        const f2 = await K.causalForward({ ...part(t1, t), state: f1.state });
        assertClose('out', whole.out, concatT(f1.out, t1, f2.out, t - t1, bh, dv), TOL);
        assertStateClose('state', whole.state, f2.state, dims, TOL);
        const g2 = await K.causalBackward({ ...part(t1, t), stateIn: f1.state, stateOut: f2.state, dOut: sliceT(dOut, bh, t, dv, t1, t), dState });
        const g1 = await K.causalBackward({ ...part(0, t1), stateOut: f1.state, dOut: sliceT(dOut, bh, t, dv, 0, t1), dState: g2.dState });
        assertClose('dq', gw.dq, concatT(g1.dq, t1, g2.dq, t - t1, bh, d), TOL);
        assertClose('dk', gw.dk, concatT(g1.dk, t1, g2.dk, t - t1, bh, d), TOL);
        assertClose('dv', gw.dv, concatT(g1.dv, t1, g2.dv, t - t1, bh, dv), TOL);
      });
    }
  });

  describe('causality: changing token p leaves every output before p bit-identical', () => {
    for (const feature of FEATURES) {
      it(feature, async () => {
        const dims = dimsFor(feature, SHAPES[1]);
        const { b, h, t, d, dv } = dims;
        const p = makeProblem(feature, dims, 71);
        const before = (await K.causalForward({ ...p, chunk: 16 })).out;
        for (const pos of [0, 9, 16, 40]) {
          const q = p.q.slice();
          const k = p.k.slice();
          const v = p.v.slice();
          for (let i = 0; i < b * h; i++) {
            for (let c = 0; c < d; c++) {
              q[(i * t + pos) * d + c] *= -3;
              k[(i * t + pos) * d + c] = 5 + k[(i * t + pos) * d + c] * 4;
            }
            for (let c = 0; c < dv; c++) v[(i * t + pos) * dv + c] += 100;
          }
          const after = (await K.causalForward({ ...p, q, k, v, chunk: 16 })).out;
          let changed = 0;
          for (let i = 0; i < b * h; i++) {
            for (let j = 0; j < t * dv; j++) {
              const a = before[i * t * dv + j];
              const c = after[i * t * dv + j];
              if (j < pos * dv) expect(Object.is(a, c), `slice ${i} token ${Math.floor(j / dv)} < ${pos}`).toBe(true);
              else if (a !== c) changed++;
            }
          }
          expect(changed, 'the change is visible from token p on').toBeGreaterThan(0);
        }
      });
    }
  });

  it('writes every output element (outputs are NaN-poisoned before each call)', async () => {
    const p = makeProblem('favor', SHAPES[1].dims, 81);
    const { dOut } = upstream(p.dims, 82);
    const f = await K.causalForward({ ...p, chunk: 16 });
    const g = await K.causalBackward({ ...p, stateOut: f.state, dOut, chunk: 16 });
    for (const [name, a] of Object.entries({ out: f.out, S: f.state.S, z: f.state.z, dq: g.dq, dk: g.dk, dv: g.dv, dS: g.dState.S })) {
      expect(a.every(Number.isFinite), name).toBe(true);
    }
  });

  it('refuses finite inputs whose result overflows float32 (never a silent NaN), and stays usable', async () => {
    const dims = SHAPES[1].dims;
    const good = makeProblem('favor', dims, 83);
    const { dOut } = upstream(good.dims, 84);
    const before = await K.causalForward({ ...good, chunk: 16 });
    const scaled = (x: Float32Array, by: number) => x.map((e) => e * by);
    const one = (x: Float32Array, at: number, value: number) => Object.assign(x.slice(), { [at]: value });
    const relu = makeProblem('relu', dims, 85);
    const cases: Array<[string, () => unknown]> = [
      ['causalForward favor q·1e20', () => K.causalForward({ ...good, q: scaled(good.q, 1e20), chunk: 16 })],
      ['causalForward favor k[3] = 3e38', () => K.causalForward({ ...good, k: one(good.k, 3, 3e38), chunk: 16 })],
      ['causalForward relu v = 3e38', () => K.causalForward({ ...relu, v: relu.v.map(() => 3e38), chunk: 16 })],
      ['causalBackward favor q·1e20', () => K.causalBackward({ ...good, q: scaled(good.q, 1e20), stateOut: before.state, dOut, chunk: 16 })],
      ['bidirectionalForward favor q·1e20', () => K.bidirectionalForward({ ...good, q: scaled(good.q, 1e20), chunk: 16 })],
      ['bidirectionalForward favor k[0] = 3e38', () => K.bidirectionalForward({ ...good, k: one(good.k, 0, 3e38), chunk: 16 })],
      ['bidirectionalBackward favor q·1e20', () => K.bidirectionalBackward({ ...good, q: scaled(good.q, 1e20), dOut, chunk: 16 })],
    ];
    for (const [name, call] of cases) {
      await expect((async () => call())(), name).rejects.toThrow(/the result is not finite/);
      await expect((async () => call())(), name).rejects.toBeInstanceOf(ArgError);
    }
    const after = await K.causalForward({ ...good, chunk: 16 });
    expect(after.out, 'the next good call is bit-identical').toEqual(before.out);
  });

  // WebGPU: the backward keeps O(√(T/C)) state checkpoints instead (webgpu_backend.test.ts bounds them).
  it.skipIf(!wasm)('scratch memory does not grow with T (only one float per chunk for FAVOR+ offsets)', async () => {
    const scratch = async (t: number) => {
      const p = makeProblem('favor', { b: 1, h: 2, t, d: 8, m: 16, dv: 8 }, 95);
      const { dOut } = upstream(p.dims, 96);
      const f = await K.causalForward({ ...p, chunk: 64 });
      const fwd = K.lastCall();
      await K.causalBackward({ ...p, stateOut: f.state, out: f.out, dOut, chunk: 64 });
      const bwd = K.lastCall();
      expect(bwd.ioBytes).toBeGreaterThan(t * 2 * 4 * (8 + 8 + 8));
      return { fwd: fwd.scratchBytes, bwd: bwd.scratchBytes };
    };
    const short = await scratch(1024);
    const long = await scratch(65_536);
    expect(short.bwd).toBeGreaterThan(0);
    expect(long.fwd).toBe(short.fwd);
    expect(long.bwd - short.bwd).toBeLessThanOrEqual((4 * (65_536 - 1024)) / 64);
  });

  it('memory returns to its baseline and stops growing', async () => {
    const p = makeProblem('favor', SHAPES[4].dims, 91);
    const { dOut } = upstream(p.dims, 92);
    const run = async () => {
      const f = await K.causalForward({ ...p, chunk: 32 });
      await K.causalBackward({ ...p, stateOut: f.state, dOut, chunk: 32 });
    };
    await run();
    const high = K.memoryBytes();
    for (let i = 0; i < 10; i++) await run();
    expect(K.liveBytes()).toBe(0);
    expect(K.memoryBytes()).toBe(high);
  });
});

/**
 * src/parallel: the worker pool splits b·h slices across kernel instances; every result must
 * equal the single instance's bit for bit, for every kernel, with b·h not a multiple of the
 * thread count, slice ranges that cross head boundaries, states and state gradients in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgError, init, type Kernels } from '../src/index.ts';
import { createPool, detectThreads, type KernelPool } from '../src/parallel/index.ts';
import { join, ranges, sliceArgs } from '../src/parallel/split.ts';
import type { Dims, FeatureMap } from '../src/kernels/types.ts';
import { FEATURES, makeProblem, prefixState, upstream } from './util/problems.ts';

function sameBits(name: string, a: unknown, b: unknown): void {
  if (a instanceof Float32Array || a instanceof Float64Array) {
    expect(b, name).toBeInstanceOf(a.constructor);
    const x = b as typeof a;
    expect(x.length, `${name}.length`).toBe(a.length);
    const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const ub = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    let first = -1;
    for (let i = 0; i < ua.length && first < 0; i++) if (ua[i] !== ub[i]) first = i;
    expect(first, `${name}: first differing byte`).toBe(-1);
    return;
  }
  if (a !== null && typeof a === 'object') {
    expect(Object.keys(b as object).sort(), name).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) sameBits(`${name}.${k}`, (a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]);
    return;
  }
  expect(b, name).toBe(a);
}

describe('split helpers', () => {
  it('ranges cover b·h contiguously and evenly', () => {
    expect(ranges(8, 2)).toEqual([
      [0, 4],
      [4, 8],
    ]);
    expect(ranges(5, 3)).toEqual([
      [0, 1],
      [1, 3],
      [3, 5],
    ]);
    expect(ranges(1, 4)).toEqual([[0, 1]]);
  });

  it('slices pick omega heads by (r0 + j) mod h and join restores the layout', () => {
    const dims: Dims = { b: 2, h: 3, t: 2, d: 1, m: 1, dv: 1 };
    const q = Float32Array.from({ length: 12 }, (_, i) => i);
    const omega = Float32Array.from([10, 11, 12]);
    const s = sliceArgs({ q, dims, omega }, 2, 5)!;
    expect(Array.from(s.q as Float32Array)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(Array.from(s.omega as Float32Array)).toEqual([12, 10, 11]);
    expect(s.dims).toEqual({ ...dims, b: 1, h: 3 });
    expect(sliceArgs({ q: new Float32Array(5), dims }, 0, 3)).toBeNull();
    const parts = ranges(6, 4).map(([a, b]) => sliceArgs({ q, dims }, a, b)!.q);
    expect(Array.from(join(parts) as Float32Array)).toEqual(Array.from(q));
  });
});

describe.each([2, 3])('KernelPool with %i worker threads', (threads) => {
  let K: Kernels;
  let pool: KernelPool;
  beforeAll(async () => {
    K = await init();
    pool = await createPool({ threads });
  });
  afterAll(async () => {
    await pool?.dispose();
    K?.dispose();
  });

  it('reports what it picked', () => {
    expect(pool.info.threads).toBe(threads);
    expect(pool.info.mode).toBe('worker_threads');
    expect(pool.info.reason).toBe(`requested: ${threads}`);
    expect(pool.simd).toBe(K.simd);
  });

  const cases: Array<[FeatureMap, Dims]> = [
    ['favor', { b: 1, h: 5, t: 37, d: 8, m: 12, dv: 6 }],
    ['favor', { b: 2, h: 3, t: 70, d: 8, m: 16, dv: 4 }],
    ['relu', { b: 3, h: 1, t: 19, d: 6, m: 6, dv: 5 }],
    ['elu1', { b: 1, h: 4, t: 33, d: 4, m: 8, dv: 3 }],
    ['sqr', { b: 2, h: 2, t: 9, d: 5, m: 5, dv: 2 }],
  ];

  it.each(cases)('causal forward + backward equal one instance bit for bit (%s, %o)', async (feature, dims) => {
    const p = makeProblem(feature, dims, 11);
    const stateIn = prefixState(p, 13, 12);
    const { dOut, dState } = upstream(dims, 13);
    const args = { ...p, chunk: 16, state: stateIn };
    const f1 = K.causalForward(args);
    const f2 = await pool.causalForward(args);
    sameBits('forward', f1, f2);
    const bargs = { ...p, chunk: 16, stateIn, stateOut: f1.state, dOut, dState };
    sameBits('backward', K.causalBackward(bargs), await pool.causalBackward(bargs));
    sameBits('backward with out', K.causalBackward({ ...bargs, out: f1.out }), await pool.causalBackward({ ...bargs, out: f1.out }));
  });

  it('bidirectional and feature kernels equal one instance bit for bit', async () => {
    const dims: Dims = { b: 1, h: 5, t: 41, d: 8, m: 16, dv: 4 };
    const p = makeProblem('favor', dims, 21);
    const { dOut } = upstream(dims, 22);
    sameBits('bidirectionalForward', K.bidirectionalForward(p), await pool.bidirectionalForward(p));
    sameBits('bidirectionalBackward', K.bidirectionalBackward({ ...p, dOut }), await pool.bidirectionalBackward({ ...p, dOut }));
    const fd: Dims = { ...dims, d: 16 };
    const phi = makeProblem('relu', { ...fd, m: 16 }, 23);
    const fa = { phiQ: phi.q.map(Math.abs), phiK: phi.k.map(Math.abs), v: phi.v, dims: fd };
    const f1 = K.causalForwardFeatures(fa);
    sameBits('causalForwardFeatures', f1, await pool.causalForwardFeatures(fa));
    const ba = { ...fa, stateOut: f1.state, dOut: upstream(fd, 24).dOut };
    sameBits('causalBackwardFeatures', K.causalBackwardFeatures(ba), await pool.causalBackwardFeatures(ba));
  });

  it('a single slice runs whole on one worker', async () => {
    const p = makeProblem('favor', { b: 1, h: 1, t: 20, d: 4, m: 8, dv: 4 }, 31);
    sameBits('bh=1', K.causalForward(p), await pool.causalForward(p));
  });

  it('errors are the kernel errors, and the pool stays usable', async () => {
    const p = makeProblem('favor', { b: 2, h: 2, t: 10, d: 4, m: 8, dv: 4 }, 41);
    const err = await pool.causalForward({ ...p, q: new Float32Array(3) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArgError);
    let want = '';
    try {
      K.causalForward({ ...p, q: new Float32Array(3) });
    } catch (e) {
      want = (e as Error).message;
    }
    expect((err as Error).message).toBe(want);
    const bad = await pool.causalForward({ ...p, feature: 'nope' as FeatureMap }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ArgError);
    sameBits('after errors', K.causalForward(p), await pool.causalForward(p));
  });

  it('does not detach the caller’s arrays and runs concurrent calls', async () => {
    const p = makeProblem('relu', { b: 2, h: 2, t: 16, d: 4, m: 4, dv: 4 }, 51);
    const before = p.q.length;
    const all = await Promise.all(FEATURES.filter((f) => f !== 'favor').map(() => pool.causalForward(p)));
    expect(p.q.length).toBe(before);
    for (const r of all) sameBits('concurrent', K.causalForward(p), r);
  });
});

describe('KernelPool options', () => {
  it('threads: 1 runs in the calling thread', async () => {
    const pool = await createPool({ threads: 1 });
    expect(pool.info.mode).toBe('in-thread');
    const K = await init();
    const p = makeProblem('favor', { b: 1, h: 2, t: 12, d: 4, m: 8, dv: 4 }, 61);
    sameBits('in-thread', K.causalForward(p), await pool.causalForward(p));
    await pool.dispose();
    await expect(pool.causalForward(p)).rejects.toThrow(/disposed/);
  });

  it("'auto' uses the reported cores (capped) and says so", async () => {
    const support = await detectThreads();
    expect(support.mode).toBe('worker_threads');
    const pool = await createPool({ maxThreads: 2 });
    expect(pool.info.threads).toBe(Math.min(2, support.hardwareThreads ?? 1));
    expect(pool.info.reason).toMatch(/^auto: /);
    await pool.dispose();
  });

  it('rejects bad thread counts', async () => {
    await expect(createPool({ threads: 0 })).rejects.toThrow(ArgError);
    await expect(createPool({ threads: 1.5 })).rejects.toThrow(/positive integer/);
  });

  it('scalar binary in every worker', async () => {
    const pool = await createPool({ threads: 2, simd: false });
    expect(pool.simd).toBe(false);
    const K = await init({ simd: false });
    const p = makeProblem('favor', { b: 1, h: 3, t: 25, d: 4, m: 8, dv: 4 }, 71);
    sameBits('scalar', K.causalForward(p), await pool.causalForward(p));
    await pool.dispose();
  });
});

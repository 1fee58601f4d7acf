/**
 * Bad input gets an error naming the argument and what was expected, and the instance stays
 * usable: a good call succeeds right after each bad one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgError, init, type Kernels } from '../src/index.ts';
import { Scope, type KernelExports } from '../src/wasm/memory.ts';
import { makeProblem, upstream } from './util/problems.ts';

const dims = { b: 1, h: 2, t: 9, d: 4, m: 6, dv: 3 };
const p = makeProblem('favor', dims, 1);
const good = () => ({ ...p });

describe('argument validation', () => {
  let K: Kernels;
  beforeAll(async () => {
    K = await init();
  });
  afterAll(() => K.dispose());

  const withNaN = (a: Float32Array, i: number, x: number) => {
    const c = a.slice();
    c[i] = x;
    return c;
  };
  const state = () => K.causalForward(good()).state;

  const forwardCases: Array<[string, () => object, RegExp]> = [
    ['q wrong length', () => ({ ...good(), q: p.q.subarray(1) }), /q must be a Float32Array of shape \[b, h, t, d\] = \[1, 2, 9, 4\].*got length 71/],
    ['q wrong type', () => ({ ...good(), q: Float64Array.from(p.q) }), /q must be a Float32Array.*got Float64Array/],
    ['q plain array', () => ({ ...good(), q: Array.from(p.q) }), /q must be a Float32Array.*got Array\(72\)/],
    ['k NaN', () => ({ ...good(), k: withNaN(p.k, 5, NaN) }), /k\[5\] is NaN; k must hold finite values/],
    ['v Infinity', () => ({ ...good(), v: withNaN(p.v, 2, Infinity) }), /v\[2\] is Infinity/],
    ['dims.t = 0', () => ({ ...good(), dims: { ...dims, t: 0 } }), /dims\.t must be a positive integer, got number 0/],
    ['dims.d non-integer', () => ({ ...good(), dims: { ...dims, d: 2.5 } }), /dims\.d must be a positive integer, got number 2\.5/],
    ['dims.m string', () => ({ ...good(), dims: { ...dims, m: '6' } }), /dims\.m must be a positive integer, got string 6/],
    ['dims missing', () => ({ ...good(), dims: undefined }), /dims must be an object/],
    ['unknown feature', () => ({ ...good(), feature: 'softmax' }), /feature must be one of 'favor', 'relu', 'elu1', 'sqr', got string softmax/],
    ['favor without omega', () => ({ ...good(), omega: undefined }), /omega .* is required for feature 'favor'/],
    ['omega wrong shape', () => ({ ...good(), omega: p.omega!.subarray(3) }), /omega must be a Float32Array of shape \[h, m, d\] = \[2, 6, 4\]/],
    ['relu without omega and m ≠ d', () => ({ ...good(), feature: 'relu', omega: undefined }), /dims\.m \(6\) must equal dims\.d \(4\)/],
    ['chunk 0', () => ({ ...good(), chunk: 0 }), /chunk must be a positive integer/],
    ['eps negative', () => ({ ...good(), eps: -1 }), /eps must be a finite number ≥ 0/],
    [
      'state.S wrong shape',
      () => ({ ...good(), state: { ...state(), S: new Float64Array(5) } }),
      /state\.S must be a Float64Array of shape \[b, h, m, dv\] = \[1, 2, 6, 3\]/,
    ],
    ['state.z NaN', () => ({ ...good(), state: { ...state(), z: new Float64Array(12).fill(NaN) } }), /state\.z\[0\] is NaN/],
    ['state not an object', () => ({ ...good(), state: 3 }), /state must be an object \{S, z, offset\}/],
    [
      'too large for wasm memory',
      () => ({ ...good(), dims: { b: 64, h: 64, t: 65536, d: 64, m: 128, dv: 64 } }),
      /needs about .* GiB of wasm memory, more than the 4 GiB/,
    ],
  ];

  for (const [name, make, message] of forwardCases) {
    it(`causalForward: ${name}`, () => {
      expect(() => K.causalForward(make() as never)).toThrow(message);
      expect(() => K.causalForward(make() as never)).toThrow(ArgError);
      expect(K.liveBytes()).toBe(0);
      const ok = K.causalForward(good());
      expect(ok.out.every(Number.isFinite)).toBe(true);
    });
  }

  it('causalBackward: stateOut from other inputs is detected', () => {
    const { dOut } = upstream(dims, 2);
    const other = K.causalForward({ ...good(), k: p.q }).state;
    expect(() => K.causalBackward({ ...good(), stateOut: other, dOut })).toThrow(/stateOut is not the state the forward produced/);
    const f = K.causalForward(good());
    expect(K.causalBackward({ ...good(), stateOut: f.state, dOut }).dq.every(Number.isFinite)).toBe(true);
  });

  it('causalBackward: missing stateOut and wrong dOut are named', () => {
    const { dOut } = upstream(dims, 3);
    expect(() => K.causalBackward({ ...good(), dOut } as never)).toThrow(/stateOut must be an object/);
    const f = K.causalForward(good());
    expect(() => K.causalBackward({ ...good(), stateOut: f.state, dOut: dOut.subarray(3) })).toThrow(/dOut must be a Float32Array/);
    expect(() => K.causalBackward({ ...good(), stateOut: f.state, dOut, dState: { S: new Float64Array(1), z: new Float64Array(12) } })).toThrow(
      /dState\.S must be a Float64Array/,
    );
    expect(K.causalBackward({ ...good(), stateOut: f.state, dOut }).dv.every(Number.isFinite)).toBe(true);
  });

  it('a non-favor state must have offset 0', () => {
    const relu = makeProblem('relu', { ...dims, m: 4 }, 4);
    const st = K.causalForward(relu).state;
    st.offset[1] = 2;
    expect(() => K.causalForward({ ...relu, state: st })).toThrow(/state\.offset\[1\] is 2; only 'favor' states/);
  });

  it('recurrentStep validates its one-token shapes', () => {
    const st = K.causalForward(good()).state;
    expect(() => K.recurrentStep({ ...good(), state: st })).toThrow(/q must be a Float32Array of shape \[b, h, t, d\] = \[1, 2, 1, 4\]/);
  });

  it('a disposed instance refuses calls', async () => {
    const k2 = await init();
    k2.dispose();
    expect(() => k2.causalForward(good())).toThrow(/disposed/);
  });

  it('an allocation failure inside a call is a clear RangeError and frees what was taken', () => {
    const freed: number[] = [];
    let next = 16;
    const fake = {
      memory: new WebAssembly.Memory({ initial: 1 }),
      sp_alloc: (bytes: number) => (bytes > 1000 ? 0 : (next += bytes)),
      sp_free: (ptr: number) => void freed.push(ptr),
    } as unknown as KernelExports;
    const s = new Scope(fake);
    s.alloc(100, 'small');
    expect(() => s.alloc(5000, 'q')).toThrow(/out of wasm memory allocating q \(0\.0 MiB/);
    s.free();
    expect(freed).toEqual([116]);
  });
});

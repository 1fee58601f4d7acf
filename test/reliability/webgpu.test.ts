/**
 * Bad inputs on the WebGPU kernels (src/webgpu): a `stateOut` that is empty, of the wrong size
 * or from other keys is an ArgError naming `stateOut`; finite inputs whose results overflow
 * float32 are an ArgError saying so, never a NaN result; every GPU buffer is released and the
 * next good call returns the same result, bit for bit. Skipped without a WebGPU adapter (Node:
 * `SLIM_TEST_BACKENDS=webgpu EGL_PLATFORM=surfaceless npx vitest run test/reliability/webgpu.test.ts`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyState } from '../../src/index.ts';
import { findAdapter } from '../../src/webgpu/device.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';
import { makeProblem, upstream } from '../util/problems.ts';
import { isFailure, Recorder, type Probe } from './harness.ts';

const only = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SLIM_TEST_BACKENDS?.split(',');
const wanted = !only || only.some((o) => 'webgpu'.startsWith(o) || o.startsWith('webgpu'));
const gpu = wanted ? await findAdapter().catch(() => null) : null;

function sameBits(a: unknown, b: unknown, where = 'result'): void {
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array((a as Float32Array).buffer, (a as Float32Array).byteOffset, (a as Float32Array).byteLength);
    const y = ArrayBuffer.isView(b) ? new Uint8Array((b as Float32Array).buffer, (b as Float32Array).byteOffset, (b as Float32Array).byteLength) : undefined;
    if (!y || x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${where} differs`);
    return;
  }
  if (a !== null && typeof a === 'object')
    for (const k of Object.keys(a)) sameBits((a as Record<string, unknown>)[k], (b as Record<string, unknown>)?.[k], `${where}.${k}`);
}

describe.skipIf(!gpu)(`WebGPU bad inputs (${gpu?.description ?? 'skipped: no WebGPU adapter'})`, () => {
  const rec = new Recorder();
  let K: WebGPUKernels;
  beforeAll(async () => {
    K = await initWebGPU({ adapter: gpu!.adapter, poison: true });
  });
  afterAll(() => K?.dispose());

  const dims = { b: 1, h: 2, t: 37, d: 8, m: 12, dv: 5 };
  const p = makeProblem('favor', dims, 3);
  const { dOut } = upstream(dims, 5);
  const check = async <R>(name: string, probe: Probe<R>) => {
    const r = await rec.probe('webgpu', name, { resources: () => [K.liveBuffers()], ...probe });
    expect(isFailure(r), `${name}: ${r.outcome} ${r.detail}`).toBe(false);
    return r;
  };

  it('stateOut: empty, wrong size or from other keys is an ArgError naming stateOut', async () => {
    const f = await K.causalForward({ ...p, chunk: 8 });
    const good = () => K.causalBackward({ ...p, chunk: 8, stateOut: f.state, dOut });
    const ref = await good();
    const other = (await K.causalForward({ ...p, k: p.q, chunk: 8 })).state;
    const cases: Array<[string, unknown, RegExp]> = [
      ['empty (never ran forward)', emptyState(dims, 'favor'), /causalBackward: stateOut\.offset\[0\] is -Infinity \(an empty state\)/],
      [
        'zero-size arrays',
        { S: new Float64Array(0), z: new Float64Array(0), offset: new Float64Array(0) },
        /causalBackward: stateOut\.S must be a Float64Array of shape \[b, h, m, dv\]/,
      ],
      ['S one short', { ...f.state, S: f.state.S.slice(1) }, /stateOut\.S must be/],
      ['from other keys', other, /causalBackward: stateOut is not the state the forward produced .*expected the state causalForward returned/],
      ['null', null, /stateOut must be an object/],
    ];
    for (const [name, stateOut, names] of cases) {
      const r = await check(`causalBackward: stateOut ${name}`, {
        run: () => K.causalBackward({ ...p, chunk: 8, stateOut: stateOut as never, dOut }),
        expect: 'refuse',
        names,
        after: async () => sameBits(ref, await good()),
      });
      expect(r.outcome, name).toBe('ArgError');
    }
  });

  it('finite inputs whose results overflow float32 are refused as such, never returned as NaN', async () => {
    const scale = (x: Float32Array, s: number) => x.map((v) => v * s);
    const f = await K.causalForward({ ...p, chunk: 8 });
    const goodOut = f.out;
    const again = async () => sameBits(goodOut, (await K.causalForward({ ...p, chunk: 8 })).out);
    const overflow = /the result is not finite.*too large for float32.*scale the inputs down/;
    const big = [
      ['q × 1e20', { q: scale(p.q, 1e20) }],
      ['q, k × 1e19', { q: scale(p.q, 1e19), k: scale(p.k, 1e19) }],
      // One huge key: its features vanish on the GPU (a zero weight, maybe a zero denominator)
      // rather than overflow, so only the up-front check sees it.
      ['k[3] = 3e38', { k: Object.assign(p.k.slice(), { 3: 3e38 }) }],
    ] as const;
    for (const [name, change] of big) {
      await check(`causalForward: ${name}`, { run: () => K.causalForward({ ...p, ...change, chunk: 8 }), expect: 'either', names: overflow, after: again });
      await check(`bidirectionalForward: ${name}`, {
        run: () => K.bidirectionalForward({ ...p, ...change, chunk: 8 }),
        expect: 'either',
        names: overflow,
        after: again,
      });
      await check(`bidirectionalBackward: ${name}`, {
        run: () => K.bidirectionalBackward({ ...p, ...change, dOut, chunk: 8 }),
        expect: 'either',
        names: overflow,
        after: again,
      });
    }
    // The backward with a consistent, overflowing forward: the forward itself refuses, so use a
    // large dOut instead (its gradient products overflow).
    await check('causalBackward: dOut × 1e37', {
      run: () => K.causalBackward({ ...p, chunk: 8, stateOut: f.state, dOut: scale(dOut, 1e37) }),
      expect: 'either',
      names: overflow,
      after: again,
    });
    const relu = makeProblem('relu', { ...dims, m: 8 }, 4);
    await check('relu causalForward: v × 1e37', {
      run: () => K.causalForward({ ...relu, v: scale(relu.v, 1e37), k: scale(relu.k, 1e3) }),
      expect: 'either',
      names: overflow,
      after: again,
    });
    for (const [name, run] of [
      ['causalForward k[3] = 3e38', () => K.causalForward({ ...p, k: Object.assign(p.k.slice(), { 3: 3e38 }), chunk: 8 })],
      ['bidirectionalForward k[0] = 3e38', () => K.bidirectionalForward({ ...p, k: Object.assign(p.k.slice(), { 0: 3e38 }), chunk: 8 })],
    ] as const) {
      const c = await check(`${name} is refused with an ArgError`, { run, expect: 'refuse', names: overflow, after: again });
      expect(c.outcome).toBe('ArgError');
    }
    const r = await check('causalForward: q × 1e20 is refused with an ArgError', {
      run: () => K.causalForward({ ...p, q: scale(p.q, 1e20), chunk: 8 }),
      expect: 'refuse',
      names: overflow,
      after: again,
    });
    expect(r.outcome).toBe('ArgError');
  });

  it('summary', () => {
    console.log(rec.summary('WebGPU bad-input suite'));
    const c = rec.counts();
    expect(c['silent NaN'] + c.crash + c.leak + c['state lost'] + c.unclear + c.accepted + c.wrong).toBe(0);
    expect(c.cases).toBeGreaterThan(10);
  });
});

/**
 * Bad inputs through the public entries (src/index.ts, src/tfjs/index.ts, the parallel pool,
 * checkpoints and the CLI). Every case checks four things: the call is refused with an error
 * naming the argument (or gives a correct, finite result), nothing crashes, nothing leaks (wasm
 * `liveBytes`, TF.js tensors back to their baseline), and the next good call still works and
 * returns the same result as before (bit for bit). See harness.ts for the outcome classes; the
 * last test prints the summary and asserts no silent NaN, crash, leak or lost state.
 */
import * as tf from '@tensorflow/tfjs';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgError, emptyState, init, type Kernels } from '../../src/index.ts';
import type { AttnState, Dims, FeatureMap } from '../../src/kernels/types.ts';
import {
  PerformerAttention,
  PerformerBlock,
  PerformerLM,
  SlimTrainer,
  dense,
  exportWeights,
  gelu,
  importWeights,
  layerNorm,
  performerAttention,
  setKernels,
  slimGradients,
  type Batch,
} from '../../src/tfjs/index.ts';
import { embed } from '../../src/tfjs/ops/embedding.ts';
import { parseSafetensors } from '../../src/io/safetensors.ts';
import { crc32, decodeCheckpoint, encodeCheckpoint, readCheckpoint, restoreCheckpoint } from '../../src/train/checkpoint/index.ts';
import { createPool, type KernelPool } from '../../src/parallel/index.ts';
import { makeProblem, upstream } from '../util/problems.ts';
import { Rng } from '../util/rng.ts';
import { isFailure, Recorder, type CaseResult, type Probe } from './harness.ts';

const rec = new Recorder();
const ROOT = path.resolve(import.meta.dirname, '../..');

/** Records a case and asserts it on the spot (so a failure names the case). */
async function check<R>(group: string, name: string, p: Probe<R>): Promise<CaseResult> {
  const r = await rec.probe(group, name, p);
  expect(
    isFailure(r),
    `${group} / ${name}: ${r.outcome}${r.detail ? ` — ${r.detail}` : ''}${r.leak ? ' (leak)' : ''}${r.stateLost ? ' (state lost)' : ''}`,
  ).toBe(false);
  return r;
}

/** Bitwise equality of typed arrays (and of objects of them). */
function sameBits(a: unknown, b: unknown, where = 'result'): void {
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array((a as Float32Array).buffer, (a as Float32Array).byteOffset, (a as Float32Array).byteLength);
    if (!ArrayBuffer.isView(b) || b.constructor !== a.constructor) throw new Error(`${where}: ${b?.constructor?.name} instead of ${a.constructor.name}`);
    const y = new Uint8Array((b as Float32Array).buffer, (b as Float32Array).byteOffset, (b as Float32Array).byteLength);
    if (x.length !== y.length) throw new Error(`${where}: ${y.length} bytes instead of ${x.length}`);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) throw new Error(`${where}: differs at byte ${i}`);
    return;
  }
  if (a !== null && typeof a === 'object') {
    for (const k of Object.keys(a)) sameBits((a as Record<string, unknown>)[k], (b as Record<string, unknown>)?.[k], `${where}.${k}`);
    return;
  }
  if (!Object.is(a, b)) throw new Error(`${where}: ${String(b)} instead of ${String(a)}`);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A message that names `name` as a word (`q`, `state.S`, `dims.t`). */
const naming = (name: string) => new RegExp(`(^|[^\\w.])${esc(name)}($|[^\\w])`);

let K: Kernels;
const tensors = () => tf.memory().numTensors;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tf.enableProdMode(); // no TF.js banner in the test output
  K = await init();
  setKernels(K);
  startCli(); // the CLI child processes run while the in-process cases do
});

afterAll(() => {
  setKernels(undefined);
  K?.dispose();
});

// ------------------------------------------------------------------------------------------
// 1. wasm kernels: every argument of every call, mutated one at a time

type Args = Record<string, unknown>;

interface Method {
  name:
    | 'causalForward'
    | 'causalBackward'
    | 'causalUnroll'
    | 'bidirectionalForward'
    | 'bidirectionalBackward'
    | 'recurrentStep'
    | 'causalForwardFeatures'
    | 'causalBackwardFeatures';
  feature: FeatureMap;
  args: () => Args;
  /** Keys that may be absent. */
  optional: string[];
}

function kernelMethods(): Method[] {
  const dims: Dims = { b: 1, h: 2, t: 9, d: 4, m: 6, dv: 3 };
  const fav = makeProblem('favor', dims, 11);
  const relu = makeProblem('relu', { ...dims, m: 4 }, 12);
  const { dOut } = upstream(dims, 13);
  const fwd = K.causalForward({ ...fav, chunk: 4 });
  const start = K.causalForward({ ...fav, chunk: 4 }).state; // a non-empty state to continue from
  const rf = K.causalForward({ ...relu, chunk: 4 });
  const stepDims = { ...dims, t: 1 };
  const step = makeProblem('favor', stepDims, 14);
  const phi = (x: Float32Array) => x.map(Math.abs);
  const ff = K.causalForwardFeatures({ phiQ: phi(relu.q), phiK: phi(relu.k), v: relu.v, dims: relu.dims, chunk: 4 });
  const base = { feature: 'favor' as const, omega: fav.omega, dims, chunk: 4 };
  return [
    { name: 'causalForward', feature: 'favor', args: () => ({ ...base, q: fav.q, k: fav.k, v: fav.v, state: start }), optional: ['state', 'chunk', 'eps'] },
    {
      name: 'causalForward',
      feature: 'relu',
      args: () => ({ feature: 'relu', dims: relu.dims, chunk: 4, q: relu.q, k: relu.k, v: relu.v }),
      optional: ['chunk', 'eps', 'omega', 'state'],
    },
    {
      name: 'causalBackward',
      feature: 'favor',
      args: () => ({ ...base, q: fav.q, k: fav.k, v: fav.v, stateOut: fwd.state, out: fwd.out, dOut }),
      optional: ['chunk', 'eps', 'out', 'stateIn', 'dState'],
    },
    {
      name: 'causalBackward',
      feature: 'relu',
      args: () => ({ feature: 'relu', dims: relu.dims, chunk: 4, q: relu.q, k: relu.k, v: relu.v, stateOut: rf.state, dOut: upstream(relu.dims, 15).dOut }),
      optional: ['chunk', 'eps', 'omega', 'out', 'stateIn', 'dState'],
    },
    {
      name: 'causalUnroll',
      feature: 'favor',
      args: () => ({ ...base, k: fav.k, v: fav.v, stateOut: fwd.state, offsetIn: new Float64Array(2).fill(-Infinity) }),
      optional: ['chunk'],
    },
    { name: 'bidirectionalForward', feature: 'favor', args: () => ({ ...base, q: fav.q, k: fav.k, v: fav.v }), optional: ['chunk', 'eps'] },
    { name: 'bidirectionalBackward', feature: 'favor', args: () => ({ ...base, q: fav.q, k: fav.k, v: fav.v, dOut }), optional: ['chunk', 'eps'] },
    {
      name: 'recurrentStep',
      feature: 'favor',
      args: () => ({ feature: 'favor', omega: fav.omega, dims: stepDims, q: step.q, k: step.k, v: step.v, state: start }),
      optional: ['eps'],
    },
    {
      name: 'causalForwardFeatures',
      feature: 'relu',
      args: () => ({ phiQ: phi(relu.q), phiK: phi(relu.k), v: relu.v, dims: relu.dims, chunk: 4 }),
      optional: ['chunk', 'eps', 'state'],
    },
    {
      name: 'causalBackwardFeatures',
      feature: 'relu',
      args: () => ({ phiQ: phi(relu.q), phiK: phi(relu.k), v: relu.v, dims: relu.dims, chunk: 4, stateOut: ff.state, dOut: upstream(relu.dims, 16).dOut }),
      optional: ['chunk', 'eps', 'out', 'stateIn', 'dState'],
    },
  ];
}

interface Mutation {
  name: string;
  args: Args;
  /** The argument the refusal must name. */
  names: RegExp;
  expect?: 'refuse' | 'either';
}

/** Every single-argument corruption of `args` we can think of, plus seeded random NaN positions. */
function mutations(m: Method, rng: Rng): Mutation[] {
  const good = m.args();
  const out: Mutation[] = [];
  const put = (name: string, key: string, value: unknown, names = naming(key), expect?: 'refuse' | 'either') =>
    out.push({ name: `${key} ${name}`, args: { ...good, [key]: value }, names, expect });
  for (const [key, value] of Object.entries(good)) {
    if (value instanceof Float32Array || value instanceof Float64Array) {
      const other = value instanceof Float32Array ? Float64Array.from(value) : Float32Array.from(value);
      if (!m.optional.includes(key)) put('missing', key, undefined);
      put('null', key, null, key === 'omega' && m.feature !== 'favor' ? /omega|dims\.m/ : naming(key));
      put(`as ${other.constructor.name}`, key, other);
      put('as a plain Array', key, Array.from(value));
      put('one element short', key, value.slice(1));
      const longer = new (value.constructor as Float32ArrayConstructor)(value.length + 1);
      longer.set(value);
      put('one element long', key, longer);
      const specials = key === 'offsetIn' ? [NaN, Infinity] : [NaN, Infinity, -Infinity];
      for (const bad of specials) {
        const x = value.slice();
        const i = Math.floor(rng.next() * x.length);
        x[i] = bad;
        put(`with ${bad} at [${i}]`, key, x);
      }
      if (key === 'q' || key === 'k' || key === 'phiQ' || key === 'phiK') {
        // Finite but beyond what float32 features survive: refused, or a finite result, never NaN.
        put(
          '× 1e20 (finite, overflows float32 features)',
          key,
          value.map((x) => x * 1e20),
          /q|k|phiQ|phiK|finite|overflow|status/,
          'either',
        );
      }
      if (key === 'phiQ' || key === 'phiK') {
        // Features are documented non-negative; negative ones must not give NaN either.
        put(
          'negative (features are ≥ 0)',
          key,
          value.map((x) => -x - 0.5),
          /phiQ|phiK|negative|finite|denominator|status/,
          'either',
        );
      }
      continue;
    }
    if (key === 'dims') {
      // recurrentStep sets t = 1 itself.
      for (const field of m.name === 'recurrentStep' ? ['b', 'h', 'd', 'm', 'dv'] : ['b', 'h', 't', 'd', 'm', 'dv']) {
        for (const bad of [0, -1, 1.5, NaN, '2', undefined, 2 ** 53]) {
          put(`.${field} = ${typeof bad === 'string' ? `'${bad}'` : String(bad)}`, key, { ...(value as Dims), [field]: bad }, naming(`dims.${field}`));
        }
      }
      const huge = m.name === 'recurrentStep' ? { ...(value as Dims), b: 1e7, h: 1e3 } : { ...(value as Dims), t: 1e9 };
      put('too large for wasm32 memory', key, huge, /GiB|wasm memory/);
      put('= null', key, null, naming('dims'));
      continue;
    }
    if (key === 'feature') {
      for (const bad of ['softmax', undefined, 3, 'FAVOR']) put(`= ${String(bad)}`, key, bad, naming('feature'));
      continue;
    }
    if (key === 'chunk') {
      for (const bad of [0, -4, 2.5, NaN, Infinity, '4']) put(`= ${String(bad)}`, key, bad, naming('chunk'));
      continue;
    }
    if (key === 'state' || key === 'stateOut') {
      const st = value as AttnState;
      put('= null', key, null);
      put('= {}', key, {}, naming(`${key}.S`));
      put('S one short', key, { ...st, S: st.S.slice(1) }, naming(`${key}.S`));
      put('z as Float32Array', key, { ...st, z: Float32Array.from(st.z) }, naming(`${key}.z`));
      put('S with NaN', key, { ...st, S: st.S.map((x, i) => (i === 1 ? NaN : x)) }, naming(`${key}.S`));
      put('offset NaN', key, { ...st, offset: st.offset.map(() => NaN) }, naming(`${key}.offset`));
      put('zero-size arrays', key, { S: new Float64Array(0), z: new Float64Array(0), offset: new Float64Array(0) }, naming(`${key}.S`));
      if (m.feature === 'favor' && key === 'stateOut') {
        const dims = good.dims as Dims;
        put('empty (never ran forward)', key, emptyState(dims, 'favor'), naming('stateOut'));
        const k = good.k as Float32Array;
        const otherKeys = K.causalForward({ ...(good as object), q: k.map((x) => -x), k: k.map((x) => -x), state: undefined } as never).state;
        put('from other keys', key, otherKeys, naming('stateOut'));
      }
      if (m.feature !== 'favor') put('offset non-zero for a non-favor map', key, { ...st, offset: st.offset.map(() => 1) }, naming(`${key}.offset`));
    }
  }
  // Optional arguments, where the call reads them.
  if (m.optional.includes('eps'))
    for (const bad of [-1, NaN, Infinity, '1e-6']) out.push({ name: `eps = ${String(bad)}`, args: { ...good, eps: bad }, names: naming('eps') });
  if (m.optional.includes('chunk') && !('chunk' in good))
    for (const bad of [0, 1.5]) out.push({ name: `chunk = ${bad}`, args: { ...good, chunk: bad }, names: naming('chunk') });
  if (m.optional.includes('stateIn')) out.push({ name: 'stateIn = 7', args: { ...good, stateIn: 7 }, names: naming('stateIn') });
  if (m.optional.includes('dState'))
    out.push({ name: 'dState garbage', args: { ...good, dState: { S: new Float64Array(1), z: 'x' } }, names: naming('dState.S') });
  if (m.optional.includes('state') && !('state' in good)) out.push({ name: 'state = {}', args: { ...good, state: {} }, names: naming('state.S') });
  for (const bad of [null, undefined, 42, 'args'])
    out.push({ name: `arguments = ${String(bad)}`, args: bad as unknown as Args, names: /arguments object|dims/ });
  return out;
}

describe('wasm kernels (src/index.ts)', () => {
  it('every call refuses every corrupted argument by name, frees everything, and the next call is bit-identical', async () => {
    const rng = new Rng(2024);
    let n = 0;
    for (const m of kernelMethods()) {
      const call = (a: Args) => (K[m.name] as unknown as (a: Args) => unknown).call(K, a);
      const reference = call(m.args());
      const base = K.liveBytes();
      expect(base, 'no wasm allocation outlives a call').toBe(0);
      for (const mu of mutations(m, rng)) {
        n++;
        await check(`kernels.${m.name}`, `${m.feature}: ${mu.name}`, {
          run: () => call(mu.args),
          expect: mu.expect ?? 'refuse',
          names: mu.names,
          resources: () => [K.liveBytes()],
          after: () => sameBits(reference, call(m.args())),
        });
      }
    }
    expect(n).toBeGreaterThan(500);
  });

  it('a disposed instance refuses clearly, and another instance is unaffected', async () => {
    const other = await init();
    const p = makeProblem('relu', { b: 1, h: 1, t: 5, d: 4, m: 4, dv: 2 }, 3);
    const ref = K.causalForward(p);
    other.dispose();
    await check('kernels', 'call on a disposed instance', {
      run: () => other.causalForward(p),
      expect: 'refuse',
      names: /disposed/,
      after: () => sameBits(ref, K.causalForward(p)),
    });
  });
});

// ------------------------------------------------------------------------------------------
// 2. TF.js ops and layers

/** A tensor's values, then disposes it (so ok-cases leave nothing behind). */
function values(t: tf.Tensor | undefined | null): Float32Array {
  if (!t) throw new Error('no tensor');
  try {
    return Float32Array.from(t.dataSync());
  } finally {
    t.dispose();
  }
}

function disposed(shape: number[], dtype: tf.DataType = 'float32'): tf.Tensor {
  const t = tf.zeros(shape, dtype);
  t.dispose();
  return t;
}

describe('TF.js ops and layers (src/tfjs/index.ts)', () => {
  // Every input tensor is made before the cases run, so that a case's tensor count is its own.
  const live: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => (live.push(t), t);
  afterAll(() => tf.dispose(live));
  const res = () => [tensors(), K.liveBytes()];
  const zeros = (shape: number[], dtype: tf.DataType = 'float32') => keep(tf.zeros(shape, dtype));

  it('dense, layerNorm, gelu, embed', async () => {
    const x = keep(tf.randomNormal([2, 3, 4], 0, 1, 'float32', 1));
    const w = keep(tf.randomNormal([4, 5], 0, 1, 'float32', 2));
    const b5 = keep(tf.randomNormal([5], 0, 1, 'float32', 3));
    const g4 = keep(tf.randomNormal([4], 1, 0.1, 'float32', 4));
    const b4 = keep(tf.randomNormal([4], 0, 0.1, 'float32', 5));
    const table = keep(tf.randomNormal([7, 3], 0, 1, 'float32', 6)) as tf.Tensor2D;
    const ids = keep(tf.tensor2d([[0, 6, 3]], [1, 3], 'int32'));
    const xi = zeros([2, 4], 'int32');
    const F = {
      w35: zeros([3, 5]),
      w451: zeros([4, 5, 1]),
      g3: zeros([3]),
      g1: zeros([1]),
      b41: zeros([4, 1]),
      scalar: keep(tf.scalar(1)),
      bool: zeros([2], 'bool'),
      str: keep(tf.tensor(['a'])),
      idsHigh: keep(tf.tensor2d([[0, 7]], [1, 2], 'int32')),
      idsNeg: keep(tf.tensor2d([[-1, 0]], [1, 2], 'int32')),
      idsFloat: keep(tf.tensor2d([[0.5, 1]], [1, 2])),
      ids1d: keep(tf.tensor1d([0, 1], 'int32')),
      tableInt: zeros([7, 3], 'int32'),
      w34: keep(tf.randomNormal([3, 4], 0, 1, 'float32', 8)),
    };
    const good = {
      dense: values(dense(x, w, b5)),
      norm: values(layerNorm(x, g4, b4)),
      gelu: values(gelu(x)),
      embed: values(embed(table, ids)),
    };
    const cases: Array<[string, () => tf.Tensor, RegExp, keyof typeof good]> = [
      ['dense: w [3, 5] for x [.., 4]', () => dense(x, F.w35), /dense: x must be \[\.\.\., 3\]/, 'dense'],
      ['dense: int32 x', () => dense(xi, w), /dense: x and w must be float32/, 'dense'],
      ['dense: disposed x', () => dense(disposed([2, 4]), w), /dense: x must be a live/, 'dense'],
      ['dense: disposed w', () => dense(x, disposed([4, 5])), /dense: w must be a live/, 'dense'],
      ['dense: b [4] for w [4, 5]', () => dense(x, w, b4), /dense: b must be .*\[5\]/, 'dense'],
      ['dense: 3-D w', () => dense(x, F.w451), /dense: w must be a live 2-D/, 'dense'],
      ['dense: x = null', () => dense(null as never, w), /dense: x must be/, 'dense'],
      ['dense: w = Float32Array', () => dense(x, new Float32Array(20) as never), /dense: w must be/, 'dense'],
      ['layerNorm: g [3] for width 4', () => layerNorm(x, F.g3, b4), /layerNorm: g must be .*\[4\]/, 'norm'],
      ['layerNorm: g [1] (would broadcast)', () => layerNorm(x, F.g1, b4), /layerNorm: g must be .*\[4\]/, 'norm'],
      ['layerNorm: b [4, 1]', () => layerNorm(x, g4, F.b41), /layerNorm: b must be .*\[4\]/, 'norm'],
      ['layerNorm: int32 x', () => layerNorm(xi, g4, b4), /layerNorm: x must be a live float32/, 'norm'],
      ['layerNorm: disposed x', () => layerNorm(disposed([2, 4]), g4, b4), /layerNorm: x must be a live .*disposed/, 'norm'],
      ['layerNorm: disposed g', () => layerNorm(x, disposed([4]), b4), /layerNorm: g must be a live .*disposed/, 'norm'],
      ['layerNorm: scalar x', () => layerNorm(F.scalar, g4, b4), /layerNorm: x must be/, 'norm'],
      ['layerNorm: eps = -1', () => layerNorm(x, g4, b4, -1), /layerNorm: eps must be/, 'norm'],
      ['layerNorm: eps = NaN', () => layerNorm(x, g4, b4, NaN), /layerNorm: eps must be/, 'norm'],
      ['layerNorm: eps = 0 (0/0 on a constant row)', () => layerNorm(x, g4, b4, 0), /layerNorm: eps must be/, 'norm'],
      ['gelu: int32', () => gelu(xi), /gelu: x must be a live float32/, 'gelu'],
      ['gelu: bool', () => gelu(F.bool), /gelu: x must be a live float32/, 'gelu'],
      ['gelu: string tensor', () => gelu(F.str), /gelu: x must be a live float32/, 'gelu'],
      ['gelu: disposed', () => gelu(disposed([2])), /gelu: x must be a live/, 'gelu'],
      ['gelu: null', () => gelu(null as never), /gelu: x must be/, 'gelu'],
      ['embed: id = vocab', () => embed(table, F.idsHigh as tf.Tensor2D), /embed: ids\[0, 1\] is 7; token ids must lie in \[0, 7\)/, 'embed'],
      ['embed: id = -1', () => embed(table, F.idsNeg as tf.Tensor2D), /embed: ids\[0, 0\] is -1/, 'embed'],
      ['embed: float32 ids', () => embed(table, F.idsFloat as tf.Tensor2D), /embed: ids must be a live int32/, 'embed'],
      ['embed: 1-D ids', () => embed(table, F.ids1d as never), /embed: ids must be a live int32 tf\.Tensor \[batch, T\]/, 'embed'],
      ['embed: int32 table', () => embed(F.tableInt as tf.Tensor2D, ids), /embed: table must be a live float32/, 'embed'],
      ['embed: disposed table', () => embed(disposed([7, 3]) as tf.Tensor2D, ids), /embed: table must be a live/, 'embed'],
    ];
    const again = { dense: () => dense(x, w, b5), norm: () => layerNorm(x, g4, b4), gelu: () => gelu(x), embed: () => embed(table, ids) };
    for (const [name, run, names, op] of cases) {
      await check('tfjs ops', name, {
        run: () => values(run()),
        expect: 'refuse',
        names,
        resources: res,
        after: () => sameBits(good[op], values(again[op]())),
      });
    }
    // Gradients of the ops still flow after all that (dense's own backward, the embedding's scatter-add).
    await check('tfjs ops', 'gradients after the refusals', {
      run: () =>
        tf.tidy(() =>
          Float32Array.from(
            tf
              .grad((t: tf.Tensor) => tf.sum(gelu(layerNorm(dense(embed(t as tf.Tensor2D, ids), F.w34), g4, b4))))(table)
              .dataSync(),
          ),
        ),
      expect: 'ok',
      check: (g) => expect(g.some((v) => v !== 0)).toBe(true),
    });
  });

  it('performerAttention', async () => {
    const dims = { b: 1, h: 2, t: 6, d: 4, m: 6, dv: 3 };
    const p = makeProblem('favor', dims, 21);
    const q = keep(tf.tensor4d(p.q, [1, 2, 6, 4]));
    const k = keep(tf.tensor4d(p.k, [1, 2, 6, 4]));
    const v = keep(tf.tensor4d(p.v, [1, 2, 6, 3]));
    const F = {
      k5: zeros([1, 2, 5, 4]),
      v5: zeros([1, 2, 5, 3]),
      q3d: zeros([2, 6, 4]),
      qInt: zeros([1, 2, 6, 4], 'int32'),
      qNaN: keep(tf.fill([1, 2, 6, 4], NaN)),
    };
    const opts = { kernels: K, feature: 'favor' as const, omega: p.omega, causal: true, chunk: 4 };
    const run = (o: Record<string, unknown> = {}, qq: tf.Tensor = q, kk: tf.Tensor = k, vv: tf.Tensor = v) => {
      const r = performerAttention(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, { ...opts, ...o } as never);
      return { out: values(r.out), state: r.state };
    };
    const good = run();
    const gradOf = () =>
      tf.tidy(() =>
        Float32Array.from(
          tf
            .grad((qq: tf.Tensor) => tf.sum(performerAttention(qq as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, opts).out))(q)
            .dataSync(),
        ),
      );
    const goodGrad = gradOf();
    const cases: Array<[string, () => unknown, RegExp]> = [
      ['k [1, 2, 5, 4]', () => run({}, q, F.k5), /performerAttention: k must be a live float32 tf\.Tensor \[1,2,6,4\]/],
      ['v with another t', () => run({}, q, k, F.v5), /performerAttention: v must be .*\[1, 2, 6, dv\]/],
      ['3-D q', () => run({}, F.q3d, F.q3d, F.q3d), /performerAttention: q must be a live float32 tf\.Tensor \[b, h, t, d\]/],
      ['int32 q', () => run({}, F.qInt), /performerAttention: q must be a live float32/],
      ['disposed q', () => run({}, disposed([1, 2, 6, 4])), /performerAttention: q must be .*disposed/],
      ['disposed v', () => run({}, q, k, disposed([1, 2, 6, 3])), /performerAttention: v must be/],
      ['q = null', () => run({}, null as never), /performerAttention: q must be/],
      ['omega of length 7', () => run({ omega: new Float32Array(7) }), /performerAttention: omega must be a Float32Array \[h, m, d\]/],
      ['omega as Float64Array', () => run({ omega: Float64Array.from(p.omega!) }), /performerAttention: omega must be/],
      ['omega with NaN', () => run({ omega: p.omega!.map((x, i) => (i === 3 ? NaN : x)) }), /omega\[3\] is NaN/],
      ['m disagrees with omega', () => run({ m: 5 }), /performerAttention: m is 5 but omega holds 6/],
      ['favor without omega', () => run({ omega: undefined }), /omega .* is required for feature 'favor'/],
      ["feature 'softmax'", () => run({ feature: 'softmax' }), /feature must be one of/],
      ['chunk 0', () => run({ chunk: 0 }), /chunk must be a positive integer/],
      ['causal = "yes"', () => run({ causal: 'yes' }), /performerAttention: causal must be a boolean/],
      ['state for bidirectional', () => run({ causal: false, state: good.state }), /state is only defined for causal attention/],
      ['state of the wrong size', () => run({ state: { S: new Float64Array(3), z: new Float64Array(2), offset: new Float64Array(2) } }), /state\.S must be/],
      ['state with NaN', () => run({ state: { ...good.state!, z: good.state!.z.map(() => NaN) } }), /state\.z\[0\] is NaN/],
      ['no kernels', () => run({ kernels: undefined }), /performerAttention: kernels must be a wasm kernel instance/],
      ['kernels = {}', () => run({ kernels: {} }), /performerAttention: kernels must be/],
      [
        'options = null',
        () => performerAttention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, null as never),
        /performerAttention: expected an options object/,
      ],
      ['NaN in q', () => run({}, F.qNaN), /q\[0\] is NaN; q must hold finite values/],
    ];
    for (const [name, f, names] of cases) {
      await check('tfjs performerAttention', name, { run: f, expect: 'refuse', names, resources: res, after: () => sameBits(good.out, run().out) });
    }
    await check('tfjs performerAttention', 'gradient after the refusals is unchanged', {
      run: gradOf,
      expect: 'ok',
      check: (g) => sameBits(goodGrad, g),
      resources: res,
    });
  });

  it('PerformerAttention and PerformerBlock layers', async () => {
    const attn = new PerformerAttention({ heads: 2, causal: true, feature: 'favor', features: 6, chunk: 4 });
    const block = new PerformerBlock({ heads: 2, causal: true, feature: 'relu', ffn: 6, chunk: 4 });
    const x = keep(tf.randomNormal([1, 5, 8], 0, 1, 'float32', 7));
    const F = {
      w6: zeros([1, 5, 6]),
      r2: zeros([5, 8]),
      int: zeros([1, 5, 8], 'int32'),
      nan: keep(tf.fill([1, 5, 8], NaN)),
      inf: keep(tf.fill([1, 5, 8], Infinity)),
      w9: zeros([1, 2, 9]),
    };
    const applyA = (y: unknown) => values(attn.apply(y as tf.Tensor) as tf.Tensor);
    const applyB = (y: unknown) => values(block.apply(y as tf.Tensor) as tf.Tensor);
    const goodA = applyA(x);
    const goodB = applyB(x);
    const cases: Array<[string, () => unknown, RegExp, 'A' | 'B']> = [
      ['attention: width 6, built for 8', () => applyA(F.w6), /PerformerAttention: inputs must be .*\[batch, T, 8\]/, 'A'],
      ['attention: rank 2', () => applyA(F.r2), /PerformerAttention: inputs must be/, 'A'],
      ['attention: int32 inputs', () => applyA(F.int), /PerformerAttention: inputs must be a live float32/, 'A'],
      ['attention: disposed inputs', () => applyA(disposed([1, 5, 8])), /disposed/, 'A'],
      ['attention: NaN inputs', () => applyA(F.nan), /q\[0\] is NaN/, 'A'],
      ['attention: two inputs', () => applyA([x, x]), /expects one input, got 2/, 'A'],
      ['block: width 6, built for 8', () => applyB(F.w6), /PerformerBlock: inputs must be .*\[batch, T, 8\]/, 'B'],
      ['block: int32 inputs', () => applyB(F.int), /PerformerBlock: inputs must be a live float32/, 'B'],
      ['block: Infinity inputs', () => applyB(F.inf), /is (NaN|Infinity)|finite/, 'B'],
      ['block: disposed inputs', () => applyB(disposed([1, 5, 8])), /disposed/, 'B'],
      ['new attention: heads 0', () => new PerformerAttention({ heads: 0 }), /PerformerAttention: heads must be a positive integer/, 'A'],
      ["new attention: feature 'exp'", () => new PerformerAttention({ heads: 2, feature: 'exp' as never }), /feature must be one of/, 'A'],
      ['new attention: chunk 1.5', () => new PerformerAttention({ heads: 2, chunk: 1.5 }), /chunk must be a positive integer/, 'A'],
      ['new block: ffn -1', () => new PerformerBlock({ heads: 2, ffn: -1 }), /PerformerBlock: ffn must be a positive integer/, 'B'],
      ['new block: epsilon 0', () => new PerformerBlock({ heads: 2, epsilon: 0 }), /epsilon must be positive/, 'B'],
      ['build: width 9 for 3 heads', () => new PerformerAttention({ heads: 3 }).apply(F.w9), /width 9 must split into 3 heads of even width/, 'A'],
    ];
    for (const [name, f, names, which] of cases) {
      await check('tfjs layers', name, {
        run: f,
        expect: 'refuse',
        names,
        resources: res,
        after: () => (which === 'A' ? sameBits(goodA, applyA(x)) : sameBits(goodB, applyB(x))),
      });
    }
    attn.dispose();
    block.dispose();
  });
});

// ------------------------------------------------------------------------------------------
// 3. SlimTrainer.step

describe('SlimTrainer.step (src/tfjs/index.ts)', () => {
  const T = 8;
  const V = 11;
  const config = { vocabSize: V, dModel: 8, heads: 2, layers: 1, ffn: 8, feature: 'favor' as const, features: 6, chunk: 4, seed: 9 };
  const goodBatch = (): Batch => {
    const rng = new Rng(31);
    // Token V − 1 never occurs: its embedding row is one no gradient sees.
    return { tokens: Int32Array.from({ length: 2 * (T + 1) }, () => Math.floor(rng.next() * (V - 1))), batch: 2 };
  };
  const snapshot = (m: PerformerLM) => m.namedVariables().map(([n, v]) => [n, Float32Array.from(v.dataSync())] as const);
  const sameWeights = (m: PerformerLM, s: ReturnType<typeof snapshot>) => {
    const now = new Map(m.namedVariables());
    for (const [n, data] of s) sameBits(data, Float32Array.from(now.get(n)!.dataSync()), n);
  };
  const gradients = (m: PerformerLM) => {
    const g = slimGradients(m, goodBatch(), 3);
    const out = { loss: g.loss, grads: [...g.grads.entries()].map(([n, t]) => [n, Float32Array.from(t.dataSync())] as const) };
    for (const t of g.grads.values()) t.dispose();
    return out;
  };
  /** A model and an Adam trainer that has taken one step (so the optimizer has state). */
  const trained = () => {
    const model = new PerformerLM(K, config);
    const optimizer = tf.train.adam(1e-2);
    const trainer = new SlimTrainer(model, { sliceLength: 3, optimizer });
    trainer.step(goodBatch());
    return { model, optimizer, trainer };
  };
  const optimizerState = async (o: tf.Optimizer) => (await o.getWeights()).map((w) => Float32Array.from(w.tensor.dataSync()));
  const res = () => [tensors(), K.liveBytes()];

  it('bad batches and bad slice lengths: refused by name, weights and optimizer unchanged', async () => {
    const { model, optimizer, trainer } = trained();
    const ref = gradients(model);
    const tokens = goodBatch().tokens;
    const with_ = (i: number, x: number) => tokens.map((t, j) => (j === i ? x : t));
    const cases: Array<[string, () => unknown, RegExp]> = [
      [
        'tokens as Float32Array',
        () => trainer.step({ tokens: Float32Array.from(tokens) as never, batch: 2 }),
        /batch\.tokens must be an Int32Array of shape \[batch, T \+ 1\]/,
      ],
      ['tokens as a plain Array', () => trainer.step({ tokens: Array.from(tokens) as never, batch: 2 }), /batch\.tokens must be an Int32Array/],
      ['tokens missing', () => trainer.step({ batch: 2 } as never), /batch\.tokens must be an Int32Array/],
      [
        'tokens length not a multiple of batch',
        () => trainer.step({ tokens: tokens.slice(1), batch: 2 }),
        /batch\.tokens must be an Int32Array of shape \[batch, T \+ 1\] = \[2, T \+ 1\]/,
      ],
      ['T = 0 (one token per row)', () => trainer.step({ tokens: tokens.slice(0, 2), batch: 2 }), /with T ≥ 1/],
      ['batch = 0', () => trainer.step({ tokens, batch: 0 }), /batch\.batch must be a positive integer/],
      ['batch = 1.5', () => trainer.step({ tokens, batch: 1.5 }), /batch\.batch must be a positive integer/],
      ['batch = "2"', () => trainer.step({ tokens, batch: '2' as never }), /batch\.batch must be a positive integer/],
      ['batch object null', () => trainer.step(null as never), /batch must be an object/],
      ['token = vocabSize (input)', () => trainer.step({ tokens: with_(0, V), batch: 2 }), /batch\.tokens must lie in \[0, 11\), found 11 at \[0, 0\]/],
      ['token = vocabSize (last target)', () => trainer.step({ tokens: with_(2 * (T + 1) - 1, V), batch: 2 }), /found 11 at \[1, 8\]/],
      ['token = -1', () => trainer.step({ tokens: with_(5, -1), batch: 2 }), /batch\.tokens must lie in \[0, 11\), found -1/],
      ['token = 2^31 - 1', () => trainer.step({ tokens: with_(3, 2 ** 31 - 1), batch: 2 }), /found 2147483647/],
      [
        'mask one short',
        () => trainer.step({ ...goodBatch(), mask: new Uint8Array(2 * (T + 1) - 1) }),
        /batch\.mask must be a Uint8Array of shape \[batch, T \+ 1\] = \[2, 9\]/,
      ],
      [
        'mask as Float32Array',
        () => trainer.step({ ...goodBatch(), mask: new Float32Array(2 * (T + 1)).fill(1) as never }),
        /batch\.mask must be a Uint8Array/,
      ],
      [
        'mask value 2',
        () => trainer.step({ ...goodBatch(), mask: new Uint8Array(2 * (T + 1)).fill(1).map((x, i) => (i === 4 ? 2 : x)) }),
        /batch\.mask\[0, 4\] is 2/,
      ],
      ['sliceLength 0', () => slimGradients(model, goodBatch(), 0), /sliceLength must be a positive integer/],
      ['sliceLength 2.5', () => slimGradients(model, goodBatch(), 2.5), /sliceLength must be a positive integer/],
      ['sliceLength NaN', () => slimGradients(model, goodBatch(), NaN), /sliceLength must be a positive integer/],
      ['sliceLength Infinity', () => slimGradients(model, goodBatch(), Infinity), /sliceLength must be a positive integer/],
      ['trainer sliceLength -1', () => new SlimTrainer(model, { sliceLength: -1 }), /SlimTrainer: options\.sliceLength must be a positive integer/],
      ['trainer clipNorm NaN', () => new SlimTrainer(model, { sliceLength: 2, clipNorm: NaN }), /SlimTrainer: options\.clipNorm must be a finite number > 0/],
      ["trainer mode 'fast'", () => new SlimTrainer(model, { sliceLength: 2, mode: 'fast' as never }), /SlimTrainer: options\.mode must be 'slim' or 'full'/],
    ];
    const before = { weights: snapshot(model), opt: await optimizerState(optimizer) };
    const unchanged = async () => {
      sameWeights(model, before.weights);
      sameBits(before.opt, await optimizerState(optimizer), 'optimizer state');
      sameBits(ref, gradients(model));
    };
    for (const [name, f, names] of cases) {
      await check('SlimTrainer', name, { run: () => (f() as { loss?: number })?.loss, expect: 'refuse', names, resources: res, after: unchanged });
    }
    // Edge cases that are fine: all targets padding (loss 0, gradient 0), slices longer than T.
    await check('SlimTrainer', 'mask all padding: zero loss and zero gradients', {
      run: () => {
        const g = slimGradients(model, { ...goodBatch(), mask: new Uint8Array(2 * (T + 1)) }, 3);
        const largest = tf.tidy(() => Math.max(...[...g.grads.values()].map((t) => tf.max(tf.abs(t)).dataSync()[0])));
        for (const t of g.grads.values()) t.dispose();
        return { loss: g.loss, tokens: g.tokens, largest };
      },
      expect: 'ok',
      check: (r) => expect(r).toEqual({ loss: 0, tokens: 0, largest: 0 }),
      resources: res,
      after: unchanged,
    });
    await check('SlimTrainer', 'sliceLength 1000 > T: one slice, the same loss', {
      run: () => {
        const g = slimGradients(model, goodBatch(), 1000);
        for (const t of g.grads.values()) t.dispose();
        return g.loss;
      },
      expect: 'ok',
      check: (loss) => expect(Math.abs(loss - ref.loss) / ref.loss).toBeLessThan(1e-5),
      resources: res,
      after: unchanged,
    });
    model.dispose();
    optimizer.dispose();
  });

  // Weights that became NaN or infinite — in an attention projection (the kernels see NaN q),
  // in the head (only the loss does), in an embedding row the batch does not use (no gradient
  // sees it) — or so large that the activations overflow: the step refuses the update.
  const POISON: Array<[string, number, number]> = [
    ['blocks.0.wq', 1, NaN],
    ['head.w', 1, NaN],
    ['embed', (V - 1) * config.dModel + 3, Infinity], // the unused row
    ['blocks.0.ln1g', 1, 3e38],
    ['blocks.0.w1', 0, -3e38],
  ];
  for (const [name, at, value] of POISON) {
    it(`${name}[${at}] = ${value}: the step is refused (or, for finite weights, is finite), nothing changes`, async () => {
      const { model, optimizer, trainer } = trained();
      const ref = gradients(model);
      const v = new Map(model.namedVariables()).get(name)!;
      const saved = Float32Array.from(v.dataSync());
      const poisoned = saved.slice();
      poisoned[at] = value;
      tf.tidy(() => v.assign(tf.tensor(poisoned, v.shape)));
      if (name === 'embed') expect(goodBatch().tokens.includes(V - 1), 'the poisoned embedding row is unused').toBe(false);
      const weights = snapshot(model);
      const opt = await optimizerState(optimizer);
      let stepped = false;
      await check('SlimTrainer', `${name}[${at}] = ${value}`, {
        run: () => {
          const r = trainer.step(goodBatch());
          stepped = true;
          return r;
        },
        expect: Number.isFinite(value) ? 'either' : 'refuse',
        names: Number.isFinite(value)
          ? /SlimTrainer\.step: .*(not finite|loss is|gradient norm is)/
          : new RegExp(`SlimTrainer\\.step: the model's weights are not finite \\(${esc(name)}\\[${at}\\] is ${value}\\)`),
        resources: res,
        after: async () => {
          if (stepped) {
            // A finite step from finite weights: legitimate, and everything it wrote is finite.
            for (const [n, w] of snapshot(model)) if (!w.every(Number.isFinite)) throw new Error(`${n} is not finite after a step that was not refused`);
            return;
          }
          sameWeights(model, weights); // nothing was applied…
          sameBits(opt, await optimizerState(optimizer), 'optimizer state');
          tf.tidy(() => v.assign(tf.tensor(saved, v.shape))); // …and with the weight restored, all is as before
          sameBits(ref, gradients(model));
          const r = trainer.step(goodBatch());
          if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) throw new Error('the next step is not finite');
        },
      });
      model.dispose();
      optimizer.dispose();
    });
  }
});

// ------------------------------------------------------------------------------------------
// 4. safetensors and checkpoints

describe('safetensors and checkpoint loading', () => {
  const config = { vocabSize: 7, dModel: 8, heads: 2, layers: 1, ffn: 8, feature: 'favor' as const, features: 6, chunk: 4, seed: 2 };
  const snapshot = (m: PerformerLM) => m.namedVariables().map(([, v]) => Float32Array.from(v.dataSync()));

  it('safetensors: truncated, inconsistent or foreign files are refused and the model is unchanged', async () => {
    const source = new PerformerLM(K, config);
    const target = new PerformerLM(K, { ...config, seed: 3 });
    const file = exportWeights(source, { config: JSON.stringify({ architecture: 'performer-lm', ...config }) });
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    const json = () => JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))) as Record<string, any>;
    /** `file` with its JSON header edited, and its data section (optionally) replaced. */
    const rewrite = (edit: (h: Record<string, any>) => void, data: Uint8Array = file.subarray(8 + n)) => {
      const h = json();
      edit(h);
      const head = new TextEncoder().encode(JSON.stringify(h));
      const out = new Uint8Array(8 + head.length + data.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
      out.set(head, 8);
      out.set(data, 8 + head.length);
      return out;
    };
    /** A file of just a header (`text`) and no data. */
    const framed = (text: string) => {
      const h = new TextEncoder().encode(text);
      const o = new Uint8Array(8 + h.length);
      new DataView(o.buffer).setBigUint64(0, BigInt(h.length), true);
      o.set(h, 8);
      return o;
    };
    const edited = (f: (b: Uint8Array, v: DataView) => void) => {
      const b = file.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    const names = Object.keys(json()).filter((k) => k !== '__metadata__');
    const byOffset = [...names].sort((a, b) => json()[a].data_offsets[0] - json()[b].data_offsets[0]);
    const [first, second] = byOffset;
    const last = byOffset[byOffset.length - 1];
    const lastBytes = json()[last].data_offsets[1] - json()[last].data_offsets[0];
    const cases: Array<[string, unknown, RegExp]> = [
      ['empty file', new Uint8Array(0), /shorter than the 8-byte header length/],
      ['4 bytes', file.slice(0, 4), /shorter than the 8-byte header length/],
      ['header cut short', file.slice(0, 40), /header length \d+ exceeds the file/],
      ['data cut in half', file.slice(0, 8 + n + Math.floor((file.length - 8 - n) / 2)), /outside the \d+-byte data section/],
      ['last byte missing', file.slice(0, file.length - 1), /outside the \d+-byte data section/],
      ['one byte extra', Uint8Array.from([...file, 0]), /data section is \d+ bytes but the tensors cover \d+/],
      ['header length 2^64 - 1', edited((_, v) => v.setBigUint64(0, 2n ** 64n - 1n, true)), /header length \d+ exceeds/],
      ['header length 2^53 + 1', edited((_, v) => v.setBigUint64(0, 2n ** 53n + 1n, true)), /header length \d+ exceeds/],
      ['header length 0', edited((_, v) => v.setBigUint64(0, 0n, true)), /header is not valid UTF-8 JSON/],
      ['header not JSON', edited((b) => b.fill(0x20, 9, 8 + n)), /header is not valid UTF-8 JSON/],
      ['header not UTF-8', edited((b) => (b[10] = 0xff)), /header is not valid UTF-8 JSON/],
      ['header is an array', framed('[1,2]   '), /header must be a JSON object/],
      ['header is null', framed('null    '), /header must be a JSON object/],
      [
        'overlapping offsets',
        rewrite((h) => {
          const len = h[second].data_offsets[1] - h[second].data_offsets[0];
          h[second].data_offsets = [h[first].data_offsets[0], h[first].data_offsets[0] + len];
        }),
        /overlap another tensor|hole/,
      ],
      ['offsets beyond the data', rewrite((h) => (h[first].data_offsets = [0, 1e12])), /outside the \d+-byte data section/],
      ['negative offset', rewrite((h) => (h[first].data_offsets = [-4, 0])), /data_offsets must be \[begin, end\]/],
      ['fractional offset', rewrite((h) => (h[first].data_offsets = [0.5, 4])), /data_offsets must be \[begin, end\]/],
      ['begin > end', rewrite((h) => (h[first].data_offsets = [8, 4])), /lie outside/],
      ['dtype "constructor"', rewrite((h) => (h[first].dtype = 'constructor')), /unknown dtype "constructor"/],
      ['dtype F16', rewrite((h) => (h[first].dtype = 'F16')), /unknown dtype "F16"/],
      ['shape with -1', rewrite((h) => (h[first].shape = [-1, ...h[first].shape.slice(1)])), /shape must be a list of non-negative integers/],
      ['shape × dtype ≠ bytes', rewrite((h) => (h[first].shape = [...h[first].shape, 2])), /needs \d+ bytes, data_offsets give \d+/],
      ['shape overflowing 2^53 bytes', rewrite((h) => (h[first].shape = [2 ** 30, 2 ** 30, 2 ** 30])), /needs .* bytes/],
      [
        'a tensor renamed',
        rewrite((h) => ((h.extra = h[first]), delete h[first])),
        new RegExp(`does not fit this model: missing \\[${esc(first)}\\], unexpected \\[extra\\]`),
      ],
      ['a tensor missing', rewrite((h) => delete h[last], file.subarray(8 + n, file.length - lastBytes)), new RegExp(`missing \\[${esc(last)}\\]`)],
      [
        'a tensor of another shape (same bytes)',
        rewrite((h) => (h[first].shape = [h[first].shape.reduce((a: number, b: number) => a * b, 1)])),
        new RegExp(`importWeights: ${esc(first)} must be \\[`),
      ],
      ['a tensor as I32', rewrite((h) => (h[first].dtype = 'I32')), /weights must be F32 or F64/],
      ['NaN in a weight', edited((_, v) => v.setFloat32(8 + n + 4 * 3, NaN, true)), /\[3\] is NaN in the file; weights must be finite/],
      ['not bytes (a string)', 'model.safetensors', /expected the file as a Uint8Array/],
      ['not bytes (an ArrayBuffer)', file.slice().buffer, /expected the file as a Uint8Array/],
      ['no model', null, /importWeights: model must have namedVariables/],
    ];
    const goodTarget = snapshot(target);
    for (const [name, bytes, names] of cases) {
      await check('safetensors', name, {
        run: () => (name === 'no model' ? importWeights(null as never, file) : importWeights(target, bytes as Uint8Array)),
        expect: 'refuse',
        names,
        resources: () => [tensors()],
        after: () => sameBits(goodTarget, snapshot(target)),
      });
    }
    await check('safetensors', 'the good file after all that', {
      run: () => (importWeights(target, file), snapshot(target)),
      expect: 'ok',
      check: (w) => sameBits(snapshot(source), w),
      resources: () => [tensors()],
    });
    expect(parseSafetensors(file).tensors.size).toBe(names.length);
    source.dispose();
    target.dispose();
  });

  it('checkpoints: truncated, corrupt, inconsistent or mismatched files are refused, model and optimizer unchanged', async () => {
    const model = new PerformerLM(K, config);
    const optimizer = tf.train.adam(1e-2);
    const rng = new Rng(5);
    new SlimTrainer(model, { sliceLength: 3, optimizer }).step({ tokens: Int32Array.from({ length: 18 }, () => Math.floor(rng.next() * 7)), batch: 2 });
    const bytes = await encodeCheckpoint(model, optimizer);
    const into = new PerformerLM(K, { ...config, seed: 4 });
    const intoOpt = tf.train.adam(1e-2);
    new SlimTrainer(into, { sliceLength: 3, optimizer: intoOpt }).step({ tokens: Int32Array.from({ length: 18 }, (_, i) => i % 7), batch: 2 });
    const optState = async () => (await intoOpt.getWeights()).map((w) => Float32Array.from(w.tensor.dataSync()));
    const goodInto = { weights: snapshot(into), opt: await optState(), omega: into.omegas.map((w) => w?.slice()) };

    const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const headerLength = view(bytes).getUint32(12, true);
    const json = () => JSON.parse(new TextDecoder().decode(bytes.subarray(24, 24 + headerLength)));
    /** Rebuilds the checkpoint with an edited header (and payload) and a valid CRC, so that the reader's own checks are what refuses it. */
    const reframe = (edit: (h: any) => void, payloadEdit?: (p: DataView) => void) => {
      const h = json();
      edit(h);
      const head = new TextEncoder().encode(JSON.stringify(h));
      const payload = bytes.slice(Math.ceil((24 + headerLength) / 8) * 8, bytes.length - 4);
      payloadEdit?.(view(payload));
      const start = Math.ceil((24 + head.length) / 8) * 8;
      const out = new Uint8Array(start + payload.length + 4);
      out.set(bytes.subarray(0, 24), 0);
      view(out).setUint32(12, head.length, true);
      out.set(head, 24);
      out.set(payload, start);
      view(out).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
      return out;
    };
    const edited = (f: (v: DataView) => void) => {
      const b = bytes.slice();
      f(view(b));
      return b;
    };
    const t0 = json().tensors[0].name as string;
    const cases: Array<[string, unknown, RegExp]> = [
      ['empty', new Uint8Array(0), /wrong magic bytes|truncated/],
      ['magic only', bytes.slice(0, 8), /truncated/],
      ['truncated by one byte', bytes.slice(0, bytes.length - 1), /checkpoint truncated: expected \d+ bytes/],
      ['truncated to half', bytes.slice(0, bytes.length >> 1), /checkpoint truncated/],
      ['one byte extra', Uint8Array.from([...bytes, 0]), /checkpoint corrupt: \d+ bytes, but its frame describes \d+/],
      ['a flipped payload bit', edited((v) => v.setUint8(bytes.length - 9, v.getUint8(bytes.length - 9) ^ 1)), /checksum mismatch/],
      ['wrong magic', edited((v) => v.setUint8(0, 0x58)), /wrong magic bytes/],
      ['version 2', edited((v) => v.setUint32(8, 2, true)), /format version 2 is not supported/],
      ['header length 2^32 - 1', edited((v) => v.setUint32(12, 0xffffffff, true)), /checkpoint truncated/],
      ['payload length 2^64 - 1', edited((v) => v.setBigUint64(16, 2n ** 64n - 1n, true)), /checkpoint truncated/],
      ['not bytes', 'model.ckpt', /expected a Uint8Array/],
      ['overlapping tensors', reframe((h) => (h.tensors[1].offset = h.tensors[0].offset)), /overlap in the payload/],
      ['tensor beyond the payload', reframe((h) => (h.tensors[0].offset = 1e9)), /does not fit the \d+-byte payload/],
      ['tensor at a negative offset', reframe((h) => (h.tensors[0].offset = -8)), /does not fit/],
      ['tensor shape a string', reframe((h) => (h.tensors[0].shape = 'big')), /has shape "big", not a list/],
      ['tensor bytes ≠ shape', reframe((h) => (h.tensors[0].bytes += 4)), /does not fit/],
      ['tensor listed twice', reframe((h) => h.tensors.push({ ...h.tensors[0] })), /appears twice/],
      ['tensor without a name', reframe((h) => delete h.tensors[0].name), /has no name/],
      ['header without config', reframe((h) => delete h.config), /no model config/],
      ['header format foreign', reframe((h) => (h.format = 'other')), /not a slim-performer checkpoint/],
      [
        'a weight missing',
        reframe((h) => (h.tensors = h.tensors.filter((t: { name: string }) => t.name !== t0))),
        new RegExp(`checkpoint lacks tensor ${esc(t0)}`),
      ],
      ['a weight of another shape', reframe((h) => (h.tensors[0].shape = [h.tensors[0].bytes / 4])), /checkpoint shape mismatch/],
      [
        'NaN in a weight',
        reframe(
          () => undefined,
          (p) => p.setFloat32(8, NaN, true),
        ),
        /is NaN; weights and optimizer state must be finite/,
      ],
      ['config: another dModel', reframe((h) => (h.config.dModel = 16)), /checkpoint config mismatch: dModel is 16/],
      ['optimizer: another class', reframe((h) => (h.optimizer.className = 'SGD')), /checkpoint optimizer mismatch/],
      ['optimizer: none saved', reframe((h) => (h.optimizer = null)), /holds no optimizer state/],
      ['optimizer: slot of no variable', reframe((h) => h.optimizer.weights.push('optimizer/nothing/m')), /names no variable of this model/],
      ['optimizer: iterations "x"', reframe((h) => (h.optimizer.iterations = 'x')), /optimizer\.iterations is x/],
      ['optimizer: scalars missing', reframe((h) => delete h.optimizer.scalars), /optimizer\.scalars must map/],
    ];
    const state = async () => {
      sameBits(goodInto.weights, snapshot(into));
      sameBits(goodInto.opt, await optState(), 'optimizer state');
      sameBits(
        goodInto.omega,
        into.omegas.map((w) => w?.slice()),
        'random features',
      );
    };
    for (const [name, b, names] of cases) {
      await check('checkpoint', name, {
        run: async () => restoreCheckpoint(decodeCheckpoint(b as Uint8Array), into, intoOpt),
        expect: 'refuse',
        names,
        resources: () => [tensors()],
        after: state,
      });
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'slim-rel-'));
    try {
      await check('checkpoint', 'readCheckpoint: missing file', {
        run: () => readCheckpoint(path.join(dir, 'nope.ckpt')),
        expect: 'refuse',
        names: /nope\.ckpt/,
        after: state,
      });
      writeFileSync(path.join(dir, 'short.ckpt'), bytes.subarray(0, 30));
      await check('checkpoint', 'readCheckpoint: truncated file names the path', {
        run: () => readCheckpoint(path.join(dir, 'short.ckpt')),
        expect: 'refuse',
        names: /short\.ckpt: checkpoint truncated/,
        after: state,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await check('checkpoint', 'the good file restores exactly', {
      run: async () => (await restoreCheckpoint(decodeCheckpoint(bytes), into, intoOpt), snapshot(into)),
      expect: 'ok',
      check: (w) => sameBits(snapshot(model), w),
    });
    for (const m of [model, into]) m.dispose();
    optimizer.dispose();
    intoOpt.dispose();
  });
});

// ------------------------------------------------------------------------------------------
// 5. the worker pool

describe('worker pool (src/parallel)', () => {
  const dims = { b: 2, h: 2, t: 33, d: 8, m: 12, dv: 5 };
  const p = makeProblem('favor', dims, 41);
  /** Long enough (~100 ms) that a worker can be killed while it runs. */
  const long = makeProblem('favor', { b: 1, h: 2, t: 24_576, d: 16, m: 32, dv: 16 }, 42);
  let pool: KernelPool;
  let reference: { out: Float32Array; state: AttnState };
  beforeAll(async () => {
    pool = await createPool({ threads: 2 });
    reference = K.causalForward({ ...p, chunk: 8 });
  });
  afterAll(() => pool?.dispose());
  const good = () => pool.causalForward({ ...p, chunk: 8 });
  const same = async () => sameBits(reference, await good());
  type Slots = { slots: Array<{ terminate(): void; dead?: Error }> };

  it('bad arguments come back as the kernel ArgError', async () => {
    await check('pool', 'q one short (split call)', {
      run: () => pool.causalForward({ ...p, q: p.q.slice(1) }),
      expect: 'refuse',
      names: /causalForward: q must be a Float32Array/,
      after: same,
    });
    const r = await rec.probe('pool', 'refusal keeps its class', {
      run: () => pool.causalForward({ ...p, chunk: 0 }).catch((e) => ({ isArgError: e instanceof ArgError, message: String(e.message) })),
      expect: 'ok',
      check: (x) => expect(x).toEqual({ isArgError: true, message: expect.stringMatching(/chunk must be a positive integer/) }),
      after: same,
    });
    expect(isFailure(r), r.detail).toBe(false);
    await check('pool', 'empty stateOut', {
      run: () => pool.causalBackward({ ...p, chunk: 8, stateOut: emptyState(dims, 'favor'), dOut: upstream(dims, 1).dOut }),
      expect: 'refuse',
      names: /stateOut\.offset\[0\] is -Infinity/,
      after: same,
    });
    await check('pool', 'arguments = null', { run: () => pool.causalForward(null as never), expect: 'refuse', names: /arguments object/, after: same });
  });

  it('a worker that dies mid-call: the call rejects clearly, the pool replaces the worker', async () => {
    await check('pool', 'worker killed during a call', {
      run: async () => {
        const call = pool.causalForward({ ...long, chunk: 64 });
        (pool as unknown as Slots).slots[0].terminate(); // as if it crashed
        return call;
      },
      expect: 'refuse',
      names: /worker exited \(code \d+\) while calls were pending/,
      after: async () => {
        await same();
        expect(pool.restarts).toBe(1);
      },
    });
    await check('pool', 'worker killed while idle', {
      run: async () => {
        const slots = (pool as unknown as Slots).slots;
        slots[1].terminate();
        for (let i = 0; i < 200 && !slots[1].dead; i++) await new Promise((r) => setTimeout(r, 10));
        return (await good()).out;
      },
      expect: 'ok',
      check: (out) => sameBits(reference.out, out),
      after: async () => {
        await same();
        expect(pool.restarts).toBe(2);
      },
    });
  });

  it('dispose while calls are in flight: they reject, none hangs, the pool is clearly closed', async () => {
    const doomed = await createPool({ threads: 2 });
    const calls: Promise<unknown>[] = [
      doomed.causalForward({ ...long, chunk: 64 }),
      doomed.bidirectionalForward({ ...long, chunk: 64 }),
      doomed.causalForward({ ...p, chunk: 8 }),
    ];
    // dispose rejects them before check() awaits them: mark them handled now (awaiting still rejects)
    for (const c of calls) c.catch(() => {});
    await doomed.dispose();
    for (const [i, c] of calls.entries()) {
      await check('pool', `call ${i} in flight at dispose`, {
        run: () => c,
        expect: 'refuse',
        names: /disposed while this call was running/,
        timeoutMs: 10_000,
        after: same,
      });
    }
    await check('pool', 'call after dispose', {
      run: () => doomed.causalForward({ ...p, chunk: 8 }),
      expect: 'refuse',
      names: /kernel pool was disposed/,
      after: same,
    });
  });
});

// ------------------------------------------------------------------------------------------
// 6. the CLI: bad flags and files → one line on stderr, a non-zero exit, no stack trace

interface CliRun {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

let cliRuns: Promise<Map<string, CliRun>> | undefined;
let cliDir = '';
const CLI_CASES: Array<{ name: string; args: (f: Record<string, string>) => string[]; ok?: boolean; names?: RegExp }> = [
  { name: 'good eval', args: (f) => ['eval', '--weights', f.model, '--text', f.ids, '--slice', '3'], ok: true },
  { name: 'good generate', args: (f) => ['generate', '--weights', f.model, '--prompt', '1 2', '--tokens', '4', '--seed', '3'], ok: true },
  { name: 'no command', args: () => [], names: /^usage: cli eval/ },
  { name: 'unknown command', args: () => ['train'], names: /^usage: .*unknown command "train"/ },
  { name: 'positional argument', args: (f) => ['eval', f.model], names: /^error: unexpected argument/ },
  { name: 'unknown flag', args: (f) => ['eval', '--weights', f.model, '--text', f.ids, '--slices', '3'], names: /^error: unknown flag --slices for eval/ },
  { name: 'flag without a value', args: (f) => ['eval', '--text', f.ids, '--weights'], names: /^error: --weights needs a value/ },
  { name: 'missing --weights', args: (f) => ['eval', '--text', f.ids], names: /^error: --weights <file> is required/ },
  { name: 'missing --text', args: (f) => ['eval', '--weights', f.model], names: /^error: --text <file> is required/ },
  {
    name: '--weights file missing',
    args: (f) => ['eval', '--weights', path.join(f.dir, 'nope.safetensors'), '--text', f.ids],
    names: /^error: cannot read --weights .*nope\.safetensors: no such file/,
  },
  { name: '--weights a directory', args: (f) => ['eval', '--weights', f.dir, '--text', f.ids], names: /^error: cannot read --weights .*: it is a directory/ },
  { name: '--weights not safetensors', args: (f) => ['eval', '--weights', f.ids, '--text', f.ids], names: /^error: .*ids\.txt: safetensors: / },
  {
    name: '--weights truncated',
    args: (f) => ['eval', '--weights', f.truncated, '--text', f.ids],
    names: /^error: .*truncated\.safetensors: safetensors: .*outside|exceeds/,
  },
  { name: '--weights without config', args: (f) => ['eval', '--weights', f.noconfig, '--text', f.ids], names: /^error: .*noconfig\.safetensors: no "config"/ },
  {
    name: '--text missing file',
    args: (f) => ['eval', '--weights', f.model, '--text', path.join(f.dir, 'nope.txt')],
    names: /^error: cannot read --text .*nope\.txt: no such file/,
  },
  { name: '--text with a token ≥ vocab', args: (f) => ['eval', '--weights', f.model, '--text', f.badIds], names: /^error: --text .*token 2 is "9".*\[0, 7\)/ },
  {
    name: '--text with one token',
    args: (f) => ['eval', '--weights', f.model, '--text', f.oneId],
    names: /^error: --text .*holds 1 token\(s\); eval needs at least 2/,
  },
  { name: '--slice 0', args: (f) => ['eval', '--weights', f.model, '--text', f.ids, '--slice', '0'], names: /^error: --slice must be an integer ≥ 1, got "0"/ },
  { name: '--slice abc', args: (f) => ['eval', '--weights', f.model, '--text', f.ids, '--slice', 'abc'], names: /^error: --slice must be an integer/ },
  { name: '--tokens -1', args: (f) => ['generate', '--weights', f.model, '--prompt', '1', '--tokens', '-1'], names: /^error: --tokens must be an integer ≥ 0/ },
  {
    name: '--temperature NaN',
    args: (f) => ['generate', '--weights', f.model, '--prompt', '1', '--temperature', 'NaN'],
    names: /^error: --temperature must be a finite number/,
  },
  { name: '--top-k 1.5', args: (f) => ['generate', '--weights', f.model, '--prompt', '1', '--top-k', '1.5'], names: /^error: --top-k must be an integer/ },
  { name: 'missing --prompt', args: (f) => ['generate', '--weights', f.model], names: /^error: --prompt <text> is required/ },
  { name: 'empty --prompt', args: (f) => ['generate', '--weights', f.model, '--prompt', ' '], names: /^error: --prompt must hold at least one token/ },
  { name: '--prompt token out of range', args: (f) => ['generate', '--weights', f.model, '--prompt', '1 -3'], names: /^error: --prompt: token 1 is "-3"/ },
  { name: 'a flag twice', args: (f) => ['eval', '--weights', f.model, '--weights', f.model, '--text', f.ids], names: /^error: --weights is given twice/ },
  {
    name: 'NaN weights',
    args: (f) => ['eval', '--weights', f.nan, '--text', f.ids],
    names: /^error: .*nan\.safetensors: importWeights: .* is NaN in the file/,
  },
];

function startCli(): void {
  cliDir = mkdtempSync(path.join(tmpdir(), 'slim-cli-'));
  const config = { vocabSize: 7, dModel: 8, heads: 2, layers: 1, ffn: 8, feature: 'favor' as const, features: 6, chunk: 4, seed: 2 };
  const model = new PerformerLM(K, config);
  const bytes = exportWeights(model, { config: JSON.stringify({ architecture: 'performer-lm', ...config }) });
  const noConfig = exportWeights(model);
  const nan = bytes.slice();
  const n = Number(new DataView(nan.buffer).getBigUint64(0, true));
  new DataView(nan.buffer).setFloat32(8 + n, NaN, true);
  model.dispose();
  const f: Record<string, string> = { dir: cliDir };
  const put = (name: string, data: Uint8Array | string) => {
    f[name.split('.')[0]] = path.join(cliDir, name);
    writeFileSync(f[name.split('.')[0]], data);
  };
  put('model.safetensors', bytes);
  put('truncated.safetensors', bytes.subarray(0, bytes.length - 10));
  put('noconfig.safetensors', noConfig);
  put('nan.safetensors', nan);
  put('ids.txt', '1 2 3 4 5 6 0 1 2');
  put('badIds.txt', '1 2 9 4');
  put('oneId.txt', '3');
  const run = (args: string[]) =>
    new Promise<CliRun>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
        cwd: ROOT,
        env: { ...process.env, NODE_OPTIONS: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ args, code, stdout, stderr });
      });
    });
  // At most 3 at a time: each is a Node start-up plus TF.js import.
  cliRuns = (async () => {
    const out = new Map<string, CliRun>();
    const queue = [...CLI_CASES];
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let c = queue.shift(); c; c = queue.shift()) out.set(c.name, await run(c.args(f)));
      }),
    );
    return out;
  })();
}

describe('CLI (src/cli.ts)', () => {
  afterAll(() => rmSync(cliDir, { recursive: true, force: true }));

  it('refuses bad flags and files with one line on stderr and a non-zero exit, no stack trace', async () => {
    const runs = await cliRuns!;
    const goodEval = runs.get('good eval')!;
    expect(goodEval.code, goodEval.stderr).toBe(0);
    const evalOut = JSON.parse(goodEval.stdout);
    expect(evalOut.tokens).toBe(8);
    expect(Number.isFinite(evalOut.loss) && evalOut.loss > 0).toBe(true);
    const goodGen = runs.get('good generate')!;
    expect(goodGen.code, goodGen.stderr).toBe(0);
    expect(goodGen.stdout.trim()).toMatch(/^\d+ \d+ \d+ \d+$/);
    for (const c of CLI_CASES.filter((c) => !c.ok)) {
      const r = runs.get(c.name)!;
      await check('cli', c.name, {
        run: () => {
          const lines = r.stderr.trim().split('\n');
          if (r.code === 0) return { code: r.code, stdout: r.stdout };
          if (r.code === null) throw new Error(`killed (hang): ${r.stderr}`);
          if (lines.length !== 1) throw new Error(`${lines.length} lines on stderr: ${r.stderr}`);
          if (/\n\s+at |\bat .*\.ts:\d+/.test(r.stderr)) throw new Error(`stack trace: ${r.stderr}`);
          throw new Error(lines[0]); // the one-line message, classified by the harness
        },
        expect: 'refuse',
        names: c.names,
      });
    }
    // "The next good call works and returns the same result": the good runs ran alongside.
    expect(runs.size).toBe(CLI_CASES.length);
  });
});

// ------------------------------------------------------------------------------------------

describe('summary', () => {
  it('prints the outcomes: no silent NaN, crash, leak or lost state', () => {
    console.log(rec.summary('bad-input suite'));
    const c = rec.counts();
    expect(c['silent NaN']).toBe(0);
    expect(c.crash).toBe(0);
    expect(c.leak).toBe(0);
    expect(c['state lost']).toBe(0);
    expect(c.unclear + c.accepted + c.wrong).toBe(0);
    expect(c.cases).toBeGreaterThan(600);
  });
});

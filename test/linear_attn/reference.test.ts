import { describe, expect, it } from 'vitest';
import type { AttnState, Dims, FeatureMap, StateGrad } from '../../src/kernels/types.ts';
import {
  emptyState,
  featureBackward,
  refBidirectionalBackward,
  refBidirectionalForward,
  refCausalBackward,
  refCausalBackwardRecurrent,
  refCausalBackwardFeatures,
  refCausalForward,
  refCausalForwardFeatures,
  refCausalForwardRecurrent,
  refFeatureMap,
  refRecurrentStep,
} from '../../src/reference/index.ts';
import { assertClose, finiteDiff } from '../util/assert.ts';
import { Rng } from '../util/rng.ts';

interface Case {
  name: string;
  feature: FeatureMap;
  dims: Dims;
  withOmega: boolean;
}

const CASES: Case[] = [
  { name: 'favor', feature: 'favor', dims: { b: 2, h: 2, t: 7, d: 4, m: 6, dv: 3 }, withOmega: true },
  { name: 'relu (identity)', feature: 'relu', dims: { b: 1, h: 2, t: 9, d: 4, m: 4, dv: 5 }, withOmega: false },
  { name: 'relu (omega)', feature: 'relu', dims: { b: 2, h: 1, t: 6, d: 3, m: 5, dv: 2 }, withOmega: true },
  { name: 'elu1', feature: 'elu1', dims: { b: 2, h: 2, t: 5, d: 4, m: 5, dv: 3 }, withOmega: true },
  { name: 'sqr', feature: 'sqr', dims: { b: 1, h: 2, t: 8, d: 3, m: 3, dv: 4 }, withOmega: false },
];

const PREFIX_T = 3;

interface Problem {
  feature: FeatureMap;
  dims: Dims;
  omega?: Float32Array; // [h, m, d]
  q: Float64Array; // [b, h, t, d]
  k: Float64Array; // [b, h, t, d]
  v: Float64Array; // [b, h, t, dv]
  state?: AttnState;
  /** the prefix that produced `state` (same layout, t = PREFIX_T) */
  prefix?: { q: Float64Array; k: Float64Array; v: Float64Array };
}

function dotAll(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}

/** Independent naive feature map of one head: `x: [t, d]`, `omega: [m, d]` → φ `[t, m]`, no offsets. */
function naiveFeatures(x: ArrayLike<number>, omega: ArrayLike<number> | undefined, f: FeatureMap, d: number, m: number) {
  const t = x.length / d;
  const phi = new Float64Array(t * m);
  const s = f === 'favor' ? d ** -0.25 : 1;
  for (let i = 0; i < t; i++) {
    let sq = 0;
    for (let c = 0; c < d; c++) sq += (x[i * d + c] * s) ** 2;
    for (let r = 0; r < m; r++) {
      let u = 0;
      if (omega === undefined) u = x[i * d + r] * s;
      else for (let c = 0; c < d; c++) u += omega[r * d + c] * x[i * d + c] * s;
      phi[i * m + r] = f === 'favor' ? Math.exp(u - sq / 2) : f === 'relu' ? Math.max(u, 0) : f === 'elu1' ? (u > 0 ? u + 1 : Math.exp(u)) : u * u;
    }
  }
  return phi;
}

/** Projections u = ωx (or x) of every row of `x: [b, h, t, d]`, for kink checks. */
function projections(x: Float64Array, omega: Float32Array | undefined, dims: Dims): Float64Array {
  const { b, h, t, d, m } = dims;
  const out = new Float64Array(b * h * t * m);
  for (let bh = 0; bh < b * h; bh++) {
    const hi = bh % h;
    const om = omega?.subarray(hi * m * d, (hi + 1) * m * d);
    out.set(refFeatureMap(x.subarray(bh * t * d, (bh + 1) * t * d), om, 'relu', d, m).logits, bh * t * m);
  }
  return out;
}

/** Normal q/k, redrawn for relu until every projection is at least 1e-3 away from the kink. */
function drawQK(rng: Rng, dims: Dims, feature: FeatureMap, omega: Float32Array | undefined, t: number) {
  const n = dims.b * dims.h * t * dims.d;
  const dt = { ...dims, t };
  for (;;) {
    const q = rng.normals(n);
    const k = rng.normals(n);
    if (feature !== 'relu') return { q, k };
    const away = (x: Float64Array) => projections(x, omega, dt).every((u) => Math.abs(u) >= 1e-3);
    if (away(q) && away(k)) return { q, k };
  }
}

function makeProblem(c: Case, seed: number, withState: boolean): Problem {
  const rng = new Rng(seed);
  const { b, h, t, d, m, dv } = c.dims;
  const omega = c.withOmega ? Float32Array.from(rng.normals(h * m * d)) : undefined;
  const { q, k } = drawQK(rng, c.dims, c.feature, omega, t);
  const v = rng.normals(b * h * t * dv);
  const p: Problem = { feature: c.feature, dims: c.dims, omega, q, k, v };
  if (withState) {
    const pre = drawQK(rng, c.dims, c.feature, omega, PREFIX_T);
    const pv = rng.normals(b * h * PREFIX_T * dv);
    p.prefix = { q: pre.q, k: pre.k, v: pv };
    p.state = refCausalForward({
      feature: c.feature,
      omega,
      q: pre.q,
      k: pre.k,
      v: pv,
      dims: { ...c.dims, t: PREFIX_T },
    }).state;
  }
  return p;
}

/** Tokens [t0, t1) of `x: [b, h, t, w]`. */
function sliceT(x: Float64Array, dims: Dims, w: number, t0: number, t1: number): Float64Array {
  const { b, h, t } = dims;
  const out = new Float64Array(b * h * (t1 - t0) * w);
  for (let bh = 0; bh < b * h; bh++) out.set(x.subarray((bh * t + t0) * w, (bh * t + t1) * w), bh * (t1 - t0) * w);
  return out;
}

/** Concatenates `[b, h, ta, w]` and `[b, h, tb, w]` along t. */
function concatT(a: Float64Array, ta: number, c: Float64Array, tb: number, bh: number, w: number): Float64Array {
  const out = new Float64Array(bh * (ta + tb) * w);
  for (let i = 0; i < bh; i++) {
    out.set(a.subarray(i * ta * w, (i + 1) * ta * w), i * (ta + tb) * w);
    out.set(c.subarray(i * tb * w, (i + 1) * tb * w), i * (ta + tb) * w + ta * w);
  }
  return out;
}

function assertStateClose(name: string, ref: AttnState, got: AttnState, tol: number): void {
  assertClose(`${name}.S`, ref.S, got.S, tol);
  assertClose(`${name}.z`, ref.z, got.z, tol);
  expect(Array.from(got.offset)).toEqual(Array.from(ref.offset));
}

/** Random upstream gradients for out and the output state. */
function upstream(rng: Rng, dims: Dims) {
  const { b, h, t, m, dv } = dims;
  return {
    dOut: rng.normals(b * h * t * dv),
    dState: { S: rng.normals(b * h * m * dv), z: rng.normals(b * h * m) } as StateGrad,
  };
}

/**
 * L = ⟨dOut, out⟩ + ⟨G, S_out⟩ + ⟨Gz, z_out⟩ with the output state moved to the frame `baseOffset`,
 * so that a perturbation that moves the running key offset m_T does not change L (the backward
 * treats offsets as constants; the state in a fixed frame is what it differentiates).
 */
function causalLoss(
  p: Problem,
  x: { q: Float64Array; k: Float64Array; v: Float64Array; S: Float64Array; z: Float64Array; offset: Float64Array },
  dOut: Float64Array,
  dState: StateGrad,
  baseOffset: Float64Array,
): number {
  const { m, dv } = p.dims;
  const state = { S: x.S, z: x.z, offset: x.offset };
  const r = refCausalForward({ feature: p.feature, omega: p.omega, q: x.q, k: x.k, v: x.v, dims: p.dims, state });
  let L = dotAll(dOut, r.out);
  for (let bh = 0; bh < baseOffset.length; bh++) {
    const off = r.state.offset[bh];
    const f = off === baseOffset[bh] ? 1 : Math.exp(off - baseOffset[bh]);
    L += f * dotAll(dState.S.subarray(bh * m * dv, (bh + 1) * m * dv), r.state.S.subarray(bh * m * dv, (bh + 1) * m * dv));
    L += f * dotAll(dState.z.subarray(bh * m, (bh + 1) * m), r.state.z.subarray(bh * m, (bh + 1) * m));
  }
  return L;
}

/** Compares refCausalBackward with central finite differences of {@link causalLoss}. */
function checkCausalBackward(p: Problem, seed: number): void {
  const rng = new Rng(seed);
  const { dOut, dState } = upstream(rng, p.dims);
  const st = p.state ?? emptyState(p.dims, p.feature);
  const x = {
    q: Float64Array.from(p.q),
    k: Float64Array.from(p.k),
    v: Float64Array.from(p.v),
    S: Float64Array.from(st.S),
    z: Float64Array.from(st.z),
    offset: Float64Array.from(st.offset),
  };
  const base = refCausalForward({ ...p, state: st });
  const g = refCausalBackward({ ...p, state: st, dOut, dState });
  const L = () => causalLoss(p, x, dOut, dState, base.state.offset);
  const tol = 1e-6;
  const atol = 1e-8;
  assertClose('dq', finiteDiff(L, x.q), g.dq, tol, atol);
  assertClose('dk', finiteDiff(L, x.k), g.dk, tol, atol);
  assertClose('dv', finiteDiff(L, x.v), g.dv, tol, atol);
  assertClose('dState.S', finiteDiff(L, x.S), g.dState.S, tol, atol);
  assertClose('dState.z', finiteDiff(L, x.z), g.dState.z, tol, atol);
  for (const a of [g.dq, g.dk, g.dv, g.dState.S, g.dState.z]) expect(a.every(Number.isFinite)).toBe(true);
}

describe('reference: feature map', () => {
  it('matches the naive definitions for every map', () => {
    const rng = new Rng(11);
    const d = 4;
    const m = 6;
    const x = rng.normals(5 * d);
    const omega = rng.normals(m * d);
    for (const f of ['favor', 'relu', 'elu1', 'sqr'] as const) {
      const { logits } = refFeatureMap(x, omega, f, d, m);
      const phi = logits.map((l) => (f === 'favor' ? Math.exp(l) : f === 'relu' ? Math.max(l, 0) : f === 'elu1' ? (l > 0 ? l + 1 : Math.exp(l)) : l * l));
      assertClose(`phi ${f}`, naiveFeatures(x, omega, f, d, m), phi, 1e-14);
    }
    expect(Array.from(refFeatureMap(x, undefined, 'relu', d, d).logits)).toEqual(Array.from(x));
    expect(() => refFeatureMap(x, undefined, 'favor', d, m)).toThrow(/omega/);
    expect(() => refFeatureMap(x, undefined, 'relu', d, m)).toThrow(/omega/);
  });
});

describe('reference: causal forward', () => {
  for (const c of CASES) {
    for (const withState of [false, true]) {
      it(`quadratic == recurrent, ${c.name}, ${withState ? 'with' : 'without'} state`, () => {
        const p = makeProblem(c, 100, withState);
        const a = refCausalForward(p);
        const r = refCausalForwardRecurrent(p);
        assertClose('out', a.out, r.out, 1e-12);
        assertStateClose('state', a.state, r.state, 1e-12);
        expect(a.out.every(Number.isFinite)).toBe(true);
        if (c.feature === 'favor') expect(a.state.offset.every(Number.isFinite)).toBe(true);
        else expect(Array.from(a.state.offset)).toEqual(Array.from(p.state?.offset ?? new Float64Array(c.dims.b * c.dims.h)));
      });
    }

    it(`equals a naive unstabilised full-sequence computation, ${c.name}`, () => {
      const p = makeProblem(c, 200, true);
      const { b, h, t, d, m, dv } = p.dims;
      const pre = p.prefix!;
      const T = PREFIX_T + t;
      const bh = b * h;
      const qAll = concatT(pre.q, PREFIX_T, p.q, t, bh, d);
      const kAll = concatT(pre.k, PREFIX_T, p.k, t, bh, d);
      const vAll = concatT(pre.v, PREFIX_T, p.v, t, bh, dv);
      const got = refCausalForward(p);
      for (let s = 0; s < bh; s++) {
        const om = p.omega?.subarray((s % h) * m * d, ((s % h) + 1) * m * d);
        const fq = naiveFeatures(qAll.subarray(s * T * d, (s + 1) * T * d), om, c.feature, d, m);
        const fk = naiveFeatures(kAll.subarray(s * T * d, (s + 1) * T * d), om, c.feature, d, m);
        const v = vAll.subarray(s * T * dv, (s + 1) * T * dv);
        const want = new Float64Array(t * dv);
        for (let i = PREFIX_T; i < T; i++) {
          const num = new Float64Array(dv);
          let den = 0;
          for (let j = 0; j <= i; j++) {
            let qk = 0;
            for (let r = 0; r < m; r++) qk += fq[i * m + r] * fk[j * m + r];
            den += qk;
            for (let cc = 0; cc < dv; cc++) num[cc] += qk * v[j * dv + cc];
          }
          for (let cc = 0; cc < dv; cc++) want[(i - PREFIX_T) * dv + cc] = den === 0 ? 0 : num[cc] / den;
        }
        assertClose(`out[${s}]`, want, got.out.subarray(s * t * dv, (s + 1) * t * dv), 1e-12);
        // state: Σ_j φk_j v_jᵀ over the whole sequence, in the absolute frame
        const frame = c.feature === 'favor' ? Math.exp(got.state.offset[s]) : 1;
        const S = new Float64Array(m * dv);
        for (let j = 0; j < T; j++) {
          for (let r = 0; r < m; r++) for (let cc = 0; cc < dv; cc++) S[r * dv + cc] += fk[j * m + r] * v[j * dv + cc];
        }
        const gotS = got.state.S.subarray(s * m * dv, (s + 1) * m * dv).map((x) => x * frame);
        assertClose(`S[${s}]`, S, gotS, 1e-12);
      }
    });

    it(`split-and-resume equals one call, ${c.name}`, () => {
      const p = makeProblem(c, 300, true);
      const { t, d, dv } = p.dims;
      const whole = refCausalForward(p);
      for (const t1 of [0, 1, Math.floor(t / 2), t]) {
        const d1 = { ...p.dims, t: t1 };
        const d2 = { ...p.dims, t: t - t1 };
        const part = (dims: Dims, t0: number, te: number, state?: AttnState) =>
          refCausalForward({
            feature: p.feature,
            omega: p.omega,
            dims,
            state,
            q: sliceT(p.q, p.dims, d, t0, te),
            k: sliceT(p.k, p.dims, d, t0, te),
            v: sliceT(p.v, p.dims, dv, t0, te),
          });
        const a = part(d1, 0, t1, p.state);
        const b2 = part(d2, t1, t, a.state);
        assertClose(`out (t1 = ${t1})`, whole.out, concatT(a.out, t1, b2.out, t - t1, p.dims.b * p.dims.h, dv), 1e-12);
        assertStateClose(`state (t1 = ${t1})`, whole.state, b2.state, 1e-12);
      }
    });
  }

  it('favor stabiliser matches a log-space computation far outside the range of exp', () => {
    const c = CASES[0];
    const p = makeProblem(c, 400, true);
    // tokens near a common far-away point μ (|μ'|²/2 ≈ 900): every exp(ℓ) underflows, the offsets keep it exact
    const dir = new Rng(401).normals(p.dims.d);
    const mu = dir.map((x) => (60 * x) / Math.hypot(...dir)); // |μ| = 60, d = 4
    const big = (x: Float64Array) => x.map((y, i) => mu[i % p.dims.d] + 0.05 * y);
    const q = big(p.q);
    const k = big(p.k);
    const pre = p.prefix!;
    const dims0 = { ...p.dims, t: PREFIX_T };
    const state = refCausalForward({ ...p, q: big(pre.q), k: big(pre.k), v: pre.v, dims: dims0, state: undefined }).state;
    const { out } = refCausalForward({ ...p, q, k, state, eps: 0 });
    const { b, h, t, d, m, dv } = p.dims;
    const T = PREFIX_T + t;
    const qAll = concatT(big(pre.q), PREFIX_T, q, t, b * h, d);
    const kAll = concatT(big(pre.k), PREFIX_T, k, t, b * h, d);
    const vAll = concatT(pre.v, PREFIX_T, p.v, t, b * h, dv);
    let underflows = 0;
    for (let s = 0; s < b * h; s++) {
      const om = p.omega!.subarray((s % h) * m * d, ((s % h) + 1) * m * d);
      const lq = refFeatureMap(qAll.subarray(s * T * d, (s + 1) * T * d), om, 'favor', d, m).logits;
      const lk = refFeatureMap(kAll.subarray(s * T * d, (s + 1) * T * d), om, 'favor', d, m).logits;
      underflows += lk.filter((l) => Math.exp(l) === 0).length;
      const want = new Float64Array(t * dv);
      for (let i = PREFIX_T; i < T; i++) {
        // log w_ij = log Σ_r exp(ℓq_ir + ℓk_jr), then a softmax over j ≤ i
        const logw: number[] = [];
        for (let j = 0; j <= i; j++) {
          const terms = Array.from({ length: m }, (_, r) => lq[i * m + r] + lk[j * m + r]);
          const top = Math.max(...terms);
          logw.push(top + Math.log(terms.reduce((acc, x) => acc + Math.exp(x - top), 0)));
        }
        const top = Math.max(...logw);
        const w = logw.map((x) => Math.exp(x - top));
        const sw = w.reduce((acc, x) => acc + x, 0);
        for (let j = 0; j <= i; j++) {
          for (let cc = 0; cc < dv; cc++) want[(i - PREFIX_T) * dv + cc] += (w[j] / sw) * vAll[(s * T + j) * dv + cc];
        }
      }
      assertClose(`out[${s}]`, want, out.subarray(s * t * dv, (s + 1) * t * dv), 1e-10);
    }
    expect(underflows).toBe(b * h * T * m); // the naive computation would be 0/0
  });

  it('accepts float32 inputs (same result as their float64 values)', () => {
    const p = makeProblem(CASES[0], 500, true);
    const f32 = { q: Float32Array.from(p.q), k: Float32Array.from(p.k), v: Float32Array.from(p.v) };
    const a = refCausalForward({ ...p, ...f32 });
    const bb = refCausalForward({
      ...p,
      q: Float64Array.from(f32.q),
      k: Float64Array.from(f32.k),
      v: Float64Array.from(f32.v),
    });
    expect(a.out).toBeInstanceOf(Float64Array);
    expect(Array.from(a.out)).toEqual(Array.from(bb.out));
  });

  it('validates argument lengths, naming the argument', () => {
    const p = makeProblem(CASES[0], 600, false);
    expect(() => refCausalForward({ ...p, q: p.q.subarray(1) })).toThrow(/\bq\b/);
    expect(() => refCausalForward({ ...p, k: p.k.subarray(1) })).toThrow(/\bk\b/);
    expect(() => refCausalForward({ ...p, v: p.v.subarray(1) })).toThrow(/\bv\b/);
    expect(() => refCausalForward({ ...p, omega: undefined })).toThrow(/omega/);
    expect(() => refCausalForward({ ...p, omega: p.omega!.subarray(1) })).toThrow(/omega/);
    const st = emptyState(p.dims, 'favor');
    expect(() => refCausalForward({ ...p, state: { ...st, z: st.z.subarray(1) } })).toThrow(/state\.z/);
    expect(() => refCausalBackward({ ...p, dOut: new Float64Array(1) })).toThrow(/dOut/);
    expect(() => refCausalForward({ ...p, feature: 'relu', omega: undefined })).toThrow(/dims\.m/);
  });
});

describe('reference: causal backward', () => {
  for (const c of CASES) {
    for (const withState of [false, true]) {
      it(`matches finite differences, ${c.name}, ${withState ? 'with' : 'without'} state`, () => {
        const p = makeProblem(c, 700, withState);
        checkCausalBackward(p, 701);
      });
    }

    it(`split backward (state gradient chained) equals one call, ${c.name}`, () => {
      const p = makeProblem(c, 800, true);
      const { b, h, t, d, dv } = p.dims;
      const { dOut, dState } = upstream(new Rng(801), p.dims);
      const whole = refCausalBackward({ ...p, dOut, dState });
      const t1 = Math.floor(t / 2);
      const d1 = { ...p.dims, t: t1 };
      const d2 = { ...p.dims, t: t - t1 };
      const args = (dims: Dims, t0: number, te: number, state?: AttnState) => ({
        feature: p.feature,
        omega: p.omega,
        dims,
        state,
        q: sliceT(p.q, p.dims, d, t0, te),
        k: sliceT(p.k, p.dims, d, t0, te),
        v: sliceT(p.v, p.dims, dv, t0, te),
      });
      const mid = refCausalForward(args(d1, 0, t1, p.state)).state;
      const g2 = refCausalBackward({ ...args(d2, t1, t, mid), dOut: sliceT(dOut, p.dims, dv, t1, t), dState });
      const g1 = refCausalBackward({ ...args(d1, 0, t1, p.state), dOut: sliceT(dOut, p.dims, dv, 0, t1), dState: g2.dState });
      const bh = b * h;
      assertClose('dq', whole.dq, concatT(g1.dq, t1, g2.dq, t - t1, bh, d), 1e-12);
      assertClose('dk', whole.dk, concatT(g1.dk, t1, g2.dk, t - t1, bh, d), 1e-12);
      assertClose('dv', whole.dv, concatT(g1.dv, t1, g2.dv, t - t1, bh, dv), 1e-12);
      assertClose('dState.S', whole.dState.S, g1.dState.S, 1e-12);
      assertClose('dState.z', whole.dState.z, g1.dState.z, 1e-12);
    });
  }
});

describe('reference: stored-state recurrent backward', () => {
  for (const c of CASES) {
    it(`equals the quadratic backward, ${c.name}`, () => {
      const p = makeProblem(c, 900, true);
      const { dOut, dState } = upstream(new Rng(901), p.dims);
      const want = refCausalBackward({ ...p, dOut, dState });
      const got = refCausalBackwardRecurrent({ ...p, dOut, dState });
      for (const key of ['dq', 'dk', 'dv'] as const) assertClose(key, want[key], got[key], 1e-12);
      assertClose('dState.S', want.dState.S, got.dState.S, 1e-12);
      assertClose('dState.z', want.dState.z, got.dState.z, 1e-12);
    });
  }
});

describe('reference: exact-zero rule', () => {
  it('relu query with all projections <= 0 gives exactly 0 and a finite, correct gradient', () => {
    const c = CASES[1]; // relu, identity: u = q
    const p = makeProblem(c, 900, false);
    const { h, t, d, dv } = p.dims;
    const zeroQ = [0, 3]; // tokens of slice (0, 0) whose queries see nothing
    for (const i of zeroQ) for (let cc = 0; cc < d; cc++) p.q[i * d + cc] = -0.5 - Math.abs(p.q[i * d + cc]);
    const { out } = refCausalForward(p);
    for (const i of zeroQ) {
      for (let cc = 0; cc < dv; cc++) expect(Object.is(out[i * dv + cc], 0)).toBe(true);
    }
    expect(h * t).toBeGreaterThan(zeroQ.length);
    checkCausalBackward(p, 901);
  });

  it('a zero denominator passes no gradient, even where the ε guard alone would give g/ε', () => {
    // features: query 0 lives only on feature 0, which no key and no state row has, so den_0 = 0
    const dims: Dims = { b: 1, h: 1, t: 3, d: 1, m: 3, dv: 2 };
    const rng = new Rng(1000);
    const phiQ = Float64Array.from([1, 0, 0, 0, 0.5, 0.7, 0.2, 0.3, 0.9]);
    const phiK = Float64Array.from([0, 0.8, 0.1, 0, 0.4, 0.6, 0, 0.3, 0.2]);
    const v = rng.normals(dims.t * dims.dv);
    const state: AttnState = {
      S: Float64Array.from([0, 0, 0.3, -0.2, 0.5, 0.1]),
      z: Float64Array.from([0, 0.4, 0.6]),
      offset: new Float64Array(1),
    };
    const { dOut, dState } = upstream(rng, dims);
    const f = refCausalForwardFeatures({ phiQ, phiK, v, dims, state });
    expect(Array.from(f.out.subarray(0, 2))).toEqual([0, 0]);
    const g = refCausalBackwardFeatures({ phiQ, phiK, v, dims, state, dOut, dState });
    const dOut0 = Float64Array.from(dOut);
    dOut0[0] = dOut0[1] = 0;
    const g0 = refCausalBackwardFeatures({ phiQ, phiK, v, dims, state, dOut: dOut0, dState });
    for (const key of ['dPhiQ', 'dPhiK', 'dv'] as const) {
      expect(g[key].every(Number.isFinite)).toBe(true);
      expect(Array.from(g[key])).toEqual(Array.from(g0[key]));
    }
    expect(Array.from(g.dState.S)).toEqual(Array.from(g0.dState.S));
    expect(Array.from(g.dState.z)).toEqual(Array.from(g0.dState.z));
    expect(Math.max(...g.dState.S.map(Math.abs))).toBeLessThan(10);
  });
});

describe('reference: causal on precomputed features', () => {
  it('backward matches finite differences (state offset passed through)', () => {
    const dims: Dims = { b: 2, h: 1, t: 6, d: 0, m: 4, dv: 3 };
    const rng = new Rng(1100);
    const n = dims.b * dims.h;
    const phiQ = rng.uniforms(n * dims.t * dims.m, 0.1, 1.1);
    const phiK = rng.uniforms(n * dims.t * dims.m, 0.1, 1.1);
    const v = rng.normals(n * dims.t * dims.dv);
    const S = rng.normals(n * dims.m * dims.dv);
    const z = rng.uniforms(n * dims.m, 0.2, 1.2);
    const offset = Float64Array.from([0.7, -1.5]);
    const { dOut, dState } = upstream(rng, dims);
    const fwd = refCausalForwardFeatures({ phiQ, phiK, v, dims, state: { S, z, offset } });
    expect(Array.from(fwd.state.offset)).toEqual(Array.from(offset));
    const L = () => {
      const r = refCausalForwardFeatures({ phiQ, phiK, v, dims, state: { S, z, offset } });
      return dotAll(dOut, r.out) + dotAll(dState.S, r.state.S) + dotAll(dState.z, r.state.z);
    };
    const g = refCausalBackwardFeatures({ phiQ, phiK, v, dims, state: { S, z, offset }, dOut, dState });
    assertClose('dPhiQ', finiteDiff(L, phiQ), g.dPhiQ, 1e-6, 1e-8);
    assertClose('dPhiK', finiteDiff(L, phiK), g.dPhiK, 1e-6, 1e-8);
    assertClose('dv', finiteDiff(L, v), g.dv, 1e-6, 1e-8);
    assertClose('dState.S', finiteDiff(L, S), g.dState.S, 1e-6, 1e-8);
    assertClose('dState.z', finiteDiff(L, z), g.dState.z, 1e-6, 1e-8);
  });

  for (const c of [CASES[1], CASES[2]]) {
    it(`fused relu equals the features variant on relu features, ${c.name}`, () => {
      const p = makeProblem(c, 1200, true);
      const { b, h, t, d, m } = p.dims;
      const phiQ = new Float64Array(b * h * t * m);
      const phiK = new Float64Array(b * h * t * m);
      for (let s = 0; s < b * h; s++) {
        const om = p.omega?.subarray((s % h) * m * d, ((s % h) + 1) * m * d);
        phiQ.set(naiveFeatures(p.q.subarray(s * t * d, (s + 1) * t * d), om, 'relu', d, m), s * t * m);
        phiK.set(naiveFeatures(p.k.subarray(s * t * d, (s + 1) * t * d), om, 'relu', d, m), s * t * m);
      }
      const { dOut, dState } = upstream(new Rng(1201), p.dims);
      const fused = refCausalForward(p);
      const feat = refCausalForwardFeatures({ phiQ, phiK, v: p.v, dims: p.dims, state: p.state });
      assertClose('out', fused.out, feat.out, 1e-15);
      assertStateClose('state', fused.state, feat.state, 1e-15);
      const gf = refCausalBackward({ ...p, dOut, dState });
      const gp = refCausalBackwardFeatures({ phiQ, phiK, v: p.v, dims: p.dims, state: p.state, dOut, dState });
      assertClose('dv', gf.dv, gp.dv, 1e-15);
      assertClose('dState.S', gf.dState.S, gp.dState.S, 1e-15);
      assertClose('dState.z', gf.dState.z, gp.dState.z, 1e-15);
      // dq = ωᵀ(dPhiQ ∘ [u > 0]) per slice
      const dq = new Float64Array(b * h * t * d);
      for (let s = 0; s < b * h; s++) {
        const om = p.omega?.subarray((s % h) * m * d, ((s % h) + 1) * m * d);
        const x = p.q.subarray(s * t * d, (s + 1) * t * d);
        const u = refFeatureMap(x, om, 'relu', d, m).logits;
        const phi = phiQ.subarray(s * t * m, (s + 1) * t * m);
        dq.set(featureBackward(x, om, 'relu', d, m, u, phi, gp.dPhiQ.subarray(s * t * m, (s + 1) * t * m)), s * t * d);
      }
      assertClose('dq', gf.dq, dq, 1e-15);
    });
  }
});

describe('reference: bidirectional', () => {
  for (const c of CASES) {
    it(`forward equals the direct quadratic formula, ${c.name}`, () => {
      const p = makeProblem(c, 1300, false);
      const { b, h, t, d, m, dv } = p.dims;
      const { out } = refBidirectionalForward(p);
      for (let s = 0; s < b * h; s++) {
        const om = p.omega?.subarray((s % h) * m * d, ((s % h) + 1) * m * d);
        const fq = naiveFeatures(p.q.subarray(s * t * d, (s + 1) * t * d), om, c.feature, d, m);
        const fk = naiveFeatures(p.k.subarray(s * t * d, (s + 1) * t * d), om, c.feature, d, m);
        const want = new Float64Array(t * dv);
        for (let i = 0; i < t; i++) {
          let den = 0;
          const num = new Float64Array(dv);
          for (let j = 0; j < t; j++) {
            let qk = 0;
            for (let r = 0; r < m; r++) qk += fq[i * m + r] * fk[j * m + r];
            den += qk;
            for (let cc = 0; cc < dv; cc++) num[cc] += qk * p.v[(s * t + j) * dv + cc];
          }
          for (let cc = 0; cc < dv; cc++) want[i * dv + cc] = den === 0 ? 0 : num[cc] / den;
        }
        assertClose(`out[${s}]`, want, out.subarray(s * t * dv, (s + 1) * t * dv), 1e-12);
      }
    });

    it(`backward matches finite differences, ${c.name}`, () => {
      const p = makeProblem(c, 1400, false);
      const dOut = new Rng(1401).normals(p.dims.b * p.dims.h * p.dims.t * p.dims.dv);
      const x = { q: Float64Array.from(p.q), k: Float64Array.from(p.k), v: Float64Array.from(p.v) };
      const L = () => dotAll(dOut, refBidirectionalForward({ ...p, ...x }).out);
      const g = refBidirectionalBackward({ ...p, dOut });
      assertClose('dq', finiteDiff(L, x.q), g.dq, 1e-6, 1e-8);
      assertClose('dk', finiteDiff(L, x.k), g.dk, 1e-6, 1e-8);
      assertClose('dv', finiteDiff(L, x.v), g.dv, 1e-6, 1e-8);
    });
  }
});

describe('reference: recurrent step', () => {
  for (const c of CASES) {
    for (const withState of [false, true]) {
      it(`T steps equal the causal forward, ${c.name}, ${withState ? 'with' : 'without'} state`, () => {
        const p = makeProblem(c, 1500, withState);
        const { t, d, dv } = p.dims;
        const whole = refCausalForward(p);
        let state = p.state ?? emptyState(p.dims, p.feature);
        for (let i = 0; i < t; i++) {
          const step = refRecurrentStep({
            feature: p.feature,
            omega: p.omega,
            dims: p.dims,
            state,
            q: sliceT(p.q, p.dims, d, i, i + 1),
            k: sliceT(p.k, p.dims, d, i, i + 1),
            v: sliceT(p.v, p.dims, dv, i, i + 1),
          });
          assertClose(`out[t = ${i}]`, sliceT(whole.out, p.dims, dv, i, i + 1), step.out, 1e-12);
          state = step.state;
        }
        assertStateClose('state', whole.state, state, 1e-12);
      });
    }
  }
});

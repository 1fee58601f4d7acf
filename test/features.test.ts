import { describe, expect, it } from 'vitest';
import { ArgError } from '../src/kernels/validate.ts';
import { FeatureRedraw, Rng, deriveSeed, headProjection, randomProjection, redrawSeed } from '../src/features/index.ts';

/** Bit patterns of a float32 array, for exact comparisons. */
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

function dot(w: Float32Array, a: number, b: number, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += w[a * d + i] * w[b * d + i];
  return s;
}

function rowNorms(w: Float32Array, d: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < w.length / d; r++) out.push(Math.sqrt(dot(w, r, r, d)));
  return out;
}

/** E[chi(d)] = √2·Γ((d+1)/2)/Γ(d/2), by the recurrence on the gamma ratio. */
function chiMean(d: number): number {
  let ratio = d % 2 === 1 ? 1 / Math.sqrt(Math.PI) : Math.sqrt(Math.PI) / 2;
  for (let k = d % 2 === 1 ? 1 : 2; k < d; k += 2) ratio *= (k + 1) / k;
  return Math.SQRT2 * ratio;
}

function unitVector(rng: Rng, d: number): number[] {
  const v = Array.from({ length: d }, () => rng.normal());
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** FAVOR+ estimate of exp(q·k/√d): mean over rows of φ(q)_r φ(k)_r with x' = x·d^(-1/4). */
function favorEstimate(w: Float32Array, d: number, q: number[], k: number[]): number {
  const s = d ** -0.25;
  const qs = q.map((x) => x * s);
  const ks = k.map((x) => x * s);
  const hq = qs.reduce((a, x) => a + x * x, 0) / 2;
  const hk = ks.reduce((a, x) => a + x * x, 0) / 2;
  const m = w.length / d;
  let acc = 0;
  for (let r = 0; r < m; r++) {
    let uq = 0;
    let uk = 0;
    for (let i = 0; i < d; i++) {
      uq += w[r * d + i] * qs[i];
      uk += w[r * d + i] * ks[i];
    }
    acc += Math.exp(uq - hq) * Math.exp(uk - hk);
  }
  return acc / m;
}

const softmaxKernel = (q: number[], k: number[]): number => Math.exp(q.reduce((a, x, i) => a + x * k[i], 0) / Math.sqrt(q.length));

describe('Rng', () => {
  it('matches pinned outputs (xoshiro128** seeded by splitmix64)', () => {
    const r = new Rng(12345);
    expect([r.nextU32(), r.nextU32(), r.nextU32(), r.nextU32()]).toEqual([2314518269, 2498321016, 2055377852, 4042509560]);
    expect(r.nextFloat()).toBe(0.2951833465497242);
    expect(r.normal()).toBe(-1.2157925952678514);
    expect(r.normal()).toBe(1.2444361216347268);
  });

  it('treats number and bigint seeds alike, modulo 2^64', () => {
    const a = new Rng(7);
    const b = new Rng(7n);
    const c = new Rng(7n + (1n << 64n));
    for (let i = 0; i < 100; i++) {
      const x = a.nextU32();
      expect(b.nextU32()).toBe(x);
      expect(c.nextU32()).toBe(x);
    }
    expect(new Rng(-1).nextU32()).toBe(new Rng((1n << 64n) - 1n).nextU32());
    expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
  });

  it('gives uniform integers and floats in range', () => {
    const r = new Rng(1);
    const n = 200_000;
    let sumF = 0;
    let sumU = 0;
    let outOfRange = 0;
    for (let i = 0; i < n; i++) {
      const u = r.nextU32();
      if (!Number.isInteger(u) || u < 0 || u >= 2 ** 32) outOfRange++;
      sumU += u / 2 ** 32;
      const f = r.nextFloat();
      if (!(f >= 0 && f < 1)) outOfRange++;
      sumF += f;
    }
    expect(outOfRange).toBe(0);
    const se = Math.sqrt(1 / 12 / n);
    expect(Math.abs(sumF / n - 0.5)).toBeLessThan(5 * se);
    expect(Math.abs(sumU / n - 0.5)).toBeLessThan(5 * se);
  });

  it('draws standard normals with sane moments', () => {
    const r = new Rng(2024);
    const n = 400_000;
    let s1 = 0;
    let s2 = 0;
    let s4 = 0;
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      s1 += z;
      s2 += z * z;
      s4 += z ** 4;
    }
    const mean = s1 / n;
    const variance = s2 / n - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(s4 / n - 3)).toBeLessThan(5 * Math.sqrt(96 / n));
  });

  it('derives distinct, reproducible sub-seeds', () => {
    expect(deriveSeed(5)).toBe(5n);
    expect(deriveSeed(5, 0)).toBe(deriveSeed(5n, 0n));
    expect(deriveSeed(5, 1, 2)).toBe(deriveSeed(deriveSeed(5, 1), 2));
    const seen = new Set<bigint>();
    for (let s = 0; s < 20; s++) for (let h = 0; h < 20; h++) seen.add(deriveSeed(s, h));
    expect(seen.size).toBe(400);
  });
});

describe('randomProjection', () => {
  it('matches pinned float32 bits', () => {
    const w = headProjection({ m: 2, d: 3, seed: 1 });
    expect(Array.from(bits(w))).toEqual([0x3f96b52c, 0xbe3e4e3e, 0xc00b9762, 0xbf6a8c53, 0xbe4800a1, 0xbef4b4a4]);
  });

  it('is bit-identical for the same seed, in every mode', () => {
    for (const norms of ['chi', 'sqrt-d'] as const) {
      for (const orthogonal of [true, false]) {
        const opts = { h: 3, m: 40, d: 16, seed: 99, norms, orthogonal };
        const a = randomProjection(opts);
        const b = randomProjection(opts);
        expect(a.length).toBe(3 * 40 * 16);
        expect(bits(a)).toEqual(bits(b));
        expect(bits(randomProjection({ ...opts, seed: 99n }))).toEqual(bits(a));
      }
    }
  });

  it('differs across seeds and heads; each head is reproducible on its own', () => {
    const [h, m, d] = [4, 24, 8];
    const w = randomProjection({ h, m, d, seed: 3 });
    const other = randomProjection({ h, m, d, seed: 4 });
    expect(bits(w)).not.toEqual(bits(other));
    const heads = Array.from({ length: h }, (_, i) => w.subarray(i * m * d, (i + 1) * m * d));
    for (let i = 0; i < h; i++) {
      expect(bits(heads[i])).toEqual(bits(headProjection({ m, d, seed: 3, head: i })));
      for (let j = 0; j < i; j++) expect(bits(heads[i])).not.toEqual(bits(heads[j]));
    }
  });

  it('makes rows orthogonal within each block and not across blocks', () => {
    const d = 16;
    const m = 64;
    for (const norms of ['chi', 'sqrt-d'] as const) {
      const w = headProjection({ m, d, seed: 11, norms });
      const norm = rowNorms(w, d);
      let worstWithin = 0;
      let bestAcross = 0;
      for (let a = 0; a < m; a++) {
        for (let b = 0; b < a; b++) {
          const cos = Math.abs(dot(w, a, b, d)) / (norm[a] * norm[b]);
          if (Math.floor(a / d) === Math.floor(b / d)) worstWithin = Math.max(worstWithin, cos);
          else bestAcross = Math.max(bestAcross, cos);
        }
      }
      expect(worstWithin).toBeLessThanOrEqual(1e-4);
      expect(bestAcross).toBeGreaterThan(0.1);
    }
  });

  it('handles m not a multiple of d by truncating the last block', () => {
    const d = 16;
    const w = headProjection({ m: 37, d, seed: 5 });
    expect(w.length).toBe(37 * d);
    expect(w.every(Number.isFinite)).toBe(true);
    const norm = rowNorms(w, d);
    for (let a = 32; a < 37; a++) {
      for (let b = 32; b < a; b++) {
        expect(Math.abs(dot(w, a, b, d))).toBeLessThanOrEqual(1e-4 * norm[a] * norm[b]);
      }
    }
    const full = headProjection({ m: 48, d, seed: 5 });
    expect(bits(w)).toEqual(bits(full.subarray(0, 37 * d)));
    expect(headProjection({ m: 3, d: 1, seed: 5 }).length).toBe(3);
    expect(headProjection({ m: 1, d: 7, seed: 5 }).length).toBe(7);
  });

  it("gives every row norm √d with norms 'sqrt-d'", () => {
    for (const orthogonal of [true, false]) {
      for (const d of [1, 7, 16, 64]) {
        const w = headProjection({ m: 3 * d + 1, d, seed: 8, norms: 'sqrt-d', orthogonal });
        for (const n of rowNorms(w, d)) expect(Math.abs(n / Math.sqrt(d) - 1)).toBeLessThan(1e-5);
      }
    }
  });

  it("gives chi(d) row norms with norms 'chi'", () => {
    for (const orthogonal of [true, false]) {
      for (const d of [4, 16]) {
        const m = 16_384;
        const norms = rowNorms(headProjection({ m, d, seed: 21, orthogonal }), d);
        const mu = chiMean(d);
        const sampleMean = norms.reduce((a, x) => a + x, 0) / m;
        const sampleVar = norms.reduce((a, x) => a + (x - sampleMean) ** 2, 0) / (m - 1);
        const se = Math.sqrt((d - mu * mu) / m);
        expect(Math.abs(sampleMean - mu)).toBeLessThan(4 * se);
        expect(Math.abs(sampleVar / (d - mu * mu) - 1)).toBeLessThan(0.1);
      }
    }
  });

  it('estimates the softmax kernel exp(q·k/√d) within 5% with m = 4096', () => {
    const d = 16;
    const rng = new Rng(31337);
    for (let pair = 0; pair < 4; pair++) {
      const q = unitVector(rng, d);
      const k = unitVector(rng, d);
      const truth = softmaxKernel(q, k);
      for (const orthogonal of [true, false]) {
        const w = headProjection({ m: 4096, d, seed: 1000 + pair, orthogonal });
        expect(Math.abs(favorEstimate(w, d, q, k) / truth - 1)).toBeLessThan(0.05);
      }
    }
  });

  it('has lower kernel-estimate error with orthogonal than with iid features', () => {
    // Blocks are independent, so the variance ratio does not depend on m; m = d gives the most
    // samples per second.
    const d = 16;
    const m = 16;
    const rng = new Rng(7);
    let mseOrthogonal = 0;
    let mseIid = 0;
    for (let pair = 0; pair < 8; pair++) {
      const q = unitVector(rng, d);
      const k = unitVector(rng, d);
      const truth = softmaxKernel(q, k);
      for (let s = 0; s < 1000; s++) {
        const seed = pair * 1000 + s;
        const eo = favorEstimate(headProjection({ m, d, seed }), d, q, k) / truth - 1;
        const ei = favorEstimate(headProjection({ m, d, seed, orthogonal: false }), d, q, k) / truth - 1;
        mseOrthogonal += eo * eo;
        mseIid += ei * ei;
      }
    }
    expect(mseOrthogonal / mseIid).toBeLessThan(0.93);
  });

  it('rejects bad arguments, naming them', () => {
    const ok = { h: 2, m: 8, d: 4, seed: 1 };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ h: 0 }, /randomProjection: h must be a positive integer, got 0/],
      [{ m: 0 }, /randomProjection: m must be a positive integer, got 0/],
      [{ m: 2.5 }, /m must be a positive integer, got 2\.5/],
      [{ d: -3 }, /d must be a positive integer, got -3/],
      [{ d: '4' }, /d must be a positive integer, got "4"/],
      [{ seed: 1.5 }, /seed must be a finite integer, got 1\.5/],
      [{ seed: Number.NaN }, /seed must be a finite integer, got NaN/],
      [{ seed: Infinity }, /seed must be a finite integer, got Infinity/],
      [{ seed: '1' }, /seed must be an integer number or bigint, got "1"/],
      [{ seed: undefined }, /seed must be an integer number or bigint, got undefined/],
      [{ norms: 'gauss' }, /norms must be one of 'chi' or 'sqrt-d', got "gauss"/],
      [{ orthogonal: 1 }, /orthogonal must be a boolean, got 1/],
    ];
    for (const [bad, message] of cases) {
      const args = { ...ok, ...bad } as unknown as Parameters<typeof randomProjection>[0];
      expect(() => randomProjection(args)).toThrow(message);
    }
    expect(() => headProjection({ m: 4, d: 4, seed: 1, head: -1 })).toThrow(/headProjection: head must be a non-negative integer, got -1/);
    expect(() => new Rng(0.5)).toThrow(/Rng: seed must be a finite integer/);
    expect(() => new FeatureRedraw({ ...ok, every: -1 })).toThrow(/FeatureRedraw: every must be a non-negative integer, got -1/);
    // The one error class of every argument check (src/kernels/validate.ts); it is a TypeError.
    expect(() => randomProjection({ ...ok, m: 0 })).toThrow(ArgError);
    expect(() => randomProjection({ ...ok, seed: '1' as unknown as number })).toThrow(ArgError);
    expect(() => randomProjection({ ...ok, seed: '1' as unknown as number })).toThrow(TypeError);
  });
});

describe('FeatureRedraw', () => {
  const base = { h: 2, m: 20, d: 8, seed: 77 };

  it('starts from randomProjection with the same seed', () => {
    const r = new FeatureRedraw({ ...base, every: 3 });
    expect(bits(r.current())).toEqual(bits(randomProjection(base)));
    expect(r.draw).toBe(0);
    expect(r.stepCount).toBe(0);
  });

  it('redraws every `every` steps, deterministically', () => {
    const a = new FeatureRedraw({ ...base, every: 3 });
    const b = new FeatureRedraw({ ...base, every: 3 });
    const flags: boolean[] = [];
    const draws: Uint32Array[] = [bits(a.current()).slice()];
    for (let s = 1; s <= 9; s++) {
      const redrawn = a.step();
      expect(b.step()).toBe(redrawn);
      expect(bits(b.current())).toEqual(bits(a.current()));
      flags.push(redrawn);
      if (redrawn) draws.push(bits(a.current()).slice());
    }
    expect(flags).toEqual([false, false, true, false, false, true, false, false, true]);
    expect(a.draw).toBe(3);
    for (let i = 0; i < draws.length; i++) {
      for (let j = 0; j < i; j++) expect(draws[i]).not.toEqual(draws[j]);
    }
    const draw2 = randomProjection({ ...base, seed: redrawSeed(base.seed, 2) });
    expect(draws[2]).toEqual(bits(draw2));
  });

  it('resumes from a step count', () => {
    const stepped = new FeatureRedraw({ ...base, every: 4, norms: 'sqrt-d' });
    for (let s = 0; s < 10; s++) stepped.step();
    const resumed = new FeatureRedraw({ ...base, every: 4, norms: 'sqrt-d', step: 10 });
    expect(resumed.draw).toBe(2);
    expect(bits(resumed.current())).toEqual(bits(stepped.current()));
    expect(resumed.step()).toBe(false);
    expect(resumed.step()).toBe(true);
  });

  it('never redraws with every = 0', () => {
    const r = new FeatureRedraw({ ...base, every: 0 });
    const first = r.current();
    for (let s = 0; s < 5; s++) expect(r.step()).toBe(false);
    expect(r.current()).toBe(first);
  });
});

/**
 * Seeded random features for FAVOR+ attention.
 *
 * Everything here is a pure function of its seed. The generator uses only 32-bit integer
 * operations, float64 arithmetic, `Math.sqrt` and `Math.log` (no `Math.random`, no `cos`/`sin`),
 * so a seed gives the same projection in every JavaScript runtime whose `Math.log` agrees
 * (V8, SpiderMonkey and JavaScriptCore all use fdlibm-derived implementations).
 *
 * Seeding: a seed (number or bigint, any integer) is reduced modulo 2^64 and expanded with
 * splitmix64 into the 128-bit state of xoshiro128**. Sub-streams (one per head, one per redraw)
 * come from `deriveSeed`, which hashes a path of integers into a fresh 64-bit seed, so every
 * head of every draw can be regenerated on its own.
 */
import { ArgError } from '../kernels/validate.ts';

const MASK64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;
/** Path tag that separates redraw seeds from head seeds in `deriveSeed`. */
const REDRAW_DOMAIN = 0x7265647261770000n;
const TWO_POW_26 = 67108864;
const TWO_POW_MINUS_53 = 1 / 9007199254740992;

export type NormMode = 'chi' | 'sqrt-d';
const NORM_MODES: readonly NormMode[] = ['chi', 'sqrt-d'];

/** Seeds are integers: a finite integral number or a bigint, reduced modulo 2^64. */
export type Seed = number | bigint;

/** The splitmix64 output function (Stafford variant 13), a bijection on 64-bit words. */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

function toU64(seed: Seed): bigint {
  return BigInt.asUintN(64, typeof seed === 'bigint' ? seed : BigInt(seed));
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return Object.prototype.toString.call(value);
}

function checkSeed(fn: string, name: string, seed: unknown): asserts seed is Seed {
  if (typeof seed === 'bigint') return;
  if (typeof seed !== 'number') {
    throw new ArgError(`${fn}: ${name} must be an integer number or bigint, got ${describe(seed)}`);
  }
  if (!Number.isInteger(seed)) {
    throw new ArgError(`${fn}: ${name} must be a finite integer, got ${describe(seed)}`);
  }
}

function checkInt(fn: string, name: string, value: unknown, min: 0 | 1): asserts value is number {
  const what = min === 1 ? 'a positive integer' : 'a non-negative integer';
  if (typeof value !== 'number') {
    throw new ArgError(`${fn}: ${name} must be ${what}, got ${describe(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ArgError(`${fn}: ${name} must be ${what}, got ${describe(value)}`);
  }
}

function checkNorms(fn: string, norms: unknown): asserts norms is NormMode {
  if (!NORM_MODES.includes(norms as NormMode)) {
    throw new ArgError(`${fn}: norms must be one of 'chi' or 'sqrt-d', got ${describe(norms)}`);
  }
}

function checkBool(fn: string, name: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') {
    throw new ArgError(`${fn}: ${name} must be a boolean, got ${describe(value)}`);
  }
}

/**
 * Hash `seed` and a path of integers into an independent 64-bit seed:
 * `deriveSeed(s, a, b) = deriveSeed(deriveSeed(s, a), b)`, and `deriveSeed(s) = s mod 2^64`.
 */
export function deriveSeed(seed: Seed, ...path: Seed[]): bigint {
  checkSeed('deriveSeed', 'seed', seed);
  let key = toU64(seed);
  path.forEach((id, i) => {
    checkSeed('deriveSeed', `path[${i}]`, id);
    key = mix64(key ^ mix64((toU64(id) + GOLDEN_GAMMA) & MASK64));
  });
  return key;
}

/** xoshiro128** seeded through splitmix64. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** Second value of the last polar-method pair, or NaN when none is pending. */
  private spare = NaN;

  constructor(seed: Seed) {
    checkSeed('Rng', 'seed', seed);
    let x = toU64(seed);
    const next = (): bigint => {
      x = (x + GOLDEN_GAMMA) & MASK64;
      return mix64(x);
    };
    const a = next();
    const b = next();
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Uniform integer in [0, 2^32). */
  nextU32(): number {
    const s1 = this.s1;
    const r = Math.imul(s1, 5);
    const rot = (r << 7) | (r >>> 25);
    const result = Math.imul(rot, 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform float64 in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * TWO_POW_26 + lo) * TWO_POW_MINUS_53;
  }

  /** Standard normal N(0, 1) float64 by the Marsaglia polar method (values come in pairs). */
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const z = this.spare;
      this.spare = NaN;
      return z;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.nextFloat() - 1;
      v = 2 * this.nextFloat() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * f;
    return u * f;
  }
}

/**
 * Haar-random orthogonal `d×d` matrix, row-major float64, written into `q`.
 * Householder QR of a standard Gaussian matrix `G = QR` (G drawn row-major from `rng`), with the
 * columns of Q multiplied by sign(R_jj) so that diag(R) > 0, which makes Q Haar-distributed.
 */
function haarOrthogonal(rng: Rng, d: number, q: Float64Array): void {
  const a = new Float64Array(d * d); // [d, d] G, reduced in place to R
  for (let i = 0; i < d * d; i++) a[i] = rng.normal();
  const vs = new Float64Array(d * d); // [d, d] row k: unit Householder vector k (zero above k)
  const hasReflector = new Uint8Array(d);
  const sign = new Float64Array(d).fill(1); // sign(R_jj) after reflection

  for (let k = 0; k < d; k++) {
    let norm2 = 0;
    for (let i = k; i < d; i++) norm2 += a[i * d + k] * a[i * d + k];
    const x0 = a[k * d + k];
    if (k === d - 1 || norm2 === 0) {
      sign[k] = x0 < 0 ? -1 : 1;
      continue;
    }
    const alpha = x0 < 0 ? Math.sqrt(norm2) : -Math.sqrt(norm2); // R_kk after reflection
    const v = vs.subarray(k * d, (k + 1) * d);
    v[k] = x0 - alpha;
    for (let i = k + 1; i < d; i++) v[i] = a[i * d + k];
    let vn2 = 0;
    for (let i = k; i < d; i++) vn2 += v[i] * v[i];
    if (vn2 === 0) {
      sign[k] = x0 < 0 ? -1 : 1;
      continue;
    }
    const inv = 1 / Math.sqrt(vn2);
    for (let i = k; i < d; i++) v[i] *= inv;
    hasReflector[k] = 1;
    sign[k] = alpha < 0 ? -1 : 1;
    // A ← (I − 2vvᵀ) A on columns k+1.. (column k becomes alpha·e_k and is not needed again).
    for (let j = k + 1; j < d; j++) {
      let dot = 0;
      for (let i = k; i < d; i++) dot += v[i] * a[i * d + j];
      dot *= 2;
      for (let i = k; i < d; i++) a[i * d + j] -= dot * v[i];
    }
  }

  // Q = H_0 H_1 … H_{d-2}, accumulated right to left onto the identity.
  q.fill(0);
  for (let i = 0; i < d; i++) q[i * d + i] = 1;
  for (let k = d - 1; k >= 0; k--) {
    if (!hasReflector[k]) continue;
    const v = vs.subarray(k * d, (k + 1) * d);
    for (let j = 0; j < d; j++) {
      let dot = 0;
      for (let i = k; i < d; i++) dot += v[i] * q[i * d + j];
      dot *= 2;
      for (let i = k; i < d; i++) q[i * d + j] -= dot * v[i];
    }
  }
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) q[i * d + j] *= sign[j];
  }
}

export interface HeadProjectionOptions {
  /** number of random features (rows) */
  m: number;
  /** query/key width */
  d: number;
  seed: Seed;
  /** head index; head `i` draws from the stream `deriveSeed(seed, i)` */
  head?: number;
  /** `'chi'` (default): row norms ~ chi(d), as for Gaussian rows; `'sqrt-d'`: every norm √d */
  norms?: NormMode;
  /** block-orthogonal rows (default) or iid N(0, 1) rows */
  orthogonal?: boolean;
}

export interface RandomProjectionOptions extends Omit<HeadProjectionOptions, 'head'> {
  /** heads */
  h: number;
}

function fillHead(out: Float32Array, offset: number, m: number, d: number, seed: Seed, head: number, norms: NormMode, orthogonal: boolean): void {
  const rng = new Rng(deriveSeed(seed, head));
  const rows = new Float64Array(m * d); // [m, d]
  if (orthogonal) {
    const q = new Float64Array(d * d); // [d, d]
    for (let start = 0; start < m; start += d) {
      haarOrthogonal(rng, d, q);
      const count = Math.min(d, m - start); // the last block is truncated
      rows.set(q.subarray(0, count * d), start * d);
    }
  } else {
    for (let i = 0; i < m * d; i++) rows[i] = rng.normal();
  }

  for (let r = 0; r < m; r++) {
    const row = rows.subarray(r * d, (r + 1) * d);
    let target: number;
    if (norms === 'sqrt-d') {
      target = Math.sqrt(d);
    } else if (orthogonal) {
      let g2 = 0;
      for (let i = 0; i < d; i++) {
        const g = rng.normal();
        g2 += g * g;
      }
      target = Math.sqrt(g2);
    } else {
      target = NaN; // iid Gaussian rows are already chi(d)-normed
    }
    let scale = 1;
    if (!Number.isNaN(target)) {
      let n2 = 0;
      for (let i = 0; i < d; i++) n2 += row[i] * row[i];
      scale = target / Math.sqrt(n2);
    }
    for (let i = 0; i < d; i++) out[offset + r * d + i] = row[i] * scale;
  }
}

/**
 * Projection rows ω_r of one head, `[m, d]` row-major float32.
 *
 * Orthogonal (default): rows come in blocks of `d`, each block the rows of an independent
 * Haar-random orthogonal matrix (the last block truncated when `d` does not divide `m`), then
 * rescaled per `norms`. With `orthogonal: false` rows are iid N(0, I_d); `'chi'` keeps them as
 * drawn and `'sqrt-d'` rescales them to norm √d.
 */
export function headProjection(options: HeadProjectionOptions): Float32Array {
  const fn = 'headProjection';
  const { m, d, seed, head = 0, norms = 'chi', orthogonal = true } = options;
  checkInt(fn, 'm', m, 1);
  checkInt(fn, 'd', d, 1);
  checkSeed(fn, 'seed', seed);
  checkInt(fn, 'head', head, 0);
  checkNorms(fn, norms);
  checkBool(fn, 'orthogonal', orthogonal);
  const out = new Float32Array(m * d);
  fillHead(out, 0, m, d, seed, head, norms, orthogonal);
  return out;
}

/**
 * Projection rows for all heads, `[h, m, d]` row-major float32: head `i` equals
 * `headProjection({ m, d, seed, head: i, norms, orthogonal })`.
 */
export function randomProjection(options: RandomProjectionOptions): Float32Array {
  const fn = 'randomProjection';
  const { h, m, d, seed, norms = 'chi', orthogonal = true } = options;
  checkInt(fn, 'h', h, 1);
  checkInt(fn, 'm', m, 1);
  checkInt(fn, 'd', d, 1);
  checkSeed(fn, 'seed', seed);
  checkNorms(fn, norms);
  checkBool(fn, 'orthogonal', orthogonal);
  const out = new Float32Array(h * m * d);
  for (let i = 0; i < h; i++) fillHead(out, i * m * d, m, d, seed, i, norms, orthogonal);
  return out;
}

/**
 * Seed of draw `k` of a redraw schedule: draw 0 uses `seed` itself, so it equals
 * `randomProjection({ seed, … })`; later draws use `deriveSeed(seed, REDRAW_DOMAIN, k)`.
 */
export function redrawSeed(seed: Seed, draw: number): Seed {
  checkSeed('redrawSeed', 'seed', seed);
  checkInt('redrawSeed', 'draw', draw, 0);
  return draw === 0 ? seed : deriveSeed(seed, REDRAW_DOMAIN, draw);
}

export interface FeatureRedrawOptions extends RandomProjectionOptions {
  /** redraw every this many steps; 0 = never */
  every: number;
  /** step count to start from (to resume a schedule); default 0 */
  step?: number;
}

/**
 * Feature-redraw schedule: at step `s` the projection is draw `⌊s / every⌋` (draw 0 when
 * `every = 0`), a pure function of the seed and the step count.
 */
export class FeatureRedraw {
  readonly h: number;
  readonly m: number;
  readonly d: number;
  readonly seed: Seed;
  readonly every: number;
  readonly norms: NormMode;
  readonly orthogonal: boolean;
  private steps: number;
  private drawIndex: number;
  private omega: Float32Array;

  constructor(options: FeatureRedrawOptions) {
    const fn = 'FeatureRedraw';
    const { h, m, d, seed, every, norms = 'chi', orthogonal = true, step = 0 } = options;
    checkInt(fn, 'h', h, 1);
    checkInt(fn, 'm', m, 1);
    checkInt(fn, 'd', d, 1);
    checkSeed(fn, 'seed', seed);
    checkInt(fn, 'every', every, 0);
    checkNorms(fn, norms);
    checkBool(fn, 'orthogonal', orthogonal);
    checkInt(fn, 'step', step, 0);
    this.h = h;
    this.m = m;
    this.d = d;
    this.seed = seed;
    this.every = every;
    this.norms = norms;
    this.orthogonal = orthogonal;
    this.steps = step;
    this.drawIndex = FeatureRedraw.drawAt(every, step);
    this.omega = this.generate(this.drawIndex);
  }

  /** Index of the draw in force at step `step` under period `every`. */
  static drawAt(every: number, step: number): number {
    return every === 0 ? 0 : Math.floor(step / every);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** Index of the current draw. */
  get draw(): number {
    return this.drawIndex;
  }

  /** Current projection `[h, m, d]`; the same array until the next redraw (do not mutate). */
  current(): Float32Array {
    return this.omega;
  }

  /** Advance one step; returns true when that step starts a new draw. */
  step(): boolean {
    this.steps += 1;
    const next = FeatureRedraw.drawAt(this.every, this.steps);
    if (next === this.drawIndex) return false;
    this.drawIndex = next;
    this.omega = this.generate(next);
    return true;
  }

  private generate(draw: number): Float32Array {
    const { h, m, d, norms, orthogonal } = this;
    return randomProjection({ h, m, d, seed: redrawSeed(this.seed, draw), norms, orthogonal });
  }
}

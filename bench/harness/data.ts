/** Deterministic inputs: q, k, v, dOut ~ N(0, 1), omega from src/features if present. */
import type { BenchCase, Inputs } from './types.ts';

/** mulberry32: small seeded PRNG, uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) into a new Float32Array. */
export function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const u = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u())) * scale;
    const th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

type RandomProjection = (o: { h: number; m: number; d: number; seed: number }) => unknown;
let projection: RandomProjection | null | undefined;
/** Where omega came from (reported in the JSON header). */
export let omegaSource = 'not generated yet';

/** `randomProjection` from src/features/index.ts when it exists, else null. */
async function loadProjection(): Promise<RandomProjection | null> {
  if (projection !== undefined) return projection;
  let found: RandomProjection | null = null;
  try {
    const spec = new URL('../../src/features/index.ts', import.meta.url).href;
    const mod = await import(spec);
    if (typeof mod.randomProjection === 'function') found = mod.randomProjection;
  } catch {
    /* not written yet */
  }
  projection = found;
  return found;
}

/** omega: [h, m, d]. */
export async function makeOmega(h: number, m: number, d: number, seed: number): Promise<Float32Array> {
  const rp = await loadProjection();
  if (rp) {
    try {
      const w = rp({ h, m, d, seed });
      if (w instanceof Float32Array && w.length === h * m * d) {
        omegaSource = 'randomProjection() from src/features';
        return w;
      }
      omegaSource = 'own Gaussian (randomProjection returned an unexpected value)';
    } catch (e) {
      omegaSource = `own Gaussian (randomProjection threw: ${(e as Error).message})`;
    }
  } else {
    omegaSource = 'own Gaussian N(0,1) [h,m,d] (src/features/index.ts not available)';
  }
  return gaussian(h * m * d, seed ^ 0x5eed);
}

/** Cache of q/k/v/dOut by (bh, t, d, dv): the same tokens are reused across M. */
const tokenCache = new Map<string, Omit<Inputs, 'omega'>>();

export async function makeInputs(c: BenchCase, seed = 1): Promise<Inputs> {
  const key = `${c.b}x${c.h}x${c.t}x${c.d}x${c.dv}:${seed}`;
  let tok = tokenCache.get(key);
  if (!tok) {
    tokenCache.clear(); // keep one set alive: the large cases are hundreds of MB
    const n = c.b * c.h * c.t;
    tok = {
      q: gaussian(n * c.d, seed * 4 + 1),
      k: gaussian(n * c.d, seed * 4 + 2),
      v: gaussian(n * c.dv, seed * 4 + 3),
      dOut: gaussian(n * c.dv, seed * 4 + 4),
    };
    tokenCache.set(key, tok);
  }
  return { ...tok, omega: await makeOmega(c.h, c.m, c.d, 1000 + seed) };
}

export function clearInputCache(): void {
  tokenCache.clear();
}

/** Timing helpers: adaptive repetition count and summaries. No asserts: this is a benchmark. */

export interface Summary {
  reps: number;
  median: number;
  min: number;
  max: number;
  q1: number;
  q3: number;
  mean: number;
}

export const now = (): number => performance.now();

function quantile(sorted: number[], p: number): number {
  if (sorted.length === 1) return sorted[0];
  const x = p * (sorted.length - 1);
  const lo = Math.floor(x);
  const hi = Math.ceil(x);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
}

export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  return {
    reps: s.length,
    median: quantile(s, 0.5),
    min: s[0],
    max: s[s.length - 1],
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/**
 * Reps from the warm-up time: fast cases (< 0.6 s) get 5..21 reps within ~3 s,
 * medium (< 5 s) 3, very slow 1. `fixed` (--reps) overrides.
 */
export function chooseReps(warmMs: number, fixed?: number): number {
  if (fixed && fixed > 0) return fixed;
  if (warmMs < 600) return Math.min(21, Math.max(5, Math.floor(3000 / Math.max(warmMs, 1e-3))));
  if (warmMs < 5000) return 3;
  return 1;
}

/** Time `reps` calls of fn (awaited), in ms. */
export async function timeReps(fn: () => unknown, reps: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await fn();
    out.push(now() - t0);
  }
  return out;
}

export async function timeOnce(fn: () => unknown): Promise<number> {
  const t0 = now();
  await fn();
  return now() - t0;
}

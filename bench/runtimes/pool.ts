/**
 * Worker pool speedup: forward + backward at B·H = 8, T = 16 384, M = 128, d = dv = 64 (FAVOR+,
 * chunk 64) with one kernel instance in the calling thread vs the pool with N worker threads.
 * Alternates the configurations rep by rep so that background load hits them alike; reports
 * median and best, and the load average before and after.
 *
 *   npx tsx bench/runtimes/pool.ts [--reps=7] [--threads=1,2] [--t=16384] [--json=file]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { init, randomProjection } from '../../src/index.ts';
import { createPool, type KernelPool } from '../../src/parallel/index.ts';

const arg = (n: string, d: string) => process.argv.find((a) => a.startsWith(`--${n}=`))?.split('=')[1] ?? d;
const reps = Number(arg('reps', '7'));
const threadList = arg('threads', '1,2').split(',').map(Number);
const T = Number(arg('t', '16384'));
const dims = { b: 1, h: 8, t: T, d: 64, m: 128, dv: 64 };
const n = dims.b * dims.h * dims.t;
let s = 1;
const rnd = (len: number) => Float32Array.from({ length: len }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 2);
const q = rnd(n * dims.d),
  k = rnd(n * dims.d),
  v = rnd(n * dims.dv),
  dOut = rnd(n * dims.dv);
const omega = randomProjection({ h: dims.h, m: dims.m, d: dims.d, seed: 3 });
const args = { q, k, v, dims, feature: 'favor' as const, omega, chunk: 64 };

type Runner = { name: string; run: () => Promise<void>; pool?: KernelPool };
const single = await init();
const runners: Runner[] = [
  {
    name: 'single instance (sync, calling thread)',
    run: async () => {
      const f = single.causalForward(args);
      single.causalBackward({ ...args, stateOut: f.state, dOut });
    },
  },
];
for (const t of threadList) {
  if (t === 1) continue;
  const pool = await createPool({ threads: t });
  runners.push({
    name: `pool, ${t} worker threads`,
    pool,
    run: async () => {
      const f = await pool.causalForward(args);
      await pool.causalBackward({ ...args, stateOut: f.state, dOut });
    },
  });
}
const load0 = loadavg();
for (const r of runners) await r.run(); // warm-up
const times: number[][] = runners.map(() => []);
for (let i = 0; i < reps; i++) {
  for (const [j, r] of runners.entries()) {
    const t0 = performance.now();
    await r.run();
    times[j].push(performance.now() - t0);
  }
}
const load1 = loadavg();
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const base = med(times[0]);
const rows = runners.map((r, j) => ({
  name: r.name,
  info: r.pool?.info,
  medianMs: +med(times[j]).toFixed(1),
  bestMs: +Math.min(...times[j]).toFixed(1),
  speedupMedian: +(base / med(times[j])).toFixed(2),
  speedupBest: +(Math.min(...times[0]) / Math.min(...times[j])).toFixed(2),
  samplesMs: times[j].map((x) => +x.toFixed(1)),
}));
const report = {
  date: new Date().toISOString(),
  case: { ...dims, bh: dims.b * dims.h, feature: 'favor', chunk: 64, mode: 'forward + backward', reps },
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, simd: single.simd },
  loadAverage: { before: load0.map((x) => +x.toFixed(2)), after: load1.map((x) => +x.toFixed(2)), procLoadavg: readFileSync('/proc/loadavg', 'utf8').trim() },
  rows,
};
console.log(JSON.stringify(report, null, 2));
for (const r of rows)
  console.log(`${r.name.padEnd(40)} median ${r.medianMs} ms  best ${r.bestMs} ms  speedup ×${r.speedupMedian} (median) ×${r.speedupBest} (best)`);
const out = arg('json', '');
if (out) writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
for (const r of runners) await r.pool?.dispose();

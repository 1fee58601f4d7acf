/**
 * TF.js baselines for bench:runtimes (Node only, @tensorflow/tfjs-backend-wasm, SIMD, 1 thread):
 * the bench/methods tfjs-softmax and tfjs-naive methods on the same grid and inputs as the
 * kernel runs. Prints `RESULT {json}`. Skips a case whose estimate exceeds --max-bytes.
 *   node --import tsx bench/runtimes/tfjs-baselines.ts --t=1024,4096 --bh=4 --m=128 --reps=3
 */
import { tfjsNaive } from '../methods/tfjs-naive.ts';
import { tfjsSoftmax } from '../methods/tfjs-softmax.ts';
import { gaussian } from '../harness/data.ts';
import type { BenchCase, Method, Mode } from '../harness/types.ts';
import { randomProjection } from '../../src/index.ts';

const arg = (n: string, d: string) => process.argv.find((a) => a.startsWith(`--${n}=`))?.split('=')[1] ?? d;
const ts = arg('t', '1024,4096').split(',').map(Number);
const bh = Number(arg('bh', '4'));
const m = Number(arg('m', '128'));
const reps = Number(arg('reps', '3'));
const maxBytes = Number(arg('max-bytes', String(6e9)));
const rows: unknown[] = [];
for (const method of [tfjsSoftmax, tfjsNaive] as Method[]) {
  await method.init?.();
  for (const t of ts) {
    const c: BenchCase = { bh, b: 1, h: bh, t, d: 64, dv: 64, m };
    const n = bh * t * 64;
    const x = { q: gaussian(n, 1), k: gaussian(n, 2), v: gaussian(n, 3), dOut: gaussian(n, 4), omega: randomProjection({ h: bh, m, d: 64, seed: 5 }) };
    for (const mode of method.modes as Mode[]) {
      const est = method.estimateBytes?.(c, mode) ?? 0;
      if (est > maxBytes) {
        rows.push({ method: method.name, t, bh, m, mode, status: `skipped: estimate ${(est / 1e9).toFixed(1)} GB > ${(maxBytes / 1e9).toFixed(1)} GB` });
        continue;
      }
      let ctx: unknown;
      try {
        ctx = await method.setup(c, x);
        const meas = await method.measure(ctx, mode);
        const call = mode === 'fwd' ? () => method.fwd(ctx) : () => method.fwdbwd!(ctx);
        if (!meas.warmed) await call();
        const samples: number[] = [];
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          await call();
          samples.push(performance.now() - t0);
        }
        const s = [...samples].sort((a, b) => a - b);
        rows.push({
          method: method.name,
          t,
          bh,
          m,
          mode,
          status: 'ok',
          medianMs: s[Math.floor(s.length / 2)],
          bestMs: s[0],
          samplesMs: samples,
          peakBytes: meas.peakBytes,
          rssBytes: process.memoryUsage().rss,
        });
      } catch (e) {
        rows.push({ method: method.name, t, bh, m, mode, status: `error: ${(e as Error).message.split('\n')[0]}` });
        await method.recover?.().catch(() => {});
      } finally {
        if (ctx) await method.dispose(ctx);
      }
    }
  }
}
const tfv = (await import('@tensorflow/tfjs-core')).version_core;
console.log(`RESULT ${JSON.stringify({ runtime: `node ${process.version} + tfjs-backend-wasm ${tfv}`, rows })}`);

/**
 * One process, one measurement, for bench/training.ts: SLiM training steps of `ReferenceLM` (the
 * paper's architecture, the same as bench/training/torch_slim.py) with `SlimTrainer` and Adam on
 * the TF.js wasm backend, one thread. Prints one JSON line: tokens/s, step times, the process's
 * peak RSS over the timed steps and, with `--products`, every dense product of one profiled step (shape, time,
 * GFLOP/s) next to TF.js's own untransposed `matMul` on the same shapes, timed in this process
 * (best of 5 batches).
 *
 *   node --import tsx bench/training/step.ts --config=small|ptb --feature=sqr|favor+ --t=1024
 *        --slice=256 --reps=3 [--products] [--progress] [--binary=relaxed|simd|scalar]
 *
 * `--binary` picks our kernels' wasm binary (default: the best the engine runs); the dense layers
 * are TF.js's own wasm binary either way.
 *
 * A benchmark: nothing here asserts a time.
 */
import * as tf from '@tensorflow/tfjs';
import { useBackend } from '../../examples/backend.ts';
import { hardenWasmBackend } from '../harness/tfjs.ts';
import { init, randomProjection, Rng, type SimdOption } from '../../src/index.ts';
import { ReferenceLM, type ReferenceConfig } from '../../src/model/reference_lm.ts';
import { SlimTrainer } from '../../src/train/slim.ts';

const CONFIGS: Record<string, Omit<ReferenceConfig, 'feature'>> = {
  small: { vocab: 256, hidden: 128, layers: 2, ffn: 512, heads: 4, gptln: true },
  ptb: { vocab: 256, hidden: 512, layers: 3, ffn: 2048, heads: 8, gptln: true },
};

interface Product {
  m: number;
  k: number;
  n: number;
  calls: number;
  ms: number;
  gflops: number;
  /** TF.js `matMul(a, b)` (2-D, untransposed: XNNPACK) on the same shape, this process. */
  fastPathGflops: number;
}

const flags = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
  if (!m || !['config', 'feature', 't', 'slice', 'reps', 'products', 'progress', 'binary'].includes(m[1])) throw new Error(`step.ts: unknown argument ${a}`);
  flags.set(m[1], m[2] ?? 'true');
}
const configName = flags.get('config') ?? 'small';
if (!CONFIGS[configName]) throw new Error(`step.ts: --config must be one of ${Object.keys(CONFIGS).join(', ')}`);
const feature = flags.get('feature') ?? 'sqr';
const T = Number(flags.get('t') ?? 1024);
const slice = Number(flags.get('slice') ?? 256);
const reps = Number(flags.get('reps') ?? 3);
const cfg: ReferenceConfig = { ...CONFIGS[configName], feature };

const backend = await useBackend('wasm');
hardenWasmBackend(); // synchronous kernel timer for tf.profile, malloc failures as errors
const BINARY_FLAG: Record<string, SimdOption | undefined> = { relaxed: 'relaxed', simd: true, scalar: false, best: undefined };
const binaryFlag = flags.get('binary') ?? 'best';
if (!(binaryFlag in BINARY_FLAG)) throw new Error(`step.ts: --binary must be one of ${Object.keys(BINARY_FLAG).join(', ')}`);
const kernels = await init({ simd: BINARY_FLAG[binaryFlag] });
const hd = cfg.hidden / cfg.heads;
const rfs =
  feature === 'favor+'
    ? Array.from({ length: cfg.layers }, (_, l) => {
        const om = randomProjection({ h: cfg.heads, m: hd, d: hd, seed: 100 + l }); // [h, r, i] → rfs [h, i, r]
        const r = new Float32Array(om.length);
        for (let h = 0; h < cfg.heads; h++) for (let a = 0; a < hd; a++) for (let i = 0; i < hd; i++) r[(h * hd + i) * hd + a] = om[(h * hd + a) * hd + i];
        return r;
      })
    : undefined;
const model = new ReferenceLM(kernels, cfg, rfs);
model.initWeights(1);
let reported = -1;
const onSlice = flags.has('progress')
  ? (pass: 1 | 2, done: number, total: number) => {
      // One line per 5 % of each pass, on stderr.
      const pct = Math.floor((20 * done) / total) * 5;
      if (pct !== reported || done === total) process.stderr.write(`pass ${pass}: ${done}/${total} slices\n`);
      reported = done === total ? -1 : pct;
    }
  : undefined;
const trainer = new SlimTrainer(model, { sliceLength: slice, optimizer: tf.train.adam(1e-3), onSlice });
const rng = new Rng(7);
const tokens = Int32Array.from({ length: T + 1 }, () => rng.nextU32() % cfg.vocab);
const batch = { tokens, batch: 1 };

const warm = T > 65_536 ? { tokens: tokens.subarray(0, 1025), batch: 1 } : batch;
trainer.step(warm); // Adam's moments, compiled code
const stepMs: number[] = [];
const losses: number[] = [];
for (let i = 0; i < reps; i++) {
  const t0 = performance.now();
  losses.push(trainer.step(batch).loss);
  stepMs.push(performance.now() - t0);
}

const peakRssBytes = process.resourceUsage().maxRSS * 1024; // before any profiling
let products: Product[] | undefined;
let transposeMs: number | undefined;
let profiledStepMs: number | undefined;
if (flags.has('products')) {
  const t0 = performance.now();
  const info = await tf.profile(() => {
    trainer.step(batch);
    return [] as tf.Tensor[];
  });
  profiledStepMs = performance.now() - t0;
  const byShape = new Map<string, Product>();
  transposeMs = 0;
  for (const k of info.kernels) {
    if (k.name === 'SlimTranspose2D') transposeMs += k.kernelTimeMs as number;
    if (k.name !== 'BatchMatMul') continue;
    const [a, b] = k.inputShapes as number[][];
    const [m, kk, n] = [a[a.length - 2], a[a.length - 1], b[b.length - 1]];
    const key = `${m}x${kk}x${n}`;
    const p = byShape.get(key) ?? { m, k: kk, n, calls: 0, ms: 0, gflops: 0, fastPathGflops: 0 };
    p.calls++;
    p.ms += k.kernelTimeMs as number;
    byShape.set(key, p);
  }
  products = [...byShape.values()].sort((x, y) => y.ms - x.ms);
  for (const p of products) {
    p.gflops = (2 * p.m * p.k * p.n * p.calls) / (p.ms * 1e6);
    const [a, b] = [tf.randomNormal([p.m, p.k]), tf.randomNormal([p.k, p.n])];
    const run = () =>
      tf.tidy(() => {
        tf.matMul(a, b).dataSync();
      });
    run();
    // Best of 5 batches: the fast path at its fastest, so the ratio errs against us on a noisy machine.
    const n = Math.max(3, Math.min(50, Math.round(1e9 / (2 * p.m * p.k * p.n))));
    for (let batch = 0; batch < 5; batch++) {
      const s = performance.now();
      for (let i = 0; i < n; i++) run();
      p.fastPathGflops = Math.max(p.fastPathGflops, (2 * p.m * p.k * p.n * n) / ((performance.now() - s) * 1e6));
    }
    tf.dispose([a, b]);
  }
}

const median = [...stepMs].sort((a, b) => a - b)[Math.floor(stepMs.length / 2)];
console.log(
  JSON.stringify({
    method: 'ours',
    backend,
    binary: kernels.binary,
    node: process.version,
    threads: 1,
    config: configName,
    feature,
    model: cfg,
    T,
    slice,
    stepMs,
    tokensPerSec: (T * 1000) / median,
    peakRssBytes,
    losses,
    products,
    transposeMs,
    profiledStepMs,
  }),
);
model.dispose();
kernels.dispose();

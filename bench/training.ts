/**
 * Training benchmark (`npm run bench:training`): memory of one training step vs sequence length
 * for the SLiM trainer and full backpropagation, training throughput, decoding latency.
 *
 *   npm run bench:training [-- --t=1024,2048,4096,8192,16384] [--decode-pos=65536] [--reps=3]
 *   npm run bench:training -- --compare [--t=1024] [--reps=5] [--prefix-sum=false]
 *                                         ours vs PyTorch, small and Penn Treebank configs
 *   npm run bench:training -- --long [--long-t=1048576]
 *                                         one SLiM step over a million tokens vs T = 1024
 *   npm run bench:training -- --binaries [--node=PATH]
 *                                         our step on the relaxed-SIMD, SIMD and scalar kernels
 * (the last three: bench/training/side_by_side.ts)
 *
 * Model: 2 layers, 4 heads, d_model 128, FFN 512, FAVOR+ with 32 features per head, vocabulary
 * 256, B = 1, TF.js wasm backend. Writes bench/results/training-<date>.json and
 * training-latest.{json,md,svg,png}. A benchmark: nothing here asserts.
 */
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tfjsWasmHeapBytes, useBackend } from '../examples/backend.ts';
import { init, Rng } from '../src/index.ts';
import { PerformerLM, type PerformerLMConfig } from '../src/model/performer_lm.ts';
import { SlimTrainer } from '../src/train/slim.ts';
import { machineInfo, machineMarkdown } from './harness/machine.ts';
import { hardenWasmBackend } from './harness/tfjs.ts';

const flags = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
  if (!m || !['t', 'decode-pos', 'reps', 'slice', 'compare', 'long', 'long-t', 'prefix-sum', 'binaries', 'node'].includes(m[1]))
    throw new Error(`unknown argument ${a}`);
  flags.set(m[1], m[2] ?? 'true');
}
if (flags.has('compare') || flags.has('long') || flags.has('binaries')) {
  const { binaries, compare, long } = await import('./training/side_by_side.ts');
  const slice = Number(flags.get('slice') ?? 256);
  if (flags.has('compare'))
    await compare({ reps: Number(flags.get('reps') ?? 5), slice, T: Number(flags.get('t') ?? 1024), prefixSum: flags.get('prefix-sum') !== 'false' });
  if (flags.has('binaries')) await binaries({ reps: Number(flags.get('reps') ?? 3), slice, T: Number(flags.get('t') ?? 1024), node: flags.get('node') });
  if (flags.has('long')) await long({ longT: Number(flags.get('long-t') ?? 1_048_576), slice });
  process.exit(0);
}
const Ts = (flags.get('t') ?? '1024,2048,4096,8192,16384').split(',').map(Number);
const DECODE_FAR = Number(flags.get('decode-pos') ?? 65536);
const DECODE_NEAR = 64;
const REPS = Number(flags.get('reps') ?? 3);
const SLICE = Number(flags.get('slice') ?? 256);
const CONFIG: PerformerLMConfig = { vocabSize: 256, dModel: 128, heads: 4, layers: 2, ffn: 512, feature: 'favor', features: 32, seed: 1 };
const MB = 1024 * 1024;
const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

function tokens(T: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: T + 1 }, () => rng.nextU32() % CONFIG.vocabSize);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface MemoryRow {
  mode: 'slim' | 'full';
  T: number;
  status: 'ok' | string;
  /** tf.profile peak tensor bytes during the step (includes weights and Adam moments). */
  tfjsPeakBytes?: number;
  /** Size of the attention kernels' wasm memory after the step (a fresh instance per case). */
  kernelWasmBytes?: number;
  totalBytes?: number;
  stepMs?: number;
  tfjsHeapBytes?: number;
}

/** One training step on a fresh model and kernel instance: peak memory and time. */
async function memoryCase(mode: 'slim' | 'full', T: number): Promise<MemoryRow> {
  const kernels = await init();
  const model = new PerformerLM(kernels, CONFIG);
  const optimizer = tf.train.adam(1e-3);
  const trainer = new SlimTrainer(model, { sliceLength: SLICE, mode, optimizer });
  const batch = { tokens: tokens(T, T), batch: 1 };
  try {
    trainer.step({ tokens: tokens(64, 1), batch: 1 }); // create the Adam moments first
    const t0 = performance.now();
    const info = await tf.profile(() => {
      trainer.step(batch);
      return [] as tf.Tensor[];
    });
    const stepMs = performance.now() - t0;
    const kernelWasmBytes = kernels.memoryBytes();
    return {
      mode,
      T,
      status: 'ok',
      tfjsPeakBytes: info.peakBytes,
      kernelWasmBytes,
      totalBytes: info.peakBytes + kernelWasmBytes,
      stepMs,
      tfjsHeapBytes: tfjsWasmHeapBytes(),
    };
  } catch (e) {
    return { mode, T, status: `failed: ${String((e as Error).message ?? e).slice(0, 160)}` };
  } finally {
    model.dispose();
    optimizer.dispose();
    kernels.dispose();
  }
}

/** Median tokens/s of `reps` steps after a warm-up step (no profiler). */
async function throughput(mode: 'slim' | 'full', T: number): Promise<{ mode: string; T: number; tokensPerSec: number; stepMs: number[] }> {
  const kernels = await init();
  const model = new PerformerLM(kernels, CONFIG);
  const trainer = new SlimTrainer(model, { sliceLength: SLICE, mode, optimizer: tf.train.adam(1e-3) });
  const batch = { tokens: tokens(T, 7), batch: 1 };
  trainer.step(batch);
  const stepMs: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    trainer.step(batch);
    stepMs.push(performance.now() - t0);
  }
  model.dispose();
  trainer.optimizer.dispose();
  kernels.dispose();
  return { mode, T, tokensPerSec: (T * 1000) / median(stepMs), stepMs };
}

/**
 * Per-token decoding latency at context positions `near` and `far`: each context is run through
 * `forward` in slices of 1024 (as `generate` does), then single-token steps with the carried
 * states alternate between the two contexts, so background noise hits both alike.
 */
async function decodeLatency(
  near: number,
  far: number,
  n = 201,
): Promise<Array<{ position: number; medianMs: number; samplesMs: number[]; promptSec: number }>> {
  const kernels = await init();
  const model = new PerformerLM(kernels, CONFIG);
  const contexts = [near, far].map((position) => {
    const prompt = tokens(position - 1, 3);
    let states = model.emptyStates(1);
    const t0 = performance.now();
    for (let i = 0; i < prompt.length; i += 1024) {
      const ids = prompt.subarray(i, i + 1024);
      tf.tidy(() => {
        states = model.forward(tf.tensor2d(ids, [1, ids.length], 'int32'), { offset: i, states }).statesOut;
      });
    }
    return { position, states, pos: prompt.length, last: prompt[prompt.length - 1], samplesMs: [] as number[], promptSec: (performance.now() - t0) / 1000 };
  });
  for (let i = 0; i < n + 5; i++) {
    for (const c of i % 2 ? [...contexts].reverse() : contexts) {
      const t0 = performance.now();
      const logits = tf.tidy(() => {
        const f = model.forward(tf.tensor2d([c.last], [1, 1], 'int32'), { offset: c.pos, states: c.states });
        c.states = f.statesOut;
        return f.logits.dataSync();
      });
      c.last = logits.indexOf(Math.max(...logits)); // greedy
      c.pos++;
      if (i >= 5) c.samplesMs.push(performance.now() - t0); // 5 warm-up steps
    }
  }
  model.dispose();
  kernels.dispose();
  return contexts.map((c) => ({ position: c.position, medianMs: median(c.samplesMs), samplesMs: c.samplesMs, promptSec: c.promptSec }));
}

// ---------------------------------------------------------------- output

function svgPlot(rows: MemoryRow[]): string {
  const W = 760,
    H = 440,
    L = 80,
    R = 190,
    Tp = 50,
    Bt = 60;
  const ok = rows.filter((r) => r.status === 'ok');
  const xs = [...new Set(rows.map((r) => r.T))].sort((a, b) => a - b);
  const ymax = Math.max(...ok.map((r) => r.totalBytes! / MB)) * 1.1;
  const lx = (T: number) => L + ((Math.log2(T) - Math.log2(xs[0])) / Math.max(1e-9, Math.log2(xs[xs.length - 1]) - Math.log2(xs[0]))) * (W - L - R);
  const ly = (mb: number) => H - Bt - (mb / ymax) * (H - Tp - Bt);
  const step = 10 ** Math.floor(Math.log10(ymax / 4));
  const tick = [1, 2, 5, 10].map((k) => k * step).find((s) => ymax / s <= 8)!;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - R / 2 + L / 2}" y="24" text-anchor="middle" font-size="15">Peak memory of one training step vs sequence length</text>`,
    `<text x="${W / 2 - R / 2 + L / 2}" y="40" text-anchor="middle" fill="#555">2 layers, 4 heads, d_model 128, FAVOR+ 32 features/head, B = 1 (TF.js tensors + kernel wasm memory)</text>`,
  ];
  for (let v = 0; v <= ymax; v += tick) {
    out.push(
      `<line x1="${L}" x2="${W - R}" y1="${ly(v)}" y2="${ly(v)}" stroke="#e3e3e3"/>`,
      `<text x="${L - 6}" y="${ly(v) + 4}" text-anchor="end">${v}</text>`,
    );
  }
  for (const T of xs)
    out.push(
      `<line x1="${lx(T)}" x2="${lx(T)}" y1="${H - Bt}" y2="${H - Bt + 5}" stroke="black"/>`,
      `<text x="${lx(T)}" y="${H - Bt + 19}" text-anchor="middle">${T}</text>`,
    );
  out.push(
    `<line x1="${L}" x2="${W - R}" y1="${H - Bt}" y2="${H - Bt}" stroke="black"/>`,
    `<line x1="${L}" x2="${L}" y1="${Tp}" y2="${H - Bt}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle">sequence length T (log scale)</text>`,
    `<text transform="translate(22 ${(Tp + H - Bt) / 2}) rotate(-90)" text-anchor="middle">peak memory (MiB)</text>`,
  );
  const series: Array<['slim' | 'full', string, string]> = [
    ['slim', '#1f77b4', `SLiM, slice ${SLICE}`],
    ['full', '#d62728', 'full backprop'],
  ];
  series.forEach(([mode, color, label], i) => {
    const pts = ok.filter((r) => r.mode === mode).map((r) => [lx(r.T), ly(r.totalBytes! / MB)]);
    if (pts.length)
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2.5" points="${pts.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="${color}"/>`);
    const failed = rows.filter((r) => r.mode === mode && r.status !== 'ok');
    for (const r of failed) out.push(`<text x="${lx(r.T)}" y="${ly(0) - 8}" text-anchor="middle" fill="${color}">✕</text>`);
    const y = Tp + 20 + 22 * i;
    out.push(
      `<line x1="${W - R + 14}" x2="${W - R + 38}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2.5"/>`,
      `<text x="${W - R + 44}" y="${y + 4}">${label}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

function writeAtomic(file: string, text: string | Uint8Array): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

// ---------------------------------------------------------------- main

const backend = await useBackend('wasm');
hardenWasmBackend();
const machine = machineInfo();
const header = machineMarkdown(machine);
console.log(`# Training benchmark\n\n${header}\n- TF.js backend: ${backend}\n`);

const memory: MemoryRow[] = [];
for (const mode of ['slim', 'full'] as const) {
  for (const T of Ts) {
    const prev = memory.find((r) => r.mode === mode && r.T < T && r.status !== 'ok');
    const row = prev ? { mode, T, status: 'skipped (a shorter T already failed)' } : await memoryCase(mode, T);
    memory.push(row);
    console.log(
      row.status === 'ok'
        ? `memory ${mode.padEnd(4)} T=${String(T).padStart(5)}: TF.js peak ${(row.tfjsPeakBytes! / MB).toFixed(1)} MiB + kernel wasm ${(row.kernelWasmBytes! / MB).toFixed(1)} MiB = ${(row.totalBytes! / MB).toFixed(1)} MiB (step ${(row.stepMs! / 1000).toFixed(1)} s under the profiler)`
        : `memory ${mode} T=${T}: ${row.status}`,
    );
  }
}
const slimAt = (T: number) => memory.find((r) => r.mode === 'slim' && r.T === T && r.status === 'ok')?.totalBytes;
const memRatio = slimAt(Ts[Ts.length - 1]) && slimAt(Ts[0]) ? slimAt(Ts[Ts.length - 1])! / slimAt(Ts[0])! : NaN;

const thr = [await throughput('slim', 1024), await throughput('full', 1024)];
const thrRatio = thr[1].tokensPerSec / thr[0].tokensPerSec;
for (const r of thr)
  console.log(`throughput ${r.mode.padEnd(4)} T=1024: ${r.tokensPerSec.toFixed(0)} tokens/s (median step ${median(r.stepMs).toFixed(0)} ms)`);

const [near, far] = await decodeLatency(DECODE_NEAR, DECODE_FAR);
const latRatio = far.medianMs / near.medianMs;
for (const r of [near, far])
  console.log(
    `decode at position ${r.position}: ${r.medianMs.toFixed(2)} ms/token (median of ${r.samplesMs.length}, interleaved; context built in ${r.promptSec.toFixed(1)} s)`,
  );

const targets = [
  { what: `SLiM memory at T=${Ts[Ts.length - 1]} / T=${Ts[0]}`, value: memRatio, target: '≤ 1.2', met: memRatio <= 1.2 },
  { what: 'full-backprop / SLiM training throughput at T=1024', value: thrRatio, target: '≤ 2', met: thrRatio <= 2 },
  { what: `decode latency at position ${DECODE_FAR} / position ${DECODE_NEAR}`, value: latRatio, target: '≤ 1.10', met: latRatio <= 1.1 },
];
console.log('');
for (const t of targets) console.log(`${t.met ? 'MET ' : 'MISS'} ${t.what}: ${t.value.toFixed(3)} (target ${t.target})`);

mkdirSync(RESULTS, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const json = JSON.stringify({ machine, backend, config: CONFIG, slice: SLICE, memory, throughput: thr, decode: [near, far], targets }, null, 2);
writeAtomic(path.join(RESULTS, `training-${stamp}.json`), json);
writeAtomic(path.join(RESULTS, 'training-latest.json'), json);
const svg = svgPlot(memory);
writeAtomic(path.join(RESULTS, 'training-latest.svg'), svg);

const fmt = (b?: number) => (b === undefined ? '—' : (b / MB).toFixed(1));
const md = [
  '# Training benchmark',
  '',
  header,
  `- TF.js backend: ${backend}; model ${JSON.stringify(CONFIG)}; B = 1; SLiM slice ${SLICE}`,
  '',
  '## Peak memory of one training step (MiB)',
  '',
  "TF.js peak = `tf.profile(step).peakBytes`, every live tensor (weights, Adam moments, gradients, tape) at its highest point; kernel wasm = the attention kernels' wasm memory after the step (a fresh instance per case, so its high-water mark). Token ids (O(T) JS arrays) are not counted.",
  '',
  '| T | SLiM TF.js | SLiM kernel wasm | **SLiM total** | full TF.js | full kernel wasm | **full total** |',
  '|---:|---:|---:|---:|---:|---:|---:|',
  ...Ts.map((T) => {
    const s = memory.find((r) => r.mode === 'slim' && r.T === T)!;
    const f = memory.find((r) => r.mode === 'full' && r.T === T)!;
    const cells = (r: MemoryRow) => (r.status === 'ok' ? [fmt(r.tfjsPeakBytes), fmt(r.kernelWasmBytes), `**${fmt(r.totalBytes)}**`] : [r.status, '', '']);
    return `| ${T} | ${[...cells(s), ...cells(f)].join(' | ')} |`;
  }),
  '',
  '![memory vs T](training-latest.svg)',
  '',
  '## Throughput and decoding',
  '',
  `| measure | value |`,
  `|---|---:|`,
  ...thr.map(
    (r) =>
      `| training, ${r.mode === 'slim' ? `SLiM slice ${SLICE}` : 'full backprop'}, T = 1024 | ${r.tokensPerSec.toFixed(0)} tokens/s (median of ${REPS} steps: ${median(r.stepMs).toFixed(0)} ms) |`,
  ),
  ...[near, far].map((r) => `| decoding at position ${r.position} | ${r.medianMs.toFixed(2)} ms/token (median of ${r.samplesMs.length}) |`),
  '',
  '## Targets',
  '',
  '| target | measured | goal | |',
  '|---|---:|---:|---|',
  ...targets.map((t) => `| ${t.what} | ${t.value.toFixed(3)} | ${t.target} | ${t.met ? 'met' : '**missed**'} |`),
  '',
].join('\n');
writeAtomic(path.join(RESULTS, 'training-latest.md'), md);

// PNG of the plot, when a headless Chromium is around.
const png = path.join(RESULTS, 'training-latest.png');
const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find(existsSync);
if (chromium) {
  rmSync(png, { force: true });
  const r = spawnSync(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--hide-scrollbars',
      `--screenshot=${png}`,
      '--window-size=760,440',
      path.join(RESULTS, 'training-latest.svg'),
    ],
    {
      timeout: 60_000,
      stdio: 'ignore',
    },
  );
  console.log(existsSync(png) ? 'wrote training-latest.png' : `no PNG (chromium exit ${r.status})`);
}
console.log(`wrote bench/results/training-${stamp}.json, training-latest.{json,md,svg}`);

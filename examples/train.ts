/**
 * The main demo (`npm start`): trains a small character-level PerformerLM with the SLiM trainer,
 * saves a checkpoint, reloads it and generates a sample from the reloaded model.
 *
 *   npm start                                   # public-domain corpus in examples/data/
 *   npm start -- --task=copy                    # the SLiM paper's synthetic copy task
 *   npm start -- --seq=1024 --slice=128 --d-model=128 --layers=4 --steps=500 --corpus=my.txt
 *   npm start -- --help
 */
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, Rng } from '../src/index.ts';
import { PerformerLM } from '../src/model/performer_lm.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint/index.ts';
import { SlimTrainer, type Batch } from '../src/train/slim.ts';
import { tfjsWasmHeapBytes, useBackend } from './backend.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: npm start -- [flags]
  --task=text|copy     character-level text (default) or the synthetic copy task
  --corpus=FILE        training text (default examples/data/corpus.txt)
  --steps=N            optimisation steps (default 150 text, 300 copy)
  --seq=T              tokens per sequence (default 256 text, 32 copy)
  --slice=S            SLiM slice length: memory follows it, not --seq (default 64)
  --batch=B            sequences per step (default 4)
  --d-model=D --layers=L --heads=H --feature=M   model size (default 64, 2, 4, 16 features per head)
  --lr=X               Adam learning rate (default 3e-3)
  --out=FILE           checkpoint path (default checkpoints/<task>.slimckpt)
  --sample-len=N       characters to generate at the end (default 300)
  --seed=N             seed of the weights, features, data and sampling (default 1)
  --backend=wasm|cpu   TF.js backend (default wasm, cpu if it fails to load)`;

function parseFlags(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}\n${USAGE}`);
    flags.set(m[1], m[2] ?? (argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : 'true'));
  }
  return flags;
}

const flags = parseFlags(process.argv.slice(2));
if (flags.has('help')) {
  console.log(USAGE);
  process.exit(0);
}
const known = ['task', 'corpus', 'steps', 'seq', 'slice', 'batch', 'd-model', 'layers', 'heads', 'feature', 'lr', 'out', 'sample-len', 'seed', 'backend'];
for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown flag --${k}\n${USAGE}`);
const task = flags.get('task') ?? 'text';
if (task !== 'text' && task !== 'copy') throw new Error(`--task must be text or copy, got ${task}`);
function int(name: string, dflt: number): number {
  const v = flags.has(name) ? Number(flags.get(name)) : dflt;
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer, got ${flags.get(name)}`);
  return v;
}
const steps = int('steps', task === 'copy' ? 300 : 150);
const T = int('seq', task === 'copy' ? 32 : 256);
const slice = int('slice', 64);
const B = int('batch', 4);
const dModel = int('d-model', 64);
const layers = int('layers', 2);
const heads = int('heads', 4);
const features = int('feature', 16);
const sampleLen = int('sample-len', 300);
const seed = int('seed', 1);
const lr = Number(flags.get('lr') ?? 3e-3);
const out = path.resolve(flags.get('out') ?? path.join('checkpoints', `${task}.slimckpt`));

// ----- data ---------------------------------------------------------------------------------
const rng = new Rng(seed);
const randInt = (n: number) => Math.floor(rng.nextFloat() * n);

interface Task {
  vocab: string[];
  batch(): Batch;
  describe: string;
}

function textTask(): Task {
  const file = path.resolve(flags.get('corpus') ?? path.join(here, 'data', 'corpus.txt'));
  const text = readFileSync(file, 'utf8');
  const chars = [...new Set(text)].sort();
  if (text.length < T + 2) throw new Error(`corpus ${file} has ${text.length} characters, fewer than --seq + 2 = ${T + 2}`);
  const ids = Int32Array.from(text, (c) => chars.indexOf(c));
  return {
    vocab: chars,
    describe: `${path.relative(process.cwd(), file)}: ${text.length} characters, ${chars.length} distinct`,
    batch() {
      const tokens = new Int32Array(B * (T + 1));
      for (let b = 0; b < B; b++) {
        const at = randInt(ids.length - T - 1);
        tokens.set(ids.subarray(at, at + T + 1), b * (T + 1));
      }
      return { tokens, batch: B };
    },
  };
}

/** [x₁ … x_L, SEP, x₁ … x_L] with the loss only on the copy (the SLiM paper's copy task). */
function copyTask(): Task {
  const symbols = 10;
  const L = Math.floor(T / 2);
  const vocab = [...'0123456789'.slice(0, symbols), '|', '.'];
  return {
    vocab,
    describe: `copy task: ${L} random symbols of ${symbols}, a separator, the same symbols again (loss on the copy only)`,
    batch() {
      const tokens = new Int32Array(B * (T + 1)).fill(symbols + 1);
      const mask = new Uint8Array(B * (T + 1));
      for (let b = 0; b < B; b++) {
        const row = b * (T + 1);
        for (let i = 0; i < L; i++) tokens[row + i] = tokens[row + L + 1 + i] = randInt(symbols);
        tokens[row + L] = symbols;
        mask.fill(1, row + L + 1, row + 2 * L + 1);
      }
      return { tokens, batch: B, mask };
    },
  };
}

const data = task === 'text' ? textTask() : copyTask();

// ----- model and training -------------------------------------------------------------------
const backend = await useBackend(flags.get('backend') === 'cpu' ? 'cpu' : 'wasm');
const kernels = await init();
const config = { vocabSize: data.vocab.length, dModel, heads, layers, ffn: 4 * dModel, feature: 'favor' as const, features, seed };
const model = new PerformerLM(kernels, config);
const optimizer = tf.train.adam(lr);
const trainer = new SlimTrainer(model, { sliceLength: slice, optimizer, clipNorm: 1 });
const params = model.namedVariables().reduce((n, [, v]) => n + v.size, 0);

console.log(`slim-performer demo: TF.js backend '${backend}', kernels ${kernels.simd ? 'SIMD' : 'scalar'} WebAssembly`);
console.log(`data   ${data.describe}`);
console.log(`model  ${layers} layers, d_model ${dModel}, ${heads} heads, FAVOR+ with ${features} features per head, ${(params / 1e3).toFixed(1)}k parameters`);
console.log(`train  ${steps} steps of ${B} × ${T} tokens, SLiM slices of ${slice}, Adam ${lr}, clip 1\n`);

const MB = 1024 * 1024;
let peakRss = 0;
let peakWasm = 0;
const tty = process.stdout.isTTY;
const losses: number[] = [];
let tokens = 0;
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  const r = trainer.step(data.batch());
  losses.push(r.loss);
  tokens += B * T;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  peakWasm = Math.max(peakWasm, kernels.memoryBytes() + tfjsWasmHeapBytes());
  const secs = (performance.now() - t0) / 1000;
  const recent = losses.slice(-10);
  const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
  const width = 24;
  const filled = Math.round((width * step) / steps);
  const line =
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${step}/${steps}  loss ${avg.toFixed(3)} (mean of last ${recent.length})  ` +
    `${Math.round(tokens / secs)} tok/s  peak rss ${Math.round(peakRss / MB)} MB, wasm ${Math.round(peakWasm / MB)} MB  ` +
    `eta ${Math.round((secs / step) * (steps - step))}s`;
  if (tty) process.stdout.write(`\r${line}\x1b[K`);
  else if (step === 1 || step % Math.max(1, Math.round(steps / 10)) === 0 || step === steps) console.log(line);
}
if (tty) process.stdout.write('\n');
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const k = Math.min(10, Math.ceil(steps / 4));
console.log(
  `\nloss ${mean(losses.slice(0, k)).toFixed(3)} (first ${k} steps) → ${mean(losses.slice(-k)).toFixed(3)} (last ${k}); ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

// ----- checkpoint, reload, sample -----------------------------------------------------------
mkdirSync(path.dirname(out), { recursive: true });
const bytes = await saveCheckpoint(out, model, optimizer, { meta: { task, vocab: data.vocab.join(''), seq: T, slice } });
const loaded = await loadCheckpoint(out, kernels);
console.log(`checkpoint ${path.relative(process.cwd(), out)} (${(bytes / 1024).toFixed(0)} KiB, step ${loaded.step}) saved and reloaded`);
const vocab = [...String(loaded.meta.vocab)];

if (task === 'text') {
  const promptText = 'We hold these truths';
  const prompt = [...promptText].map((c) => Math.max(0, vocab.indexOf(c)));
  const sample = loaded.model.generate(prompt, { maxNewTokens: sampleLen, temperature: 0.8, topK: 10, seed });
  console.log(`\nsample from the reloaded model (temperature 0.8, top-10):\n${promptText}${sample.map((i) => vocab[i]).join('')}\n`);
} else {
  const L = Math.floor(T / 2);
  const { tokens: seqs } = data.batch();
  const prompt = Array.from(seqs.subarray(0, L + 1));
  const copy = loaded.model.generate(prompt, { maxNewTokens: L, temperature: 0 });
  const right = copy.filter((t, i) => t === prompt[i]).length;
  const show = (ids: number[]) => ids.map((i) => vocab[i]).join('');
  console.log(`\ncopy from the reloaded model (greedy):\ninput  ${show(prompt)}\noutput ${show(copy)}\n${right}/${L} symbols right\n`);
}
loaded.model.dispose();
loaded.optimizer?.dispose();
model.dispose();
optimizer.dispose();
kernels.dispose();

/**
 * `npm run bench:training -- --compare`: one SLiM training step of the paper's architecture, ours
 * (`ReferenceLM` + `SlimTrainer`, TF.js wasm backend, one thread) next to PyTorch on the same CPU
 * (bench/training/torch_slim.py, 1 and 2 threads, when `python3` can import torch), at the small
 * and the Penn Treebank configurations. Every measurement runs in a fresh process, so peak RSS is
 * that configuration's own. The PyTorch model is first checked against the reference vectors.
 *
 * `npm run bench:training -- --binaries [--node=PATH]`: our step at the three configurations on each
 * of our kernels' wasm binaries (relaxed SIMD, SIMD, scalar), in Node 24 from test/packaging/runtimes
 * when it is installed (else this Node, with relaxed SIMD behind its V8 flag on Node 20).
 *
 * `npm run bench:training -- --long`: one SLiM step of the small model at T = 1024 and at
 * T = 1 048 576 (`--long-t`), time and peak RSS side by side.
 *
 * Results: bench/results/training-{compare,long}-<date>.json and -latest.{json,md}. Reports only;
 * nothing here asserts a time.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo, machineMarkdown } from '../harness/machine.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..', '..');
const RESULTS = path.join(HERE, '..', 'results');
const MB = 1024 * 1024;
/** The configurations both --compare and --binaries run: the small model (two feature maps) and Penn Treebank. */
const CASES = [
  { config: 'small', feature: 'favor+' },
  { config: 'small', feature: 'sqr' },
  { config: 'ptb', feature: 'sqr' },
];

interface Run {
  method: string;
  binary?: string;
  node?: string;
  threads: number;
  config: string;
  feature: string;
  T: number;
  slice: number;
  stepMs: number[];
  tokensPerSec: number;
  peakRssBytes: number;
  losses: number[];
  products?: Array<{ m: number; k: number; n: number; calls: number; ms: number; gflops: number; fastPathGflops: number }>;
  transposeMs?: number;
  profiledStepMs?: number;
  error?: string;
}

function lastJson(stdout: string): Run {
  const line = stdout
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (!line) throw new Error('no JSON line in the output');
  return JSON.parse(line) as Run;
}

function child(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 3_600_000,
  progress = false,
): { ok: boolean; stdout: string; error?: string } {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 64 * MB,
    stdio: ['ignore', 'pipe', progress ? 'inherit' : 'pipe'],
  });
  if (r.status === 0) return { ok: true, stdout: r.stdout };
  return {
    ok: false,
    stdout: r.stdout ?? '',
    error: `${cmd} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`,
  };
}

function ours(
  config: string,
  feature: string,
  T: number,
  slice: number,
  reps: number,
  extra: string[] = [],
  progress = false,
  node: { exec: string; flags: string[] } = { exec: process.execPath, flags: [] },
): Run {
  const args = [
    ...node.flags,
    '--max-old-space-size=8192',
    '--import',
    'tsx',
    path.join(HERE, 'step.ts'),
    `--config=${config}`,
    `--feature=${feature}`,
    `--t=${T}`,
    `--slice=${slice}`,
    `--reps=${reps}`,
    ...extra,
  ];
  const r = child(node.exec, args, {}, 3_600_000, progress);
  if (!r.ok) return { method: 'ours', threads: 1, config, feature, T, slice, stepMs: [], tokensPerSec: NaN, peakRssBytes: NaN, losses: [], error: r.error };
  return lastJson(r.stdout);
}

/** The python that can import torch (Debian's first: the pyenv one has no torch), or undefined. */
function torchPython(): { python?: string; why: string } {
  for (const py of ['/usr/bin/python3', 'python3']) {
    if (py.startsWith('/') && !existsSync(py)) continue;
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py, why: `torch ${r.stdout.trim()} (${py})` };
  }
  return { why: 'python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread)' };
}

function pytorch(python: string, attention: string, config: string, feature: string, T: number, slice: number, threads: number, reps: number): Run {
  const n = String(threads);
  const args = [
    path.join(HERE, 'torch_slim.py'),
    'bench',
    `--attention=${attention}`,
    `--config=${config}`,
    `--feature=${feature}`,
    `--t=${T}`,
    `--slice=${slice}`,
    `--threads=${n}`,
    `--reps=${reps}`,
  ];
  const r = child(python, args, { OPENBLAS_NUM_THREADS: n, OMP_NUM_THREADS: n, MKL_NUM_THREADS: n });
  if (!r.ok)
    return { method: `pytorch-${attention}`, threads, config, feature, T, slice, stepMs: [], tokensPerSec: NaN, peakRssBytes: NaN, losses: [], error: r.error };
  return lastJson(r.stdout);
}

function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function save(kind: string, json: object, md: string): void {
  mkdirSync(RESULTS, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const text = JSON.stringify(json, null, 2);
  writeAtomic(path.join(RESULTS, `training-${kind}-${stamp}.json`), text);
  writeAtomic(path.join(RESULTS, `training-${kind}-latest.json`), text);
  writeAtomic(path.join(RESULTS, `training-${kind}-latest.md`), md);
  console.log(`wrote bench/results/training-${kind}-${stamp}.json, training-${kind}-latest.{json,md}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmtMs = (r: Run) => (r.error ? '—' : `${median(r.stepMs).toFixed(0)}`);
const fmtTok = (r: Run) => (r.error ? `failed: ${r.error}` : r.tokensPerSec.toFixed(0));
const fmtRss = (r: Run) => (r.error ? '—' : (r.peakRssBytes / MB).toFixed(0));

export async function compare(o: { reps: number; slice: number; T: number; prefixSum: boolean }): Promise<void> {
  const machine = machineInfo();
  const header = machineMarkdown(machine);
  console.log(`# SLiM training step: ours vs PyTorch\n\n${header}\n`);
  const torch = torchPython();
  let check = 'not run (no torch)';
  if (torch.python) {
    const c = child(torch.python, [path.join(HERE, 'torch_slim.py'), 'check']);
    check = c.ok ? c.stdout.trim().split('\n').pop()! : `FAILED: ${c.error ?? c.stdout}`;
    console.log(`PyTorch model vs the reference vectors: ${check}`);
  } else console.log(`PyTorch side skipped: ${torch.why}`);

  const rows: Array<{ config: string; feature: string; runs: Run[] }> = [];
  for (const c of CASES) {
    const runs: Run[] = [ours(c.config, c.feature, o.T, o.slice, o.reps, ['--products'])];
    if (torch.python && !check.startsWith('FAILED')) {
      for (const threads of [1, 2]) runs.push(pytorch(torch.python, 'chunked', c.config, c.feature, o.T, o.slice, threads, o.reps));
      if (o.prefixSum) runs.push(pytorch(torch.python, 'prefix-sum', c.config, c.feature, o.T, o.slice, 1, c.config === 'ptb' ? 1 : o.reps));
    }
    for (const r of runs)
      console.log(
        `${c.config} ${c.feature} ${r.method.padEnd(18)} ${r.threads} thread(s): ${fmtTok(r)} tokens/s, step ${fmtMs(r)} ms, peak RSS ${fmtRss(r)} MiB`,
      );
    rows.push({ ...c, runs });
  }

  const ratio = (row: (typeof rows)[number], method: string, threads: number) => {
    const ourRun = row.runs[0];
    const t = row.runs.find((r) => r.method === method && r.threads === threads && !r.error);
    return t && !ourRun.error ? ourRun.tokensPerSec / t.tokensPerSec : NaN;
  };
  const md = [
    '# SLiM training step: ours vs PyTorch on the same CPU',
    '',
    header,
    `- PyTorch: ${torch.why}; its model checked against the reference vectors: ${check}`,
    `- Command: \`npm run bench:training -- --compare\` (T = ${o.T}, slice ${o.slice}, B = 1, Adam, median of ${o.reps} steps after a warm-up step; every row a fresh process)`,
    "- ours: `ReferenceLM` + `SlimTrainer`, TF.js wasm backend (one thread: tfjs-backend-wasm has no threads in Node). PyTorch: bench/training/torch_slim.py, the same architecture and SLiM step; `chunked` = attention as matrix products per slice, `prefix-sum` = the paper's formulation (cumulative sums of per-token outer products); threads set by `torch.set_num_threads` and `OPENBLAS_NUM_THREADS`.",
    '',
    '| config | feature | method | threads | tokens/s | step (ms) | peak RSS (MiB) | ours ÷ this |',
    '|---|---|---|---:|---:|---:|---:|---:|',
    ...rows.flatMap((row) =>
      row.runs.map(
        (r) =>
          `| ${row.config} | ${row.feature} | ${r.method} | ${r.threads} | ${fmtTok(r)} | ${fmtMs(r)} | ${fmtRss(r)} | ${r.method === 'ours' ? '' : ratio(row, r.method, r.threads).toFixed(2)} |`,
      ),
    ),
    '',
    '## Dense products inside our step',
    '',
    "Every `BatchMatMul` of one profiled step, grouped by shape (the explicit transposes that feed them are timed separately), against TF.js's untransposed 2-D `matMul` on the same shape, timed in the same process (best of 5 batches).",
    '',
    ...rows.flatMap((row) => {
      const r = row.runs[0];
      if (!r.products) return [];
      const worst = Math.min(...r.products.map((p) => p.gflops / p.fastPathGflops));
      const total = r.products.reduce((a, p) => a + p.ms, 0);
      return [
        `### ${row.config}, ${row.feature}: products ${total.toFixed(0)} ms + transposes ${r.transposeMs!.toFixed(0)} ms of a ${r.profiledStepMs!.toFixed(0)} ms profiled step; worst product at ${(100 * worst).toFixed(0)} % of the fast path`,
        '',
        '| m × k × n | calls | ms | GFLOP/s in the step | TF.js fast path GFLOP/s | ratio |',
        '|---|---:|---:|---:|---:|---:|',
        ...r.products.map(
          (p) =>
            `| ${p.m} × ${p.k} × ${p.n} | ${p.calls} | ${p.ms.toFixed(1)} | ${p.gflops.toFixed(1)} | ${p.fastPathGflops.toFixed(1)} | ${(p.gflops / p.fastPathGflops).toFixed(2)} |`,
        ),
        '',
      ];
    }),
  ].join('\n');
  save('compare', { machine, torch: torch.why, torchCheck: check, T: o.T, slice: o.slice, reps: o.reps, rows }, md);
}

export async function binaries(o: { reps: number; slice: number; T: number; node?: string }): Promise<void> {
  const machine = machineInfo();
  // The steps run in the Node below, not in this process: its line says which.
  const header = machineMarkdown(machine).replace(/^- Node .*\n/m, '');
  let node = { exec: process.execPath, flags: Number(process.versions.node.split('.')[0]) < 21 ? ['--experimental-wasm-relaxed-simd'] : [] };
  if (o.node) node = { exec: o.node, flags: [] };
  else {
    const { runtimeBin } = await import('../../test/packaging/tools.ts');
    const b = runtimeBin('node24');
    if (b.path) node = { exec: b.path, flags: [] };
  }
  const version = spawnSync(node.exec, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`# SLiM training step on each kernel binary (${version}${node.flags.length ? ' ' + node.flags.join(' ') : ''})\n\n${header}\n`);
  const rows: Array<{ config: string; feature: string; runs: Run[] }> = [];
  for (const c of CASES) {
    const runs = ['relaxed', 'simd', 'scalar'].map((b) => ours(c.config, c.feature, o.T, o.slice, o.reps, [`--binary=${b}`], false, node));
    for (const r of runs)
      console.log(`${c.config} ${c.feature} ${(r.binary ?? '?').padEnd(8)}: ${fmtTok(r)} tokens/s, step ${fmtMs(r)} ms, peak RSS ${fmtRss(r)} MiB`);
    rows.push({ ...c, runs });
  }
  const md = [
    '# SLiM training step on each of our kernel binaries',
    '',
    header,
    `- Runtime: ${version}${node.flags.length ? ` with ${node.flags.join(' ')}` : ''}; command: \`npm run bench:training -- --binaries\` (T = ${o.T}, slice ${o.slice}, B = 1, Adam, median of ${o.reps} steps after a warm-up; every row a fresh process)`,
    "- The binary is that of our attention kernels; the dense layers, norms and Adam run on TF.js's wasm backend (its own SIMD binary, one thread) in every row.",
    '',
    '| config | feature | binary | tokens/s | step (ms) | ÷ SIMD step | peak RSS (MiB) |',
    '|---|---|---|---:|---:|---:|---:|',
    ...rows.flatMap((row) => {
      const simd = row.runs.find((r) => r.binary === 'simd' && !r.error);
      return row.runs.map(
        (r) =>
          `| ${row.config} | ${row.feature} | ${r.binary ?? '—'} | ${fmtTok(r)} | ${fmtMs(r)} | ${simd && !r.error ? (median(r.stepMs) / median(simd.stepMs)).toFixed(2) : '—'} | ${fmtRss(r)} |`,
      );
    }),
    '',
  ].join('\n');
  save('binaries', { machine, node: version, nodeFlags: node.flags, T: o.T, slice: o.slice, reps: o.reps, rows }, md);
}

export async function long(o: { longT: number; slice: number }): Promise<void> {
  const machine = machineInfo();
  const header = machineMarkdown(machine);
  console.log(`# One SLiM step of the small model over a long sequence\n\n${header}\n`);
  const runs: Run[] = [];
  for (const T of [1024, o.longT]) {
    console.log(`T = ${T} …`);
    const r = ours('small', 'favor+', T, o.slice, 1, T > 65_536 ? ['--progress'] : [], T > 65_536);
    runs.push(r);
    console.log(
      `T = ${T}: ${r.error ?? `step ${(median(r.stepMs) / 1000).toFixed(1)} s, ${r.tokensPerSec.toFixed(0)} tokens/s, peak RSS ${(r.peakRssBytes / MB).toFixed(0)} MiB, loss ${r.losses[0].toFixed(4)}`}`,
    );
  }
  const [short, far] = runs;
  const memRatio = far.peakRssBytes / short.peakRssBytes;
  console.log(
    `peak RSS at T = ${o.longT} / T = 1024: ${memRatio.toFixed(3)} (target ≤ 1.2); step at T = ${o.longT}: ${(median(far.stepMs) / 60000).toFixed(1)} min (target < 10)`,
  );
  const md = [
    '# One SLiM training step over a long sequence',
    '',
    header,
    `- Command: \`npm run bench:training -- --long\`; model: the small config (hidden 128, 2 layers, FFN 512, 4 heads, favor+), \`ReferenceLM\` + \`SlimTrainer\` (Adam), slice ${o.slice}, B = 1, TF.js wasm backend, one thread; each T a fresh process (warm-up step at T ≤ 1024 first)`,
    '',
    '| T | step | tokens/s | peak RSS (MiB) | loss |',
    '|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${r.T} | ${r.error ? r.error : `${(median(r.stepMs) / 1000).toFixed(1)} s`} | ${fmtTok(r)} | ${fmtRss(r)} | ${r.error ? '—' : r.losses[0].toFixed(4)} |`,
    ),
    '',
    `Peak RSS ratio T = ${o.longT} / T = 1024: **${memRatio.toFixed(3)}** (target ≤ 1.2).`,
    '',
  ].join('\n');
  save('long', { machine, slice: o.slice, runs, memRatio }, md);
}

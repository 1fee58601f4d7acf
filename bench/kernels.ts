/**
 * Kernel benchmark: causal Performer linear attention kernels vs baselines.
 *   npm run bench [-- --quick] [--only=a,b] [--max-t=N] [--reps=N] [--bh=1,8] [--m=64,128] [--t=256,1024]
 * Prints a machine header and one markdown table per (B·H, M); writes
 * bench/results/kernels-<date>.json, kernels-latest.json and kernels-latest.md.
 * This is a benchmark: nothing here asserts on timings.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchCase, Method, Mode } from './harness/types.ts';
import { machineInfo, machineMarkdown } from './harness/machine.ts';
import { chooseReps, summarize, timeOnce, timeReps } from './harness/timing.ts';
import { SKIP_ABOVE_BYTES, fmtGB, fmtMB, isOom } from './harness/memory.ts';
import { makeInputs, omegaSource } from './harness/data.ts';
import { GATE_TOLERANCE, linearReference, relRms, softmaxReference } from './harness/reference.ts';
import { caseTable, fmtMs, type CaseResult, type ModeResult } from './harness/table.ts';
import { oursRelaxed, oursScalar, oursSimd } from './methods/ours.ts';
import { tfjsSoftmax } from './methods/tfjs-softmax.ts';
import { tfjsNaive } from './methods/tfjs-naive.ts';
import { jsRecurrent } from './methods/js-recurrent.ts';
import { MATMUL_NAME, runMatmulCeiling, type MatmulRow } from './methods/matmul.ts';

// ---------------------------------------------------------------- CLI
interface Options {
  quick: boolean;
  only: string[] | null;
  maxT: number;
  reps?: number;
  bh: number[];
  m: number[];
  t: number[];
  matmulSizes: number[];
}

function parseArgs(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}`);
    flags.set(m[1], m[2] ?? 'true');
  }
  const list = (k: string, dflt: number[]) => (flags.has(k) ? flags.get(k)!.split(',').map(Number) : dflt);
  const quick = flags.get('quick') === 'true';
  const o: Options = {
    quick,
    only: flags.has('only')
      ? flags
          .get('only')!
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : null,
    maxT: flags.has('max-t') ? Number(flags.get('max-t')) : Infinity,
    reps: flags.has('reps') ? Number(flags.get('reps')) : undefined,
    bh: list('bh', quick ? [1] : [1, 8]),
    m: list('m', quick ? [128] : [64, 128, 256]),
    t: list('t', quick ? [256, 1024] : [256, 1024, 4096, 16384, 65536]),
    matmulSizes: quick ? [512] : [512, 1024, 2048],
  };
  for (const k of flags.keys()) {
    if (!['quick', 'only', 'max-t', 'reps', 'bh', 'm', 't'].includes(k)) throw new Error(`unknown flag --${k}`);
  }
  o.t = o.t.filter((t) => t <= o.maxT);
  return o;
}

// ---------------------------------------------------------------- registry
const REGISTRY: Method[] = [oursRelaxed, oursSimd, oursScalar, tfjsSoftmax, tfjsNaive, jsRecurrent];
const ALL_NAMES = [...REGISTRY.map((m) => m.name), MATMUL_NAME];
const D = 64;
const DV = 64;
const GATE_CASE: BenchCase = { bh: 2, b: 1, h: 2, t: 192, d: D, dv: DV, m: 64 };

const mkCase = (bh: number, m: number, t: number): BenchCase => ({ bh, b: 1, h: bh, t, d: D, dv: DV, m });
const errMsg = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];
const log = (s: string) => process.stdout.write(`${s}\n`);

interface GateResult {
  method: string;
  pass: boolean;
  relRms?: number;
  error?: string;
}

async function gate(method: Method): Promise<GateResult> {
  const c = GATE_CASE;
  const x = await makeInputs(c, 7);
  try {
    const ref = method.reference === 'softmax' ? softmaxReference(c, x) : linearReference(c, x);
    const ctx = await method.setup(c, x);
    let out: Float32Array;
    try {
      out = await method.fwd(ctx);
    } finally {
      await method.dispose(ctx);
    }
    const err = relRms(out, ref);
    return { method: method.name, pass: err <= GATE_TOLERANCE, relRms: err };
  } catch (e) {
    await method.recover?.().catch(() => {});
    return { method: method.name, pass: false, error: errMsg(e) };
  }
}

// ---------------------------------------------------------------- one case
async function runMode(method: Method, ctx: unknown, c: BenchCase, mode: Mode, reps?: number): Promise<ModeResult> {
  const meas = await method.measure(ctx, mode);
  const call = mode === 'fwd' ? () => method.fwd(ctx) : () => method.fwdbwd!(ctx);
  const warm = meas.warmed ? meas.ms : await timeOnce(call);
  const samples = await timeReps(call, chooseReps(warm, reps));
  const summary = summarize(samples);
  const flops = method.flops(c, mode);
  return { status: 'ok', samples, summary, peakBytes: meas.peakBytes, flops, gflops: flops / (summary.median * 1e6), detail: meas.detail };
}

async function runCase(method: Method, c: BenchCase, opts: Options, gateStatus: string | null): Promise<CaseResult> {
  const res: CaseResult = { method: method.name, bh: c.bh, m: c.m, t: c.t, d: c.d, dv: c.dv, fwd: { status: 'n/a' }, fwdbwd: { status: 'n/a' } };
  const modes: Mode[] = ['fwd', 'fwdbwd'];
  if (gateStatus) {
    res.fwd = { status: gateStatus };
    res.fwdbwd = { status: method.modes.includes('fwdbwd') ? gateStatus : 'n/a' };
    return res;
  }
  const sup = method.supports(c);
  if (sup !== true) {
    res.fwd = res.fwdbwd = { status: `n/a: ${sup}` };
    return res;
  }
  // Skip what could not fit before allocating anything.
  const todo: Mode[] = [];
  for (const mode of modes) {
    if (!method.modes.includes(mode)) continue;
    const est = method.estimateBytes?.(c, mode);
    if (est != null && est > SKIP_ABOVE_BYTES) res[mode] = { status: `skipped: would need ${fmtGB(est)} GB`, estimateBytes: est };
    else todo.push(mode);
  }
  if (!todo.length) return res;

  let ctx: unknown;
  try {
    const x = await makeInputs(c);
    ctx = await method.setup(c, x);
  } catch (e) {
    for (const mode of todo) res[mode] = { status: isOom(e) ? 'OOM' : `error: ${errMsg(e)}` };
    await method.recover?.().catch(() => {});
    return res;
  }
  let failed: string | null = null;
  for (const mode of todo) {
    const est = method.estimateBytes?.(c, mode);
    if (failed) res[mode] = { status: `${failed} (in fwd)`, estimateBytes: est };
    else {
      try {
        res[mode] = { ...(await runMode(method, ctx, c, mode, opts.reps)), estimateBytes: est };
      } catch (e) {
        failed = isOom(e) ? 'OOM' : `error: ${errMsg(e)}`;
        res[mode] = { status: failed, estimateBytes: est, detail: { message: errMsg(e) } };
        await method.recover?.().catch(() => {});
        ctx = undefined; // recover() freed it
      }
    }
    const r = res[mode];
    log(
      `  ${method.name.padEnd(18)} BH=${c.bh} M=${c.m} T=${c.t} ${mode.padEnd(6)} ` +
        (r.status === 'ok' ? `${fmtMs(r.summary!.median)} ms ×${r.summary!.reps}  ${r.gflops!.toFixed(2)} GFLOP/s  peak ${fmtMB(r.peakBytes!)} MB` : r.status),
    );
  }
  if (ctx !== undefined) {
    try {
      await method.dispose(ctx);
    } catch {
      await method.recover?.().catch(() => {});
    }
  }
  return res;
}

// ---------------------------------------------------------------- output
const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

function writeAtomic(file: string, text: string) {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

const NOTES = `
### How to read this

- Times are wall-clock ms per call: median [min–max] over the reps (after one warm-up call); (1 rep) for very slow cases. Every call takes JS Float32Arrays in and returns JS arrays (tfjs uploads q, k, v and reads results back with dataSync).
- fwd+bwd = forward plus gradients w.r.t. q, k, v (ours: causalForward + causalBackward; tfjs: tf.grads). js-recurrent is forward only.
- GFLOP/s = the method's own flop count / median time. Flop counts (see each file in bench/methods/): ours counts the chunked algorithm (C = 64) matmul terms: forward 2·2·T·M·d + Σ_chunks(2C²M + 2C²D + 4CMD), backward (given the forward's out) as in bench/methods/ours.ts (≈ 2.3× forward); tfjs-softmax counts the full T×T work tfjs executes (no causal skipping); tfjs-naive counts its [T,M,D] outer products, cumsums and batched matMuls; js-recurrent counts per-token work.
- Peak MB (MB = 2^20 bytes): ours = wasm memory growth during the first call on a fresh instance + JS result arrays; tfjs = tf.profile peakBytes (engine tensor bytes during the call, including resident tensors such as the [T,T] mask; tfjs counts bytes per tensor, so tensors sharing one buffer count twice, which can exceed the 4 GiB heap; the JSON's detail.wasmHeapHighWaterBytes is the physical wasm heap of a fresh backend after the call); js-recurrent = bytes it allocates. Different accountings: compare orders of magnitude.
- tfjs fwd+bwd uses tfjs's registered gradients: BatchMatMul's gradient calls matMul with transpose flags, which tfjs-wasm runs as a scalar loop (not XNNPACK), so backward is far slower than forward.
- skipped: estimated peak above ${SKIP_ABOVE_BYTES / 1e9} GB; OOM: allocation failed (tfjs-backend-wasm heap max 4 GiB). tfjs-softmax does not depend on M (measured once per B·H, T and repeated across M).
`;

function markdown(header: string, methods: Method[], gates: GateResult[], matmul: MatmulRow[], results: CaseResult[], opts: Options): string {
  const parts = ['# Kernel benchmark: causal linear attention', '', header, ''];
  parts.push('## Methods', '', ...methods.map((m) => `- \`${m.name}\`: ${m.about}`), '');
  if (gates.length) {
    parts.push(
      `## Correctness gate (forward vs float64 reference, B·H=${GATE_CASE.bh}, T=${GATE_CASE.t}, M=${GATE_CASE.m}, tolerance ${GATE_TOLERANCE} relative RMS)`,
      '',
    );
    for (const g of gates)
      parts.push(
        `- ${g.method}: ${g.pass ? 'pass' : 'FAILED GATE'}${g.relRms != null ? ` (rel. RMS ${g.relRms.toExponential(2)})` : ''}${g.error ? ` (${g.error})` : ''}`,
      );
    parts.push('');
  }
  if (matmul.length) {
    const best = Math.max(...matmul.map((r) => r.gflops));
    parts.push(`## Ceiling: tf.matMul on the wasm backend (best ${best.toFixed(1)} GFLOP/s)`, '', '| N | ms [min–max] | GFLOP/s |', '|---:|---|---:|');
    for (const r of matmul) parts.push(`| ${r.n} | ${fmtMs(r.summary.median)} [${fmtMs(r.summary.min)}–${fmtMs(r.summary.max)}] | ${r.gflops.toFixed(1)} |`);
    parts.push('');
  }
  const names = methods.map((m) => m.name);
  for (const bh of opts.bh) {
    for (const m of opts.m) {
      const table = caseTable(results, names, bh, m);
      if (table) parts.push(`## B·H = ${bh}, M = ${m}, d = D = ${D}`, '', table, '');
    }
  }
  const scratch = results.filter((r) => r.method === 'ours-simd' && r.fwdbwd?.status === 'ok');
  if (scratch.length) {
    parts.push(
      '## ours-simd: extra memory (kernel scratch beyond inputs, outputs and gradients, measured in the module)',
      '',
      '| B·H | M | T | fwd KiB | fwd+bwd KiB |',
      '|---:|---:|---:|---:|---:|',
      ...scratch.map((r) => {
        const kib = (x: unknown) => (typeof x === 'number' ? (x / 1024).toFixed(1) : '–');
        return `| ${r.bh} | ${r.m} | ${r.t} | ${kib(r.fwd?.detail?.scratchBytes)} | ${kib(r.fwdbwd?.detail?.scratchBytes)} |`;
      }),
      '',
    );
  }
  parts.push(NOTES);
  return parts.join('\n');
}

// ---------------------------------------------------------------- main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const info = machineInfo();
  const header = machineMarkdown(info);
  log('# Kernel benchmark: causal linear attention\n');
  log(header + '\n');
  if (opts.only) {
    const unknown = opts.only.filter((n) => !ALL_NAMES.includes(n));
    if (unknown.length) throw new Error(`--only: unknown method(s) ${unknown.join(', ')}; known: ${ALL_NAMES.join(', ')}`);
  }
  const selected = REGISTRY.filter((m) => !opts.only || opts.only.includes(m.name));
  const wantMatmul = !opts.only || opts.only.includes(MATMUL_NAME);

  // init + gate
  const gateStatus = new Map<string, string | null>();
  const gates: GateResult[] = [];
  for (const m of selected) {
    try {
      await m.init?.();
    } catch (e) {
      gateStatus.set(m.name, `unavailable: ${errMsg(e)}`);
      gates.push({ method: m.name, pass: false, error: `unavailable: ${errMsg(e)}` });
      log(`gate ${m.name}: unavailable (${errMsg(e)})`);
      continue;
    }
    const g = await gate(m);
    gates.push(g);
    gateStatus.set(m.name, g.pass ? null : 'FAILED GATE');
    log(
      `gate ${m.name}: ${g.pass ? 'pass' : 'FAILED GATE'}${g.relRms != null ? ` rel. RMS ${g.relRms.toExponential(2)}` : ''}${g.error ? ` (${g.error})` : ''}`,
    );
  }
  log(`omega: ${omegaSource}\n`);

  const stamp = info.date.replace(/:/g, '-').replace(/\..*$/, '');
  mkdirSync(RESULTS_DIR, { recursive: true });
  let matmul: MatmulRow[] = [];
  const results: CaseResult[] = [];
  const save = () => {
    const json = JSON.stringify(
      {
        header: info,
        config: {
          ...opts,
          maxT: Number.isFinite(opts.maxT) ? opts.maxT : null,
          d: D,
          dv: DV,
          chunk: 64,
          b: 1,
          omegaSource,
          gateTolerance: GATE_TOLERANCE,
          gateCase: GATE_CASE,
          skipAboveBytes: SKIP_ABOVE_BYTES,
        },
        methods: selected.map((m) => ({ name: m.name, about: m.about })),
        gates,
        matmulCeiling: matmul,
        results,
      },
      null,
      1,
    );
    writeAtomic(path.join(RESULTS_DIR, `kernels-${stamp}.json`), json);
    writeAtomic(path.join(RESULTS_DIR, 'kernels-latest.json'), json);
  };

  if (wantMatmul) {
    try {
      matmul = await runMatmulCeiling(opts.matmulSizes, opts.reps);
      for (const r of matmul) log(`  ${MATMUL_NAME} N=${r.n}: ${fmtMs(r.summary.median)} ms  ${r.gflops.toFixed(1)} GFLOP/s`);
    } catch (e) {
      log(`  ${MATMUL_NAME}: error ${errMsg(e)}`);
    }
    save();
  }

  const reuse = new Map<string, CaseResult>(); // for methods whose cost does not depend on M
  for (const bh of opts.bh) {
    for (const m of opts.m) {
      for (const t of opts.t) {
        const c = mkCase(bh, m, t);
        for (const method of selected) {
          const key = `${method.name}:${bh}:${t}`;
          const prev = method.dependsOnM ? undefined : reuse.get(key);
          let r: CaseResult;
          if (prev) r = { ...prev, m, reusedFromM: prev.m };
          else {
            r = await runCase(method, c, opts, gateStatus.get(method.name) ?? null);
            if (!method.dependsOnM) reuse.set(key, r);
          }
          results.push(r);
          save();
        }
      }
    }
  }

  const md = markdown(header, selected, gates, matmul, results, opts);
  log('\n' + md.split('\n').slice(3).join('\n'));
  writeAtomic(path.join(RESULTS_DIR, 'kernels-latest.md'), md);
  save();
  log(`\nwrote bench/results/kernels-${stamp}.json, kernels-latest.json, kernels-latest.md`);
  process.exit(0); // the tfjs wasm module keeps no handles, but be explicit
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

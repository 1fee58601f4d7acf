#!/usr/bin/env node
// npm run size — minified + gzipped size of each package entry and each wasm binary, checked
// against scripts/size-budget.json (CI fails when a budget is exceeded).
//
// Entry size: what a bundler ships for `import * from 'slim-performer/<entry>'`: dist/<entry>.js
// and the chunks it imports, bundled and minified with esbuild (peer dependencies, node:* and
// the npm `webgpu` package external), then gzip -9; brotli is reported too. The .wasm files are
// not JavaScript and are not counted in the entries (they are fetched or read at run time),
// except in ./inline where they are part of the JavaScript as base64.
// Wasm: raw bytes and gzip -9 (what a server sends with compression).
//
// Options: --json=<file> writes the report; --no-build uses dist/ as is (default: build if missing).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const args = process.argv.slice(2);
const jsonOut = args.find((a) => a.startsWith('--json='))?.slice(7);
if (!existsSync(new URL('dist/index.js', root))) {
  if (args.includes('--no-build')) throw new Error('dist/ is missing: run npm run build');
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
}
const budget = JSON.parse(readFileSync(new URL('scripts/size-budget.json', root), 'utf8'));

const gz = (b) => gzipSync(b, { level: 9 }).length;
const br = (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
const kb = (n) => (n / 1024).toFixed(1);

const rows = [];
for (const entry of ['index', 'inline', 'parallel', 'parallel-worker', 'webgpu', 'tfjs']) {
  const file = new URL(`dist/${entry}.js`, root);
  if (!existsSync(file)) continue;
  const r = await build({
    entryPoints: [file.pathname],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral',
    write: false,
    external: ['node:*', 'webgpu', '@tensorflow/*', '@webgpu/*', '*.wasm'],
    logLevel: 'silent',
  });
  const code = r.outputFiles[0].contents;
  rows.push({
    kind: 'entry',
    name: entry === 'index' ? '.' : `./${entry}`,
    raw: readFileSync(file).length,
    min: code.length,
    gzip: gz(code),
    brotli: br(code),
  });
}
for (const name of ['slim_kernels_relaxed.wasm', 'slim_kernels_simd.wasm', 'slim_kernels_scalar.wasm']) {
  const b = readFileSync(new URL(`wasm/${name}`, root));
  rows.push({ kind: 'wasm', name, raw: b.length, min: b.length, gzip: gz(b), brotli: br(b) });
}

const failures = [];
for (const r of rows) {
  const b = budget[r.kind === 'wasm' ? 'wasm' : r.name];
  r.budget = b ?? null;
  r.status = 'ok';
  if (!b) continue;
  for (const [measure, limit] of Object.entries(b)) {
    if (measure === 'note') continue;
    if (r[measure] > limit) {
      r.status = 'OVER';
      failures.push(`${r.name}: ${measure} ${r[measure]} B > budget ${limit} B`);
    }
  }
}

const fmtBudget = (b) =>
  b
    ? Object.entries(b)
        .filter(([k]) => k !== 'note')
        .map(([k, v]) => `${k} ≤ ${kb(v)}`)
        .join(', ')
    : '—';
const lines = [
  '| | file (KiB) | minified | min + gzip | min + brotli | budget (KiB) | |',
  '|---|---:|---:|---:|---:|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.kind === 'wasm' ? 'wasm ' : ''}${r.name} | ${kb(r.raw)} | ${r.kind === 'wasm' ? '—' : kb(r.min)} | ${kb(r.gzip)} | ${kb(r.brotli)} | ${fmtBudget(r.budget)} | ${r.status} |`,
  ),
];
console.log(lines.join('\n'));
for (const [k, v] of Object.entries(budget)) if (v.note) console.log(`\n${k}: ${v.note}`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), node: process.version, rows, budget }, null, 2) + '\n');
if (failures.length) {
  console.error(`\nsize budget exceeded:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log('\nsize: all within budget');

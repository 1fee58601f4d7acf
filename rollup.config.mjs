// Package build: `npm run build` → dist/ (ESM .js, CommonJS .cjs, declarations .d.ts / .d.cts).
//
// Entries (package.json "exports"):
//   .          src/index.ts           kernels + loader + features (no TF.js, no WebGPU)
//   ./inline   src/wasm/inline.ts     the same with both wasm binaries inlined as base64
//   ./parallel src/parallel/index.ts  worker pool over B·H slices (+ its worker script)
//   ./webgpu   src/webgpu/index.ts    WebGPU backend + createKernels (WGSL inlined)
//   ./tfjs     src/tfjs/index.ts      TF.js op, layers, model, SLiM trainer (TF.js external)
// The .wasm binaries stay in wasm/ at the package root; every output file sits directly in
// dist/, so the loader's `../../wasm/` (relative to src/wasm/) becomes `../wasm/`.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { transform } from 'esbuild';
import { dts } from 'rollup-plugin-dts';

/**
 * WGSL without its comments, for the bundle (the sources in src/ keep them): every comment's
 * text goes but its line breaks stay, so compiler messages keep the source files' line numbers.
 * WGSL has no string literals, so `//` and `/*` always open comments (block comments nest).
 */
export function stripWgslComments(text) {
  let out = '';
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const two = text.slice(i, i + 2);
    if (depth === 0 && two === '//') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (two === '/*') {
      depth++;
      i++;
    } else if (depth > 0 && two === '*/') {
      depth--;
      i++;
    } else if (depth === 0 || text[i] === '\n') {
      out += text[i];
    }
  }
  return out.replace(/[ \t]+\n/g, '\n');
}

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

const entries = {
  index: 'src/index.ts',
  inline: 'src/wasm/inline.ts',
  tfjs: 'src/tfjs/index.ts',
  webgpu: 'src/webgpu/index.ts',
  parallel: 'src/parallel/index.ts',
  'parallel-worker': 'src/parallel/worker.ts',
};
for (const [k, v] of Object.entries(entries)) if (!existsSync(v)) delete entries[k];
const typedEntries = Object.fromEntries(Object.entries(entries).filter(([k]) => k !== 'parallel-worker'));

const peer = Object.keys({ ...pkg.peerDependencies, ...pkg.dependencies });
const external = (id) =>
  id.startsWith('node:') ||
  builtinModules.includes(id) ||
  id === 'webgpu' ||
  peer.some((p) => id === p || id.startsWith(`${p}/`)) ||
  id.startsWith('@tensorflow/');

/** TypeScript → JavaScript with esbuild (types are checked by tsc and emitted by rollup-plugin-dts). */
function esbuildTs() {
  return {
    name: 'esbuild-ts',
    async transform(code, id) {
      if (!id.endsWith('.ts')) return null;
      const r = await transform(code, { loader: 'ts', target: 'es2022', sourcefile: id, sourcemap: false });
      return { code: r.code, map: null };
    },
  };
}

/** Exact textual rewrites of specific source files; fails the build if a pattern went missing. */
function rewrite(file, pairs) {
  return {
    name: `rewrite:${file}`,
    transform(code, id) {
      if (!id.replaceAll('\\', '/').endsWith(file)) return null;
      for (const [from, to] of pairs) {
        if (!code.includes(from)) this.error(`rollup.config.mjs: expected text not found in ${file}: ${from}`);
        code = code.split(from).join(typeof to === 'function' ? to() : to);
      }
      return { code, map: null };
    },
  };
}

const wasmB64 = (name) => readFileSync(new URL(`./wasm/${name}`, import.meta.url)).toString('base64');

const plugins = [
  // The loader: binaries live in <pkg>/wasm/, one level above dist/. Literal URLs (instead of a
  // template) let bundlers (Vite, webpack 5, Parcel) see and emit the three assets.
  rewrite('src/wasm/loader.ts', [
    ['readNodeFile(new URL(`../../wasm/${name}`, import.meta.url))', 'readNodeFile(wasmUrl(binary))'],
    ['return new URL(`../../wasm/${name}`, import.meta.url);', 'return wasmUrl(binary);'],
    [
      'async function defaultSource(',
      "const wasmUrl = (binary) => binary === 'relaxed' ? new URL('../wasm/slim_kernels_relaxed.wasm', import.meta.url) : binary === 'simd' ? new URL('../wasm/slim_kernels_simd.wasm', import.meta.url) : new URL('../wasm/slim_kernels_scalar.wasm', import.meta.url);\nasync function defaultSource(",
    ],
  ]),
  // The inline entry's data: generated here, never committed.
  rewrite('src/wasm/inline_data.ts', [
    [
      'export const RELAXED_BASE64: string | null = null;',
      () => `export const RELAXED_BASE64: string | null = ${JSON.stringify(wasmB64('slim_kernels_relaxed.wasm'))};`,
    ],
    [
      'export const SIMD_BASE64: string | null = null;',
      () => `export const SIMD_BASE64: string | null = ${JSON.stringify(wasmB64('slim_kernels_simd.wasm'))};`,
    ],
    [
      'export const SCALAR_BASE64: string | null = null;',
      () => `export const SCALAR_BASE64: string | null = ${JSON.stringify(wasmB64('slim_kernels_scalar.wasm'))};`,
    ],
  ]),
  // WebGPU: inline the WGSL files the way Vite's import.meta.glob would, so the bundle needs no
  // files beside it in any runtime.
  rewrite('src/webgpu/shaders/index.ts', [
    [
      "import.meta.glob('./*.wgsl', { query: '?raw', import: 'default', eager: true })",
      () => {
        const dir = new URL('./src/webgpu/shaders/', import.meta.url);
        const files = readdirSync(dir)
          .filter((f) => f.endsWith('.wgsl'))
          .sort();
        return `(${JSON.stringify(Object.fromEntries(files.map((f) => [`./${f}`, stripWgslComments(readFileSync(new URL(f, dir), 'utf8'))])))})`;
      },
    ],
  ]),
  // The pool's worker script, addressed next to the built module.
  ...(entries.parallel ? [rewrite('src/parallel/pool.ts', [["'./worker.ts'", "'./parallel-worker.js'"]])] : []),
  esbuildTs(),
];

const onwarn = (w, warn) => {
  if (w.code === 'CIRCULAR_DEPENDENCY' && /node_modules/.test(w.message)) return;
  warn(w);
};

export default [
  {
    input: entries,
    external,
    plugins,
    onwarn,
    treeshake: { moduleSideEffects: false },
    output: [
      { dir: 'dist', format: 'es', entryFileNames: '[name].js', chunkFileNames: '[name]-[hash].js', sourcemap: false },
      {
        dir: 'dist',
        format: 'cjs',
        entryFileNames: '[name].cjs',
        chunkFileNames: '[name]-[hash].cjs',
        sourcemap: false,
        exports: 'named',
        dynamicImportInCjs: true,
      },
    ],
  },
  ...['d.ts', 'd.cts'].map((ext) => ({
    input: typedEntries,
    external,
    plugins: [dts({ compilerOptions: { allowImportingTsExtensions: true, noEmit: false } })],
    output: {
      dir: 'dist',
      format: 'es',
      entryFileNames: `[name].${ext}`,
      chunkFileNames: `[name]-[hash].${ext}`,
      // The WebGPU entry's types use GPUDevice & co. (optional peer dependency @webgpu/types).
      banner: (chunk) => (chunk.name === 'webgpu' ? '/// <reference types="@webgpu/types" />' : ''),
    },
  })),
];

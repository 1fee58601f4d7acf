/**
 * The code blocks of the user-facing docs, as a user would paste them: shared by
 * test/docs/readme.test.ts (runs each one against the source tree) and test/packaging/run.ts
 * (type-checks them against the packed package in a `moduleResolution: nodenext` project).
 *
 * A ```ts / ```typescript / ```js block is a snippet. An HTML comment on the line before its
 * fence (blank lines may sit between) can change how it runs:
 *
 *   <!-- snippet: skip (why) -->   not run; the reason is listed by the test
 *   <!-- snippet: webgpu -->       needs a WebGPU adapter (browser code): in Node the harness gives
 *                                  it `navigator.gpu` from npm `webgpu` (Dawn), as a browser would;
 *                                  skipped, and listed, where no adapter exists
 *
 * Every other block (```sh, plain ```) is text, never run.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Exit code of a webgpu snippet's run where Node has no adapter (test/docs/webgpu-prelude.ts). */
export const SKIP_CODE = 77;

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** User-facing docs whose code blocks must run (the ones with none are scanned all the same). */
export const DOCS = ['README.md', 'examples/browser/README.md', 'bench/README.md'];

const CODE_LANGS: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' };

export interface Snippet {
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The nearest heading above the block. */
  heading: string;
  lang: 'ts' | 'js';
  code: string;
  skip?: string;
  webgpu: boolean;
  /** `doc › heading (line N)` */
  name: string;
}

export interface ParsedDoc {
  snippets: Snippet[];
  /** Blocks that are not code (sh, plain, …), by language. */
  other: Array<{ line: number; lang: string }>;
  /** Malformed or dangling markers. */
  problems: string[];
}

const MARKER = /^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$/;

export function parseDoc(doc: string, text: string): ParsedDoc {
  const lines = text.split('\n');
  const out: ParsedDoc = { snippets: [], other: [], problems: [] };
  let heading = '(top)';
  let marker: { line: number; body: string } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$/.exec(l);
    if (open) {
      const fence = open[2];
      const lang = open[3].toLowerCase();
      const body: string[] = [];
      let j = i + 1;
      for (; j < lines.length && !(lines[j].trim().startsWith(fence) && lines[j].trim().replace(/[`~]/g, '') === ''); j++) body.push(lines[j]);
      if (j === lines.length) out.problems.push(`${doc}:${i + 1}: code block never closed`);
      const indent = open[1].length;
      const code = body.map((b) => b.slice(Math.min(indent, b.length - b.trimStart().length))).join('\n') + '\n';
      const kind = CODE_LANGS[lang];
      if (kind) {
        const s: Snippet = { doc, line: i + 1, heading, lang: kind, code, webgpu: false, name: `${doc} › ${heading} (line ${i + 1})` };
        if (marker) {
          for (const part of marker.body.split(',').map((p) => p.trim())) {
            const skip = /^skip\s*\((.+)\)$/.exec(part);
            if (skip) s.skip = skip[1].trim();
            else if (part === 'webgpu') s.webgpu = true;
            else out.problems.push(`${doc}:${marker.line}: unknown snippet marker "${part}" (expected "skip (reason)" or "webgpu")`);
          }
        }
        out.snippets.push(s);
      } else {
        if (marker) out.problems.push(`${doc}:${marker.line}: snippet marker before a ${lang || 'plain'} block (only ts/js blocks run)`);
        out.other.push({ line: i + 1, lang: lang || 'plain' });
      }
      marker = undefined;
      i = j;
      continue;
    }
    const m = MARKER.exec(l);
    if (m) {
      if (marker) out.problems.push(`${doc}:${marker.line}: snippet marker not followed by a code block`);
      marker = { line: i + 1, body: m[1] };
      continue;
    }
    if (l.trim() === '') continue;
    if (marker) {
      out.problems.push(`${doc}:${marker.line}: snippet marker not followed by a code block`);
      marker = undefined;
    }
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(l);
    if (h) heading = h[1];
  }
  if (marker) out.problems.push(`${doc}:${marker.line}: snippet marker at the end of the file`);
  return out;
}

export function readDoc(doc: string): ParsedDoc {
  return parseDoc(doc, readFileSync(join(ROOT, doc), 'utf8'));
}

/**
 * `slim-performer` subpath → source entry, from package.json "exports" (the dist file each
 * points at) and rollup.config.mjs's entries (the source each dist file is built from). Throws
 * if an export has no source entry, so a new export cannot be missed.
 */
export function sourceEntries(): Map<string, string> {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; exports: Record<string, unknown> };
  const rollup = readFileSync(join(ROOT, 'rollup.config.mjs'), 'utf8');
  const block = /const entries = \{([\s\S]*?)\};/.exec(rollup);
  if (!block) throw new Error('rollup.config.mjs: no `const entries = { … }` block');
  const entries = new Map<string, string>();
  for (const m of block[1].matchAll(/^\s*'?([\w-]+)'?\s*:\s*'([^']+)'/gm)) entries.set(m[1], m[2]);
  const map = new Map<string, string>();
  for (const [sub, target] of Object.entries(pkg.exports)) {
    if (sub === './package.json' || sub.includes('*')) continue;
    const file = typeof target === 'string' ? target : ((target as { import?: { default?: string } }).import?.default ?? '');
    const name = /^\.\/dist\/([\w-]+)\.js$/.exec(file)?.[1];
    const src = name ? entries.get(name) : undefined;
    if (!src) throw new Error(`package.json exports["${sub}"] (${file}) has no source entry in rollup.config.mjs`);
    map.set(sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`, join(ROOT, src));
  }
  return map;
}

/** The package's name (package.json). */
export function packageName(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string }).name;
}

/**
 * The snippet with its package imports pointing at the source tree (file URLs); nothing else
 * changes. Any other `slim-performer/…` specifier throws: a user's import would fail too.
 */
export function toSourceImports(code: string, entries = sourceEntries()): string {
  const name = packageName();
  const re = new RegExp(`(\\bfrom\\s*|\\bimport\\s*\\(?\\s*)(['"])(${name.replace(/[-/]/g, '\\$&')}(?:/[^'"]*)?)\\2`, 'g');
  return code.replace(re, (_all, pre: string, q: string, spec: string) => {
    const wasm = new RegExp(`^${name}/wasm/([\\w-]+\\.wasm)$`).exec(spec);
    const file = wasm ? join(ROOT, 'wasm', wasm[1]) : entries.get(spec);
    if (!file) throw new Error(`import of "${spec}": not an export of package.json (${[...entries.keys()].join(', ')})`);
    return `${pre}${q}${pathToFileURL(file).href}${q}`;
  });
}

/**
 * Every ```ts / ```js block of the user-facing docs (test/docs/snippets.ts: README.md,
 * examples/browser/README.md, bench/README.md) runs as pasted: written to a fresh project in the
 * system's temporary folder (its node_modules a link to this repo's), with only the
 * `slim-performer…` import specifiers pointing at the source entries, and run by Node with tsx,
 * as `node --import tsx snippet.mts`. It must exit 0 on its own (a snippet that leaves a worker
 * or a timer running hangs a user's script too) and print no error.
 *
 * Skipped only with a marker in the doc (listed at the end): `<!-- snippet: skip (why) -->`, or
 * `<!-- snippet: webgpu -->` where Node finds no WebGPU adapter.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DOCS, ROOT, SKIP_CODE, packageName, parseDoc, readDoc, sourceEntries, toSourceImports, type Snippet } from './snippets.ts';

const docs = DOCS.map((doc) => ({ doc, ...readDoc(doc) }));
const entries = sourceEntries();
const skipped: string[] = [];

const dir = mkdtempSync(join(tmpdir(), 'slim-docs-'));
symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'slim-docs-snippets', private: true, type: 'module' }));

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (skipped.length) console.log(`doc snippets skipped (${skipped.length}):\n${skipped.map((s) => `  ${s}`).join('\n')}`);
});

function run(file: string, webgpu: boolean): Promise<{ code: number | null; signal: string | null; out: string }> {
  const args = ['--import', 'tsx', ...(webgpu ? ['--import', join(ROOT, 'test/docs/webgpu-prelude.ts')] : []), file];
  // Mesa's EGL needs no display with this (CI sets it too). SLIM_WASM_DIR (CI's fresh build) passes through.
  const env = { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

/** Lines of output that report an error (Dawn's and Node's warnings are not errors). */
function errorLines(out: string): string[] {
  return out.split('\n').filter((l) => /\b(Error|Uncaught|Unhandled|TypeError|ReferenceError|SyntaxError)\b/.test(l) && !/^Warning:/.test(l.trim()));
}

describe('the snippet parser', () => {
  it('finds the README blocks and reads every marker', () => {
    const readme = docs.find((d) => d.doc === 'README.md')!;
    expect(readme.snippets.length).toBeGreaterThanOrEqual(3);
    expect(readme.other.some((o) => o.lang === 'sh')).toBe(true);
    for (const d of docs) expect(d.problems, d.doc).toEqual([]);
    for (const s of docs.flatMap((d) => d.snippets)) if (s.skip !== undefined) expect(s.skip.length, s.name).toBeGreaterThan(3);
  });

  it('parses markers, headings, indented fences, and rejects bad markers', () => {
    const text = [
      '# A',
      '```ts',
      "import { init } from 'slim-performer';",
      '```',
      '## B',
      '<!-- snippet: skip (browser only) -->',
      '',
      '  ```js',
      '  const x = 1;',
      '  ```',
      '<!-- snippet: webgpu -->',
      '```typescript',
      'x',
      '```',
      '<!-- snippet: frobnicate -->',
      '```ts',
      '```',
      '<!-- snippet: skip (x) -->',
      'text',
      '```sh',
      'npm test',
      '```',
    ].join('\n');
    const p = parseDoc('X.md', text);
    expect(p.snippets.map((s) => [s.line, s.heading, s.lang, s.skip, s.webgpu])).toEqual([
      [2, 'A', 'ts', undefined, false],
      [8, 'B', 'js', 'browser only', false],
      [12, 'B', 'ts', undefined, true],
      [16, 'B', 'ts', undefined, false],
    ]);
    expect(p.snippets[1].code).toBe('const x = 1;\n');
    expect(p.other).toEqual([{ line: 20, lang: 'sh' }]);
    expect(p.problems).toHaveLength(2);
    expect(p.problems[0]).toMatch(/X\.md:15: unknown snippet marker "frobnicate"/);
    expect(p.problems[1]).toMatch(/X\.md:18: snippet marker not followed by a code block/);
  });

  it('maps every package export to a source entry, and only those', () => {
    const name = packageName();
    expect([...entries.keys()]).toContain(name);
    expect(entries.get(`${name}/tfjs`)).toBe(join(ROOT, 'src/tfjs/index.ts'));
    const code = `import { a } from '${name}';\nimport * as w from "${name}/webgpu";\nimport '${name}/tfjs';\nconst m = await import('${name}/parallel');\nimport x from 'other';\n`;
    const out = toSourceImports(code, entries);
    expect(out).not.toMatch(new RegExp(`['"]${name}`));
    expect(out).toContain(`from 'file://`);
    expect(out).toContain("import x from 'other'");
    expect(() => toSourceImports(`import { y } from '${name}/nope';`, entries)).toThrow(/not an export/);
  });
});

for (const { doc, snippets, other } of docs) {
  describe(doc, () => {
    if (snippets.length === 0) {
      it(`${doc}: no ts/js blocks (${other.length} shell/plain blocks, not run)`, () => expect(other.length).toBeGreaterThan(0));
    }
    snippets.forEach((s: Snippet, n) => {
      it(s.name, async (ctx) => {
        if (s.skip !== undefined) {
          skipped.push(`${s.name}: ${s.skip}`);
          ctx.skip(s.skip);
        }
        const file = join(dir, `${doc.replace(/[^\w]+/g, '_')}_${n}_line${s.line}.${s.lang === 'ts' ? 'mts' : 'mjs'}`);
        writeFileSync(file, toSourceImports(s.code, entries));
        const r = await run(file, s.webgpu);
        if (s.webgpu && r.code === SKIP_CODE && r.out.includes('SNIPPET-SKIP')) {
          const why = /SNIPPET-SKIP: (.*)/.exec(r.out)![1];
          skipped.push(`${s.name}: ${why}`);
          ctx.skip(why);
        }
        const report = `${s.name} exited ${r.code ?? r.signal}:\n${r.out.slice(-3000)}\n---- snippet ----\n${s.code}`;
        expect(r.code, report).toBe(0);
        expect(errorLines(r.out), report).toEqual([]);
      });
    });
  });
}

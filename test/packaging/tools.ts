/**
 * Shared by test/packaging/run.ts and bench/runtimes: the packed tarball, fresh consumer projects,
 * the pinned runtimes (test/packaging/runtimes/package.json, installed on demand), and child
 * processes that are always stopped.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const RUNTIMES_DIR = join(ROOT, 'test/packaging/runtimes');

export function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): { code: number; out: string } {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 300_000,
    maxBuffer: 64 << 20,
  });
  return { code: r.status ?? (r.signal ? 128 : 1), out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

export function must(cmd: string, args: string[], opts: Parameters<typeof sh>[2] = {}): string {
  const r = sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}):\n${r.out.slice(-4000)}`);
  return r.out;
}

/** Builds dist/ if missing (or when `build`), packs, returns the tarball's path. */
export function packTarball(outDir: string, build: boolean): string {
  if (build || !existsSync(join(ROOT, 'dist/index.js'))) must('npm', ['run', 'build']);
  mkdirSync(outDir, { recursive: true });
  const out = must('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', outDir]);
  const info = JSON.parse(out.slice(out.indexOf('['))) as Array<{ filename: string }>;
  return join(outDir, info[0].filename);
}

/**
 * Bundles `<dir>/worker.js` for workerd as wrangler does (esbuild, workerd's export conditions,
 * `.wasm` and `node:` imports left to the runtime) into `<dir>/<out>/worker.js`.
 */
export function bundleForWorkerd(dir: string, out: string): void {
  mkdirSync(join(dir, out), { recursive: true });
  must(
    join(ROOT, 'node_modules/.bin/esbuild'),
    [
      'worker.js',
      '--bundle',
      '--format=esm',
      '--platform=neutral',
      '--main-fields=module,main',
      '--conditions=workerd,worker,browser',
      '--external:*.wasm',
      '--external:node:*',
      `--outfile=${out}/worker.js`,
      '--log-level=warning',
    ],
    { cwd: dir },
  );
}

/** A fresh project in a temporary folder with the tarball installed from file. */
export function consumerProject(tag: string, tarball: string, pkg: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `slim-pack-${tag}-`));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${tag}`, private: true, version: '0.0.0', ...pkg }, null, 2));
  must('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', tarball], { cwd: dir });
  copyFileSync(join(ROOT, 'test/packaging/probe.js'), join(dir, 'probe.js'));
  return dir;
}

/** Links a package from this repo's node_modules into a consumer (for peer dependencies). */
export function linkFromRepo(dir: string, name: string): void {
  const to = join(dir, 'node_modules', name);
  mkdirSync(dirname(to), { recursive: true });
  if (!existsSync(to)) symlinkSync(join(ROOT, 'node_modules', name), to, 'dir');
}

export function cleanup(dir: string): void {
  if (!process.env.SLIM_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
}

const BINARIES: Record<string, string> = {
  bun: 'node_modules/bun/bin/bun.exe',
  deno: 'node_modules/@deno/linux-x64-glibc/deno',
  workerd: 'node_modules/@cloudflare/workerd-linux-64/bin/workerd',
  node22: 'node_modules/node22/bin/node',
  node24: 'node_modules/node24/bin/node',
};

/**
 * Path of a pinned runtime binary, installing test/packaging/runtimes on first use (npm, from
 * the lock file). Null when it cannot be installed (reported as skipped, with the reason).
 */
export function runtimeBin(name: 'bun' | 'deno' | 'workerd' | 'node22' | 'node24'): { path: string | null; why: string } {
  const p = join(RUNTIMES_DIR, BINARIES[name]);
  if (!existsSync(p)) {
    const r = sh('npm', ['ci', '--no-audit', '--no-fund', '--prefix', RUNTIMES_DIR]);
    if (r.code !== 0) return { path: null, why: `npm ci --prefix test/packaging/runtimes failed: ${r.out.slice(-300)}` };
  }
  if (!existsSync(p)) return { path: null, why: `${BINARIES[name]} missing after install (platform not linux-x64-glibc?)` };
  const v = sh(p, ['--version']);
  if (v.code !== 0) return { path: null, why: `${name} --version failed: ${v.out.slice(-300)}` };
  return { path: p, why: v.out.trim() };
}

export function chromiumPath(): string | null {
  for (const p of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) {
    if (p && existsSync(p)) return p;
  }
  return null;
}

/** A started child process that is always stopped (SIGTERM, then SIGKILL). */
export class Proc {
  out = '';
  readonly child: ChildProcess;
  private exited: Promise<number | null>;

  constructor(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.out += String(d)));
    this.child.stderr!.on('data', (d) => (this.out += String(d)));
    this.exited = new Promise((res) => {
      this.child.on('exit', (code) => res(code));
      this.child.on('error', (e) => {
        this.out += String(e);
        res(-1);
      });
    });
  }

  /** Waits for exit (kills after `ms`); returns the exit code (null: killed). */
  async wait(ms: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), ms)));
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      this.out += `\n[killed after ${ms} ms]`;
      await this.stop();
      return null;
    }
    return r;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

/** The line `RESULT {json}` a consumer prints. */
export function resultOf(out: string): unknown {
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no RESULT line in output:\n${out.slice(-3000)}`);
  return JSON.parse(line.slice(7));
}

const MIME: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.css': 'text/css',
};

/** A static file server on 127.0.0.1 (ephemeral port); `coi` adds cross-origin isolation headers. */
export async function serveStatic(root: string, coi = false): Promise<{ url: string; server: Server }> {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = join(root, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(root)) return void res.writeHead(403).end();
    try {
      const body = await readFile(file);
      const headers: Record<string, string> = { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' };
      if (coi) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
      res.writeHead(200, headers).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}/`, server };
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function listFiles(dir: string): string[] {
  return readdirSync(dir);
}

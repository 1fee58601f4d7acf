/** Result records and their markdown rendering: one table per (B·H, M), rows T. */
import type { Summary } from './timing.ts';
import { fmtMB } from './memory.ts';

export interface ModeResult {
  /** 'ok' | 'OOM' | 'error: …' | 'skipped: …' | 'FAILED GATE' | 'n/a' | 'unavailable: …' */
  status: string;
  samples?: number[];
  summary?: Summary;
  peakBytes?: number;
  flops?: number;
  /** flops / median time */
  gflops?: number;
  estimateBytes?: number;
  detail?: Record<string, number | string>;
}

export interface CaseResult {
  method: string;
  bh: number;
  m: number;
  t: number;
  d: number;
  dv: number;
  fwd: ModeResult;
  fwdbwd: ModeResult;
  /** set when the result was measured at another M and reused (method cost independent of M) */
  reusedFromM?: number;
}

export function fmtMs(ms: number): string {
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

const short = (s: string, n = 40) => (s.length > n ? `${s.slice(0, n - 1)}…` : s).replace(/\|/g, '/');

function timeCell(r: ModeResult): string {
  if (r.status !== 'ok' || !r.summary) return short(r.status);
  const s = r.summary;
  return s.reps > 1 ? `${fmtMs(s.median)} [${fmtMs(s.min)}–${fmtMs(s.max)}]` : `${fmtMs(s.median)} (1 rep)`;
}

const num = (x: number | undefined, f: (v: number) => string) => (x == null || !Number.isFinite(x) ? '–' : f(x));

function pairCell(a: ModeResult, b: ModeResult, pick: (r: ModeResult) => number | undefined, f: (v: number) => string): string {
  const one = (r: ModeResult) => (r.status === 'ok' ? num(pick(r), f) : '–');
  return `${one(a)} / ${one(b)}`;
}

/** Markdown table for one (B·H, M): rows T, four columns per method. */
export function caseTable(results: CaseResult[], methods: string[], bh: number, m: number): string {
  const rows = results.filter((r) => r.bh === bh && r.m === m);
  const ts = [...new Set(rows.map((r) => r.t))].sort((a, b) => a - b);
  const present = methods.filter((name) => rows.some((r) => r.method === name));
  if (!ts.length || !present.length) return '';
  const head = ['T'];
  for (const name of present) head.push(`${name} fwd ms [min–max]`, `${name} fwd+bwd ms`, `${name} GFLOP/s fwd / f+b`, `${name} peak MB fwd / f+b`);
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---:' : '---')).join('|')}|`];
  for (const t of ts) {
    const cells = [String(t)];
    for (const name of present) {
      const r = rows.find((x) => x.method === name && x.t === t);
      if (!r) {
        cells.push('', '', '', '');
        continue;
      }
      cells.push(
        timeCell(r.fwd),
        timeCell(r.fwdbwd),
        pairCell(
          r.fwd,
          r.fwdbwd,
          (x) => x.gflops,
          (v) => v.toFixed(v < 10 ? 2 : 1),
        ),
        pairCell(r.fwd, r.fwdbwd, (x) => x.peakBytes, fmtMB),
      );
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * The bookkeeping of the bad-input suites: every case runs one call that should be refused (or
 * give a correct result), and is classified by what happened:
 *
 * - `ArgError`: refused with an ArgError whose message names the argument (`names`);
 * - `Error`: refused with another Error whose message names it;
 * - `ok`: a result with every number finite (and, where the case says so, correct);
 * - `silent NaN`: a result holding NaN or ±Infinity;
 * - `crash`: a wasm trap, a hang, a non-Error throw, or an accidental JS error (`Cannot read
 *   properties of undefined`, `x is not a function`, …);
 * - `unclear`: refused, but the message does not name the argument;
 * - `accepted`: a bad input that was expected to be refused returned a (finite) result;
 * - `wrong`: a result that the case's own check rejects, or a good input that was refused.
 *
 * Independently of the outcome, a case is a `leak` when the resources it watches (wasm
 * `liveBytes`, TF.js tensors, GPU buffers) did not return to their baseline, and `state lost`
 * when the next good call afterwards fails or differs from the result before the bad one.
 */
import { ArgError } from '../../src/index.ts';

export type Outcome = 'ArgError' | 'Error' | 'ok' | 'silent NaN' | 'crash' | 'unclear' | 'accepted' | 'wrong';

export const OUTCOMES: readonly Outcome[] = ['ArgError', 'Error', 'ok', 'silent NaN', 'crash', 'unclear', 'accepted', 'wrong'];

export interface CaseResult {
  group: string;
  name: string;
  outcome: Outcome;
  leak: boolean;
  stateLost: boolean;
  detail: string;
}

export interface Probe<R> {
  /** The call under test. */
  run: () => R | Promise<R>;
  /** `'refuse'`: bad input; `'ok'`: must succeed; `'either'`: refusal or finite result. */
  expect: 'refuse' | 'ok' | 'either';
  /** A refusal's message must match this (it names the argument and what was expected). */
  names?: RegExp;
  /** When a result comes back: throw if it is wrong. */
  check?: (r: Awaited<R>) => void;
  /** Resources that must be back at their baseline afterwards (e.g. `[liveBytes, tensors]`). */
  resources?: () => number[];
  /** The next good call: throws if it fails or differs from the result before the case. */
  after?: () => void | Promise<void>;
  /** A call that takes longer is a hang (default 20 s). */
  timeoutMs?: number;
}

/** Accidental JS errors: the library did not check its input before using it. */
const ACCIDENTAL =
  /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not a constructor|undefined is not|null is not|Maximum call stack|Invalid array length|Invalid typed array length|out of bounds|unreachable/i;

/** The first non-finite number anywhere in `x` (typed arrays, arrays, objects, numbers), as a path. */
export function findNonFinite(x: unknown, path = 'result', seen = new Set<unknown>()): string | undefined {
  if (typeof x === 'number') return Number.isFinite(x) ? undefined : `${path} = ${x}`;
  if (x === null || typeof x !== 'object' || seen.has(x)) return undefined;
  seen.add(x);
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) {
    const a = x as unknown as ArrayLike<number | bigint>;
    for (let i = 0; i < a.length; i++) if (typeof a[i] === 'number' && !Number.isFinite(a[i])) return `${path}[${i}] = ${a[i]}`;
    return undefined;
  }
  // A TF.js tensor: read its values (the cases keep them small).
  const t = x as { dataSync?: () => ArrayLike<number>; isDisposed?: boolean; dtype?: string };
  if (typeof t.dataSync === 'function' && t.isDisposed === false) {
    return t.dtype === 'string' ? undefined : findNonFinite(t.dataSync(), `${path}.data`, seen);
  }
  for (const [k, v] of Object.entries(x)) {
    const r = findNonFinite(v, `${path}.${k}`, seen);
    if (r) return r;
  }
  return undefined;
}

function timeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new HangError(`no answer within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

class HangError extends Error {}

export class Recorder {
  readonly results: CaseResult[] = [];

  /** Runs one case, records it and returns its result (the caller asserts on it). */
  async probe<R>(group: string, name: string, p: Probe<R>): Promise<CaseResult> {
    const before = p.resources?.();
    let outcome: Outcome;
    let detail = '';
    try {
      const value = await timeout(Promise.resolve().then(p.run), p.timeoutMs ?? 20_000);
      const bad = findNonFinite(value);
      if (bad) {
        outcome = 'silent NaN';
        detail = bad;
      } else if (p.expect === 'refuse') {
        outcome = 'accepted';
        detail = 'a bad input returned a result';
      } else {
        outcome = 'ok';
        try {
          p.check?.(value as Awaited<R>);
        } catch (e) {
          outcome = 'wrong';
          detail = (e as Error).message;
        }
      }
    } catch (e) {
      ({ outcome, detail } = classify(e, p as Probe<unknown>));
    }
    const after = p.resources?.();
    const leak = !!before && !!after && before.some((b, i) => after[i] !== b);
    if (leak) detail += ` [leak: ${JSON.stringify(before)} → ${JSON.stringify(after)}]`;
    let stateLost = false;
    if (p.after) {
      try {
        await timeout(Promise.resolve().then(p.after), 60_000);
      } catch (e) {
        stateLost = true;
        detail += ` [state lost: ${(e as Error).message}]`;
      }
    }
    const r = { group, name, outcome, leak, stateLost, detail };
    this.results.push(r);
    return r;
  }

  /** Counts per outcome, plus leaks and lost states. */
  counts(): Record<Outcome | 'leak' | 'state lost' | 'cases', number> {
    const c = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome | 'leak' | 'state lost' | 'cases', number>;
    c.cases = this.results.length;
    c.leak = 0;
    c['state lost'] = 0;
    for (const r of this.results) {
      c[r.outcome]++;
      if (r.leak) c.leak++;
      if (r.stateLost) c['state lost']++;
    }
    return c;
  }

  /** A printable summary: totals, then per group (then every case, with `verbose`: `SLIM_RELIABILITY_VERBOSE=1`). */
  summary(
    title: string,
    verbose = !!(globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SLIM_RELIABILITY_VERBOSE,
  ): string {
    const c = this.counts();
    const line = (label: string, rs: CaseResult[]) => {
      const n = (o: Outcome) => rs.filter((r) => r.outcome === o).length;
      return `  ${label.padEnd(26)} ${String(rs.length).padStart(4)} cases: ${OUTCOMES.map((o) => `${o} ${n(o)}`).join(', ')}; leak ${rs.filter((r) => r.leak).length}; state lost ${rs.filter((r) => r.stateLost).length}`;
    };
    const groups = [...new Set(this.results.map((r) => r.group))];
    const bad = this.results.filter(isFailure);
    return [
      `${title}: ${c.cases} cases — refused with ArgError ${c.ArgError}, refused with Error ${c.Error}, ok ${c.ok}, silent NaN ${c['silent NaN']}, crash ${c.crash}, unclear ${c.unclear}, accepted ${c.accepted}, wrong ${c.wrong}, leak ${c.leak}, state lost ${c['state lost']}`,
      ...groups.map((g) =>
        line(
          g,
          this.results.filter((r) => r.group === g),
        ),
      ),
      ...bad.map((r) => `  FAILED ${r.group} / ${r.name}: ${r.outcome}${r.detail ? ` — ${r.detail}` : ''}`),
      ...(verbose ? this.results.map((r) => `  ${r.outcome.padEnd(10)} ${r.group} / ${r.name}${r.detail ? ` — ${r.detail}` : ''}`) : []),
    ].join('\n');
  }
}

/** Whether a recorded case is a failure of the library (what the suites assert to be none). */
export function isFailure(r: CaseResult): boolean {
  return r.leak || r.stateLost || !['ArgError', 'Error', 'ok'].includes(r.outcome);
}

function classify(e: unknown, p: Probe<unknown>): { outcome: Outcome; detail: string } {
  if (e instanceof HangError) return { outcome: 'crash', detail: `hang: ${e.message}` };
  if (!(e instanceof Error)) return { outcome: 'crash', detail: `threw a non-Error: ${String(e)}` };
  const message = `${e.name}: ${e.message}`;
  if (e instanceof WebAssembly.RuntimeError || (!(e instanceof ArgError) && ACCIDENTAL.test(e.message))) return { outcome: 'crash', detail: message };
  if (p.expect === 'ok') return { outcome: 'wrong', detail: `a good input was refused: ${message}` };
  if (!e.message || (p.names && !p.names.test(e.message))) return { outcome: 'unclear', detail: `${message} (expected to match ${p.names})` };
  return { outcome: e instanceof ArgError ? 'ArgError' : 'Error', detail: message };
}

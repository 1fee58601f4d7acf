/**
 * Command line: evaluate or sample a model stored as safetensors.
 *
 *   npm run cli -- eval     --weights model.safetensors --text input.txt [--slice 256]
 *   npm run cli -- generate --weights model.safetensors --prompt "…" [--tokens 200 --temperature 0.8 --top-k 20 --seed 1]
 *
 * Reference favor+ models keep their random features apart: `--rfs vectors.safetensors`.
 *
 * The file's metadata holds `config` (a reference `SLiMPerformer` config, as the paper's code and
 * `exportWeights` write it, or a `PerformerLM` config with `"architecture": "performer-lm"`), and
 * optionally `vocab` (a JSON list of the characters of a character-level model); without it, text
 * is whitespace-separated token ids.
 */
import { readFileSync } from 'node:fs';
import { parseSafetensors } from './io/safetensors.ts';
import type { SequenceModel } from './model/sequence_model.ts';
// TF.js, the kernels and the models load only once the command line and the files check out
// (see main), so that a mistyped flag is answered at once.

/** A refusal of the command line: printed as one line, exit status 2. */
class UsageError extends Error {}

const KNOWN: Record<'eval' | 'generate', readonly string[]> = {
  eval: ['weights', 'rfs', 'text', 'slice'],
  generate: ['weights', 'rfs', 'prompt', 'tokens', 'temperature', 'top-k', 'seed'],
};

function flags(command: 'eval' | 'generate', argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(argv[i])} (flags are --name value or --name=value)`);
    if (!KNOWN[command].includes(m[1]))
      throw new UsageError(`unknown flag --${m[1]} for ${command} (known: ${KNOWN[command].map((k) => `--${k}`).join(', ')})`);
    if (m[1] in out) throw new UsageError(`--${m[1]} is given twice`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
    out[m[1]] = value;
  }
  return out;
}

/** `--name` as a number: an integer ≥ `min`, or (`real`) a finite number ≥ `min`; `fallback` when absent. */
function numberFlag(f: Record<string, string>, name: string, fallback: number, min: number, real = false): number {
  const raw = f[name];
  if (raw === undefined) return fallback;
  const x = raw.trim() === '' ? NaN : Number(raw);
  const ok = real ? Number.isFinite(x) : Number.isSafeInteger(x);
  if (!ok || x < min) throw new UsageError(`--${name} must be ${real ? 'a finite number' : 'an integer'} ≥ ${min}, got ${JSON.stringify(raw)}`);
  return x;
}

function readFlagFile(flag: string, path: string | undefined, encoding?: 'utf8'): Buffer | string {
  if (!path) throw new UsageError(`--${flag} <file> is required`);
  try {
    return encoding ? readFileSync(path, encoding) : readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(
      `cannot read --${flag} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'it is a directory' : err.message}`,
    );
  }
}

function bar(done: number, total: number, extra: string): void {
  const w = 30;
  const n = Math.round((w * done) / total);
  process.stderr.write(`\r[${'#'.repeat(n)}${'.'.repeat(w - n)}] ${done}/${total} ${extra}   `);
  if (done === total) process.stderr.write('\n');
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== 'eval' && command !== 'generate') {
    console.error(
      `usage: cli eval --weights F --text F [--slice N] | generate --weights F --prompt S [--tokens N --temperature X --top-k K --seed S]${command === undefined ? '' : ` (unknown command ${JSON.stringify(command)})`}`,
    );
    process.exit(2);
  }
  const f = flags(command, rest);
  // Every flag is checked before any work starts.
  const slice = numberFlag(f, 'slice', 256, 1);
  const newTokens = numberFlag(f, 'tokens', 100, 0);
  const temperature = numberFlag(f, 'temperature', 1, 0, true);
  const topK = numberFlag(f, 'top-k', 0, 0);
  const seed = numberFlag(f, 'seed', 0, 0);
  if (command === 'generate' && f.prompt === undefined) throw new UsageError('--prompt <text> is required');
  const bytes = new Uint8Array(readFlagFile('weights', f.weights) as Buffer);
  const text = command === 'eval' ? (readFlagFile('text', f.text, 'utf8') as string) : '';
  const rfsBytes = f.rfs === undefined ? undefined : new Uint8Array(readFlagFile('rfs', f.rfs) as Buffer);
  const { metadata, tensors } = inFile(f.weights, () => parseSafetensors(bytes));
  if (!metadata.config) throw new Error(`${f.weights}: no "config" in the safetensors metadata`);
  const config = inFile(f.weights, () => JSON.parse(metadata.config));
  const vocab: string[] | undefined = metadata.vocab ? inFile(f.weights, () => JSON.parse(metadata.vocab)) : undefined;
  const [tf, { init }, { importWeights }, { PerformerLM, sample }, { ReferenceLM }, { Rng }] = await Promise.all([
    import('@tensorflow/tfjs'),
    import('./index.ts'),
    import('./io/weights.ts'),
    import('./model/performer_lm.ts'),
    import('./model/reference_lm.ts'),
    import('./features/index.ts'),
  ]);
  tf.enableProdMode(); // no TF.js banners on stderr: it carries the progress bar and errors only
  await tf.setBackend('cpu');
  const kernels = await init();
  const rfsFrom = rfsBytes ? inFile(f.rfs!, () => parseSafetensors(rfsBytes)).tensors : tensors;
  const model: SequenceModel & { dispose(): void } = inFile(f.weights, () => {
    if (config?.architecture === 'performer-lm') {
      const lm = new PerformerLM(kernels, config);
      importWeights(lm, bytes);
      return lm;
    }
    const rfs = [...rfsFrom.keys()]
      .filter((k) => k.startsWith('rfs.'))
      .sort()
      .map((k) => rfsFrom.get(k)!.data as Float64Array);
    const reference = new ReferenceLM(kernels, config, rfs.length ? rfs : undefined);
    reference.setWeights(new Map([...tensors].filter(([k]) => !k.startsWith('rfs.'))) as never);
    return reference;
  });
  const V = model.config.vocabSize;
  /** Text as token ids: characters of the vocabulary, or whitespace-separated ids in [0, V). */
  const encode = (s: string, flag: string): number[] => {
    if (vocab) return [...s].map((c) => Math.max(0, vocab.indexOf(c)));
    const words = s.trim() === '' ? [] : s.trim().split(/\s+/);
    return words.map((w, i) => {
      const id = Number(w);
      if (!Number.isSafeInteger(id) || id < 0 || id >= V)
        throw new UsageError(
          `${flag}: token ${i} is ${JSON.stringify(w)}; without a vocabulary in the file, text must be whitespace-separated token ids in [0, ${V})`,
        );
      return id;
    });
  };
  const decode = (ids: number[]) => (vocab ? ids.map((i) => vocab[i]).join('') : ids.join(' '));

  if (command === 'eval') {
    const ids = encode(text, `--text ${f.text}`);
    if (ids.length < 2) throw new UsageError(`--text ${f.text} holds ${ids.length} token(s); eval needs at least 2 (inputs and their next tokens)`);
    let states = model.emptyStates(1);
    let nll = 0;
    const total = ids.length - 1;
    for (let t0 = 0; t0 < total; t0 += slice) {
      const t1 = Math.min(t0 + slice, total);
      tf.tidy(() => {
        const r = model.forward(tf.tensor2d(ids.slice(t0, t1), [1, t1 - t0], 'int32'), { offset: t0, states });
        states = r.statesOut;
        const logp = tf.logSoftmax(tf.reshape(r.logits, [t1 - t0, -1]));
        nll -= tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(ids.slice(t0 + 1, t1 + 1), 'int32'), model.config.vocabSize))).dataSync()[0];
      });
      bar(t1, total, `loss ${(nll / t1).toFixed(4)}`);
    }
    if (!Number.isFinite(nll)) throw new Error(`${f.weights}: the loss is ${nll / total}: the model produced non-finite logits; its weights may be corrupt`);
    console.log(JSON.stringify({ tokens: total, loss: nll / total, perplexity: Math.exp(nll / total) }));
  } else {
    const rng = new Rng(seed);
    let states = model.emptyStates(1);
    let ids = encode(f.prompt, '--prompt');
    if (ids.length === 0) throw new UsageError('--prompt must hold at least one token');
    let pos = 0;
    const out: number[] = [];
    for (let n = 0; n < newTokens; n++) {
      const logits = tf.tidy(() => {
        const r = model.forward(tf.tensor2d(ids, [1, ids.length], 'int32'), { offset: pos, states });
        states = r.statesOut;
        return Float32Array.from(r.logits.slice([0, ids.length - 1, 0], [1, 1, -1]).dataSync());
      });
      pos += ids.length;
      if (!logits.every(Number.isFinite))
        throw new Error(`${f.weights}: the model produced non-finite logits at position ${pos - 1}; its weights may be corrupt`);
      ids = [sample(logits, temperature, topK, rng)];
      out.push(ids[0]);
    }
    console.log(decode(out));
  }
  model.dispose();
  kernels.dispose();
}

/** Runs `f`, prefixing any error with the file it concerns. */
function inFile<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new Error(`${path}: ${(e as Error)?.message ?? String(e)}`);
  }
}

main().catch((e) => {
  // One line, no stack trace: the message is for the person at the terminal.
  const message = e instanceof Error ? e.message : String(e);
  console.error(`error: ${message.replace(/\s*\n\s*/g, ' ')}`);
  process.exit(e instanceof UsageError ? 2 : 1);
});

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
import * as tf from '@tensorflow/tfjs';
import { init } from './index.ts';
import { parseSafetensors } from './io/safetensors.ts';
import { importWeights } from './io/weights.ts';
import { PerformerLM, sample } from './model/performer_lm.ts';
import { ReferenceLM } from './model/reference_lm.ts';
import type { SequenceModel } from './model/sequence_model.ts';
import { Rng } from './features/index.ts';

function flags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    out[m[1]] = m[2] ?? argv[++i] ?? '';
  }
  return out;
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
    console.error('usage: cli eval --weights F --text F [--slice N] | generate --weights F --prompt S [--tokens N --temperature X --top-k K --seed S]');
    process.exit(2);
  }
  const f = flags(rest);
  if (!f.weights) throw new Error('--weights <file.safetensors> is required');
  await tf.setBackend('cpu');
  const kernels = await init();
  const bytes = new Uint8Array(readFileSync(f.weights));
  const { metadata, tensors } = parseSafetensors(bytes);
  if (!metadata.config) throw new Error(`${f.weights}: no "config" in the safetensors metadata`);
  const config = JSON.parse(metadata.config);
  let model: SequenceModel & { dispose(): void };
  if (config.architecture === 'performer-lm') {
    model = new PerformerLM(kernels, config);
    importWeights(model, bytes);
  } else {
    const rfsFrom = f.rfs ? parseSafetensors(new Uint8Array(readFileSync(f.rfs))).tensors : tensors;
    const rfs = [...rfsFrom.keys()].filter((k) => k.startsWith('rfs.')).sort().map((k) => rfsFrom.get(k)!.data as Float64Array);
    const reference = new ReferenceLM(kernels, config, rfs.length ? rfs : undefined);
    reference.setWeights(new Map([...tensors].filter(([k]) => !k.startsWith('rfs.'))) as never);
    model = reference;
  }
  const vocab: string[] | undefined = metadata.vocab ? JSON.parse(metadata.vocab) : undefined;
  const encode = (s: string) => (vocab ? [...s].map((c) => Math.max(0, vocab.indexOf(c))) : s.trim().split(/\s+/).map(Number));
  const decode = (ids: number[]) => (vocab ? ids.map((i) => vocab[i]).join('') : ids.join(' '));

  if (command === 'eval') {
    const ids = encode(readFileSync(f.text, 'utf8'));
    const slice = Number(f.slice ?? 256);
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
    console.log(JSON.stringify({ tokens: total, loss: nll / total, perplexity: Math.exp(nll / total) }));
  } else {
    const rng = new Rng(Number(f.seed ?? 0));
    let states = model.emptyStates(1);
    let ids = encode(f.prompt ?? '');
    if (ids.length === 0) throw new Error('--prompt must hold at least one token');
    let pos = 0;
    const out: number[] = [];
    for (let n = 0; n < Number(f.tokens ?? 100); n++) {
      const logits = tf.tidy(() => {
        const r = model.forward(tf.tensor2d(ids, [1, ids.length], 'int32'), { offset: pos, states });
        states = r.statesOut;
        return Float32Array.from(r.logits.slice([0, ids.length - 1, 0], [1, 1, -1]).dataSync());
      });
      pos += ids.length;
      ids = [sample(logits, Number(f.temperature ?? 1), Number(f['top-k'] ?? 0), rng)];
      out.push(ids[0]);
    }
    console.log(decode(out));
  }
  model.dispose();
  kernels.dispose();
}

main().catch((e) => {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});

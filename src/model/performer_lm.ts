/**
 * A Performer language model on TF.js variables and the fused attention op.
 *
 * tokens `[B, T]` → embedding + sinusoidal positions (starting at `offset`, so a slice knows
 * where it is) → N blocks (causal Performer attention, GELU feed-forward, layer norms, pre-LN by
 * default) → logits `[B, T, vocab]`. Every layer carries an attention state, so a sequence can
 * be processed in slices, and decoding costs the same at every position.
 */
import * as tf from '@tensorflow/tfjs';
import { randomProjection, Rng } from '../features/index.ts';
import { embed } from '../tfjs/ops/embedding.ts';
import { gelu } from '../tfjs/ops/activation.ts';
import { dense } from '../tfjs/ops/dense.ts';
import { transformerBlock } from '../tfjs/ops/block.ts';
import { layerNorm } from '../tfjs/ops/norm.ts';
import { performerAttention } from '../tfjs/op.ts';
import { performerAttentionWebGPU } from '../tfjs/webgpu_op.ts';
import type { AttnState, FeatureMap } from '../kernels/types.ts';
import { emptyState } from '../kernels/state.ts';
import type { SyncKernels } from '../kernels/interface.ts';
import type { WebGPUKernels } from '../webgpu/kernels.ts';
import type { ForwardOptions, ForwardResult, SequenceModel } from './sequence_model.ts';

export interface PerformerLMConfig {
  vocabSize: number;
  dModel: number;
  heads: number;
  layers: number;
  /** Feed-forward width. */
  ffn: number;
  feature: FeatureMap;
  /** Random features per head (favor; default: the head width). */
  features?: number;
  /** Kernel chunk length (default 64). */
  chunk?: number;
  /** Pre-LN blocks (default) or post-LN. */
  preLN?: boolean;
  /** Seed of the initial weights and random features. */
  seed?: number;
}

export type { ForwardOptions, ForwardResult, StateSource } from './sequence_model.ts';

interface Block {
  ln1g: tf.Variable;
  ln1b: tf.Variable;
  wq: tf.Variable;
  bq: tf.Variable;
  wk: tf.Variable;
  bk: tf.Variable;
  wv: tf.Variable;
  bv: tf.Variable;
  wo: tf.Variable;
  bo: tf.Variable;
  ln2g: tf.Variable;
  ln2b: tf.Variable;
  w1: tf.Variable;
  b1: tf.Variable;
  w2: tf.Variable;
  b2: tf.Variable;
}

/** Sinusoidal positions `[T, width]` for positions `offset … offset + T − 1` (all sines, then cosines). */
export function positions(offset: number, t: number, width: number): tf.Tensor2D {
  const half = width / 2;
  const data = new Float32Array(t * width);
  for (let i = 0; i < t; i++) {
    for (let k = 0; k < half; k++) {
      const a = (offset + i) * Math.exp((-Math.log(10000) * 2 * k) / width);
      data[i * width + k] = Math.sin(a);
      data[i * width + half + k] = Math.cos(a);
    }
  }
  return tf.tensor2d(data, [t, width]);
}

export class PerformerLM {
  readonly config: Required<PerformerLMConfig>;
  readonly embed: tf.Variable;
  readonly blocks: Block[];
  readonly lnFg: tf.Variable;
  readonly lnFb: tf.Variable;
  readonly headW: tf.Variable;
  readonly headB: tf.Variable;
  /** Per layer `[heads, features, headWidth]` fixed random features (favor). */
  readonly omegas: Array<Float32Array | undefined>;

  constructor(
    readonly kernels: SyncKernels,
    config: PerformerLMConfig,
  ) {
    const c = { features: config.dModel / config.heads, chunk: 64, preLN: true, seed: 1, ...config };
    for (const key of ['vocabSize', 'dModel', 'heads', 'layers', 'ffn', 'features', 'chunk'] as const) {
      if (!Number.isSafeInteger(c[key]) || c[key] <= 0) throw new TypeError(`PerformerLM: ${key} must be a positive integer, got ${c[key]}`);
    }
    if (c.dModel % c.heads !== 0 || (c.dModel / c.heads) % 2 !== 0 || c.dModel % 2 !== 0) {
      throw new TypeError(`PerformerLM: dModel (${c.dModel}) must split into ${c.heads} heads of even width`);
    }
    this.config = c;
    const rng = new Rng(c.seed);
    const init = (shape: number[], scale: number) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = rng.normal() * scale;
      return tf.variable(tf.tensor(data, shape));
    };
    const zeros = (n: number) => tf.variable(tf.zeros([n]));
    const ones = (n: number) => tf.variable(tf.ones([n]));
    const D = c.dModel;
    const s = 1 / Math.sqrt(D);
    this.embed = init([c.vocabSize, D], 0.02 * Math.sqrt(D));
    this.blocks = Array.from({ length: c.layers }, () => ({
      ln1g: ones(D),
      ln1b: zeros(D),
      wq: init([D, D], s),
      bq: zeros(D),
      wk: init([D, D], s),
      bk: zeros(D),
      wv: init([D, D], s),
      bv: zeros(D),
      wo: init([D, D], s / Math.sqrt(2 * c.layers)),
      bo: zeros(D),
      ln2g: ones(D),
      ln2b: zeros(D),
      w1: init([D, c.ffn], s),
      b1: zeros(c.ffn),
      w2: init([c.ffn, D], 1 / Math.sqrt(c.ffn) / Math.sqrt(2 * c.layers)),
      b2: zeros(D),
    }));
    this.lnFg = ones(D);
    this.lnFb = zeros(D);
    this.headW = init([D, c.vocabSize], s);
    this.headB = zeros(c.vocabSize);
    const hd = D / c.heads;
    this.omegas = Array.from({ length: c.layers }, (_, l) =>
      c.feature === 'favor' || c.features !== hd ? randomProjection({ h: c.heads, m: c.features, d: hd, seed: c.seed * 1000 + l }) : undefined,
    );
  }

  /** Trainable variables by name (stable order). */
  namedVariables(): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [['embed', this.embed]];
    this.blocks.forEach((b, l) => {
      for (const [k, v] of Object.entries(b)) out.push([`blocks.${l}.${k}`, v as tf.Variable]);
    });
    if (this.config.preLN) out.push(['lnF.g', this.lnFg], ['lnF.b', this.lnFb]);
    out.push(['head.w', this.headW], ['head.b', this.headB]);
    return out;
  }

  emptyStates(batch: number): AttnState[] {
    return emptyStates(this, batch);
  }

  /** `tokens: [B, T]` int32 → logits and states (see {@link ForwardOptions}). */
  forward(tokens: tf.Tensor2D, o: ForwardOptions = {}): ForwardResult {
    const statesIn: AttnState[] = [];
    const statesOut: AttnState[] = [];
    const logits = this.run(tokens, o.offset ?? 0, (l, q, k, v) => attendLayer(this, l, q, k, v, o, statesIn, statesOut));
    return { logits, statesIn, statesOut };
  }

  /**
   * The forward on the TF.js `webgpu` backend with WebGPU kernels on TF.js's device
   * (`performerAttentionWebGPU`): states are GPU tensors `[B·heads, gpuStateWords(features,
   * headWidth)]` (undefined: empty), differentiable both ways, and nothing is read back.
   */
  forwardWebGPU(
    tokens: tf.Tensor2D,
    o: { kernels: WebGPUKernels; offset?: number; states?: Array<tf.Tensor2D | undefined> },
  ): { logits: tf.Tensor3D; statesOut: tf.Tensor2D[] } {
    const statesOut: tf.Tensor2D[] = [];
    const { dModel: D, feature, features, chunk } = this.config;
    const logits = this.run(tokens, o.offset ?? 0, (l, q, k, v) => {
      const [B, , T] = q.shape;
      const r = performerAttentionWebGPU(q, k, v, {
        kernels: o.kernels,
        feature,
        omega: this.omegas[l],
        m: features,
        causal: true,
        chunk,
        state: o.states?.[l],
      });
      statesOut.push(r.state!);
      return tf.reshape(tf.transpose(r.out, [0, 2, 1, 3]), [B, T, D]) as tf.Tensor3D;
    });
    return { logits, statesOut };
  }

  /** Embedding, blocks (attention by `attend(layer, q, k, v)` → `[B, T, width]`), head. */
  private run(tokens: tf.Tensor2D, offset: number, attend: (l: number, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor3D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    const { dModel: D, heads: H, preLN } = this.config;
    const hd = D / H;
    let x: tf.Tensor = tf.add(embed(this.embed as unknown as tf.Tensor2D, tokens), positions(offset, T, D));
    const split = (y: tf.Tensor) => tf.transpose(tf.reshape(y, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    this.blocks.forEach((blk, l) => {
      x = transformerBlock(x, {
        attention: (a) => dense(attend(l, split(dense(a, blk.wq, blk.bq)), split(dense(a, blk.wk, blk.bk)), split(dense(a, blk.wv, blk.bv))), blk.wo, blk.bo),
        feedForward: (f) => dense(gelu(dense(f, blk.w1, blk.b1)), blk.w2, blk.b2),
        norm1: (y) => layerNorm(y, blk.ln1g, blk.ln1b),
        norm2: (y) => layerNorm(y, blk.ln2g, blk.ln2b),
        placement: preLN ? 'pre' : 'post',
      });
    });
    if (preLN) x = layerNorm(x, this.lnFg, this.lnFb);
    return dense(x, this.headW, this.headB) as tf.Tensor3D;
  }

  /**
   * Decodes: the prompt is run in chunks of `sliceLength`, then one token at a time with the
   * carried states, so each new token costs the same whatever the context length.
   * Sampling: temperature (0 = greedy) and top-k, reproducible from `seed`.
   */
  generate(prompt: number[], o: GenerateOptions): number[] {
    let states: AttnState[] = this.emptyStates(1);
    return decode(prompt, o, (ids, pos) =>
      tf.tidy(() => {
        const f = this.forward(tf.tensor2d(ids, [1, ids.length], 'int32'), { offset: pos, states });
        states = f.statesOut;
        return Float32Array.from(f.logits.slice([0, ids.length - 1, 0], [1, 1, -1]).dataSync());
      }),
    );
  }

  /**
   * `generate` on the TF.js `webgpu` backend with WebGPU kernels: the states stay on the GPU and
   * only each step's last logits are read back (asynchronously); the same tokens as `generate`.
   */
  async generateWebGPU(prompt: number[], o: GenerateOptions & { kernels: WebGPUKernels }): Promise<number[]> {
    let states: Array<tf.Tensor2D | undefined> = new Array(this.config.layers).fill(undefined);
    try {
      return await decode(prompt, o, async (ids, pos) => {
        const before = states;
        const { last, next } = tf.tidy(() => {
          const f = this.forwardWebGPU(tf.tensor2d(ids, [1, ids.length], 'int32'), { kernels: o.kernels, offset: pos, states: before });
          return { last: f.logits.slice([0, ids.length - 1, 0], [1, 1, -1]), next: f.statesOut };
        });
        states = next;
        tf.dispose(before.filter((x): x is tf.Tensor2D => !!x));
        try {
          return Float32Array.from(await last.data());
        } finally {
          last.dispose();
        }
      });
    } finally {
      tf.dispose(states.filter((x): x is tf.Tensor2D => !!x));
    }
  }

  dispose(): void {
    for (const [, v] of this.namedVariables()) v.dispose();
    if (!this.config.preLN) [this.lnFg, this.lnFb].forEach((v) => v.dispose());
  }
}

export interface GenerateOptions {
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  seed?: number;
  /** Prompt tokens per forward call (default 256). */
  sliceLength?: number;
  onToken?: (t: number) => void;
}

/**
 * The decoding loop of `generate`: `step(ids, position)` runs tokens from `position` and returns
 * the last token's logits (synchronously, or as a Promise for the GPU).
 */
function decode(prompt: number[], o: GenerateOptions, step: (ids: number[], pos: number) => Float32Array): number[];
function decode(prompt: number[], o: GenerateOptions, step: (ids: number[], pos: number) => Promise<Float32Array>): Promise<number[]>;
function decode(
  prompt: number[],
  o: GenerateOptions,
  step: (ids: number[], pos: number) => Float32Array | Promise<Float32Array>,
): number[] | Promise<number[]> {
  if (prompt.length === 0) throw new TypeError('generate: prompt must hold at least one token');
  const rng = new Rng(o.seed ?? 0);
  const slice = o.sliceLength ?? 256;
  const chunks: number[][] = [];
  for (let i = 0; i < prompt.length; i += slice) chunks.push(prompt.slice(i, i + slice));
  const out: number[] = [];
  // One generator drives both: each `yield` hands back a step's logits.
  function* run(): Generator<[number[], number], number[], Float32Array> {
    let pos = 0;
    let last: Float32Array = new Float32Array(0);
    for (const ids of chunks) {
      last = yield [ids, pos];
      pos += ids.length;
    }
    for (let n = 0; n < o.maxNewTokens; n++) {
      const tok = sample(last, o.temperature ?? 1, o.topK ?? 0, rng);
      out.push(tok);
      o.onToken?.(tok);
      if (n + 1 < o.maxNewTokens) {
        last = yield [[tok], pos];
        pos += 1;
      }
    }
    return out;
  }
  const g = run();
  let r = g.next();
  if (r.done) return r.value;
  const first = step(...r.value);
  if (first instanceof Promise) {
    return (async () => {
      let logits = await first;
      for (;;) {
        r = g.next(logits);
        if (r.done) return r.value;
        logits = await step(...r.value);
      }
    })();
  }
  let logits = first;
  for (;;) {
    r = g.next(logits);
    if (r.done) return r.value;
    logits = step(...r.value) as Float32Array;
  }
}

/** An empty state per layer for a batch of `batch`. */
export function emptyStates(model: Pick<SequenceModel, 'config'>, batch: number): AttnState[] {
  const { heads, features, layers, dModel, feature } = model.config;
  return Array.from({ length: layers }, () => emptyState({ b: batch, h: heads, m: features, dv: dModel / heads }, feature));
}

/**
 * Layer `l`'s causal attention on `q, k, v: [B, H, T, hd]`: resolves the layer's starting state
 * (given, or computed from its own `k, v`), runs the op, records both states, and returns the
 * heads merged back to `[B, T, H·hd]`.
 */
export function attendLayer(
  model: SequenceModel,
  l: number,
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  o: ForwardOptions,
  statesIn: AttnState[],
  statesOut: AttnState[],
): tf.Tensor3D {
  const [B, H, T, hd] = q.shape;
  const source = o.states?.[l];
  const state = typeof source === 'function' ? source({ k: k.dataSync() as Float32Array, v: v.dataSync() as Float32Array }) : source;
  const r = performerAttention(q, k, v, {
    kernels: model.kernels,
    feature: model.config.feature,
    omega: model.omegas[l],
    m: model.config.features,
    causal: true,
    chunk: model.config.chunk,
    state,
    stateGrad: o.stateGrads?.[l],
  });
  statesIn.push(state ?? emptyStates(model, B)[l]);
  statesOut.push(r.state!);
  return tf.reshape(tf.transpose(r.out, [0, 2, 1, 3]), [B, T, H * hd]) as tf.Tensor3D;
}

/** Samples an index from `logits` with temperature and top-k (greedy at temperature 0). */
export function sample(logits: Float32Array, temperature: number, topK: number, rng: Rng): number {
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  if (temperature <= 0) return idx[0];
  const keep = topK > 0 ? idx.slice(0, topK) : idx;
  const mx = logits[keep[0]];
  const w = keep.map((i) => Math.exp((logits[i] - mx) / temperature));
  let u = rng.nextFloat() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < keep.length; j++) {
    u -= w[j];
    if (u <= 0) return keep[j];
  }
  return keep[keep.length - 1];
}

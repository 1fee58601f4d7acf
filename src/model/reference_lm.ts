/**
 * The SLiM paper's reference architecture (`SLiMPerformer` in google-research's
 * `performer/models/slim_performer/pytorch`), reproduced exactly on our kernels, with PyTorch
 * `state_dict` names so weights move between the two:
 *
 * - input: `Embedding(vocab, hidden/2)` concatenated with sinusoidal positions of width hidden/2
 *   (all sines, then all cosines; absolute positions, so a slice starting at s uses s, s+1, …);
 * - gptln (post-LN) layer: x ← x + LN1(Attn(x)); x ← x + LN2(V(gelu(U x)));
 *   otherwise (pre-LN): x ← x + Attn(LN1(x)); x ← x + V(gelu(U LN2(x)));
 * - attention: q, k, v = Linear(hidden, hidden) with bias, heads `[B, T, H, hd]`, no output
 *   projection; features relu / elu+1 / sqr on q, k themselves, or favor+ with the layer's fixed
 *   `rfs: [H, hd, hd]` (our omega is its per-head transpose);
 * - head: Linear(hidden, vocab); loss Σ(CE·mask) / (Σmask + 1e-8).
 *
 * Our kernels add a FAVOR+ stabiliser the reference lacks; it cancels in the ratio (only the 1e-16
 * guard sees it), and a zero denominator passes no gradient (see the kernels' README).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../features/index.ts';
import { dense } from '../tfjs/ops/dense.ts';
import { embed } from '../tfjs/ops/embedding.ts';
import type { AttnState, FeatureMap } from '../kernels/types.ts';
import type { SyncKernels } from '../kernels/interface.ts';
import { gelu } from '../tfjs/ops/activation.ts';
import { transformerBlock } from '../tfjs/ops/block.ts';
import { layerNorm } from '../tfjs/ops/norm.ts';
import { attendLayer, emptyStates, positions, type ForwardOptions, type ForwardResult } from './performer_lm.ts';
import type { SequenceModel } from './sequence_model.ts';

export interface ReferenceConfig {
  vocab: number;
  hidden: number;
  layers: number;
  ffn: number;
  heads: number;
  /** The reference's names: 'relu', 'elu+1', 'sqr', 'favor+' (ours and 'elu' also accepted). */
  feature: string;
  gptln: boolean;
}

const FEATURES: Record<string, FeatureMap> = { relu: 'relu', 'elu+1': 'elu1', elu: 'elu1', elu1: 'elu1', sqr: 'sqr', 'favor+': 'favor', favor: 'favor' };

/** PyTorch parameter names of a layer, in `state_dict` order. */
const LAYER_PARAMS = [
  'U_map.bias',
  'U_map.weight',
  'V_map.bias',
  'V_map.weight',
  'attention.k_map.bias',
  'attention.k_map.weight',
  'attention.q_map.bias',
  'attention.q_map.weight',
  'attention.v_map.bias',
  'attention.v_map.weight',
  'layernorm1.bias',
  'layernorm1.weight',
  'layernorm2.bias',
  'layernorm2.weight',
];

export class ReferenceLM implements SequenceModel {
  readonly config: SequenceModel['config'] & { gptln: boolean; ffn: number };
  readonly reference: ReferenceConfig;
  private readonly vars = new Map<string, tf.Variable>();
  readonly omegas: Array<Float32Array | undefined>;

  /**
   * `rfs`: per layer `[H, hd, hd]` random features (favor+ only), as the reference stores them.
   * Weights start at zero: load them with `setWeights` or `importSafetensors`, or draw them with `initWeights`.
   */
  constructor(
    readonly kernels: SyncKernels,
    reference: ReferenceConfig,
    rfs?: Array<ArrayLike<number>>,
  ) {
    const feature = FEATURES[reference.feature];
    if (!feature) throw new TypeError(`ReferenceLM: feature must be one of ${Object.keys(FEATURES).join(', ')}, got ${reference.feature}`);
    const { vocab, hidden, layers, ffn, heads } = reference;
    for (const [k, v] of Object.entries({ vocab, hidden, layers, ffn, heads })) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`ReferenceLM: ${k} must be a positive integer, got ${v}`);
    }
    if (hidden % heads !== 0 || hidden % 4 !== 0) throw new TypeError(`ReferenceLM: hidden (${hidden}) must be a multiple of 4 and of heads (${heads})`);
    const hd = hidden / heads;
    this.reference = reference;
    this.config = { vocabSize: vocab, dModel: hidden, heads, layers, features: hd, feature, chunk: 64, gptln: reference.gptln, ffn };
    if (feature === 'favor') {
      if (!rfs || rfs.length !== layers) throw new TypeError(`ReferenceLM: favor+ needs rfs for each of the ${layers} layers`);
      this.omegas = rfs.map((r, l) => {
        if (r.length !== heads * hd * hd) throw new TypeError(`ReferenceLM: rfs.${l} must be [${heads}, ${hd}, ${hd}], got ${r.length} values`);
        const om = new Float32Array(heads * hd * hd);
        for (let h = 0; h < heads; h++) for (let i = 0; i < hd; i++) for (let r2 = 0; r2 < hd; r2++) om[(h * hd + r2) * hd + i] = r[(h * hd + i) * hd + r2];
        return om;
      });
    } else {
      this.omegas = new Array(layers).fill(undefined);
    }
    for (const [name, shape] of this.shapes()) this.vars.set(name, tf.variable(tf.zeros(shape)));
  }

  /** Every parameter's PyTorch name and shape (`nn.Linear` weights are `[out, in]`). */
  shapes(): Array<[string, number[]]> {
    const { vocab, hidden, layers, ffn } = this.reference;
    const out: Array<[string, number[]]> = [['input_map.weight', [vocab, hidden / 2]]];
    for (let l = 0; l < layers; l++) {
      for (const p of LAYER_PARAMS) {
        const shape = p.startsWith('U_map')
          ? p.endsWith('weight')
            ? [ffn, hidden]
            : [ffn]
          : p.startsWith('V_map')
            ? p.endsWith('weight')
              ? [hidden, ffn]
              : [hidden]
            : p.endsWith('map.weight')
              ? [hidden, hidden]
              : [hidden];
        out.push([`layers.${l}.${p}`, shape]);
      }
    }
    out.push(['output_logit_map.bias', [vocab]], ['output_logit_map.weight', [vocab, hidden]]);
    return out;
  }

  namedVariables(): Array<[string, tf.Variable]> {
    return [...this.vars];
  }

  /** Assigns weights by PyTorch name (float32 or float64 values); every parameter is required. */
  setWeights(weights: Map<string, { shape: number[]; data: ArrayLike<number> }>): void {
    const missing = this.shapes()
      .filter(([n]) => !weights.has(n))
      .map(([n]) => n);
    const extra = [...weights.keys()].filter((n) => !this.vars.has(n));
    if (missing.length || extra.length) throw new Error(`ReferenceLM.setWeights: missing [${missing.join(', ')}], unexpected [${extra.join(', ')}]`);
    for (const [name, shape] of this.shapes()) {
      const w = weights.get(name)!;
      if (w.shape.join() !== shape.join()) throw new Error(`ReferenceLM.setWeights: ${name} must be [${shape}], got [${w.shape}]`);
      this.vars.get(name)!.assign(tf.tensor(Float32Array.from(w.data), shape));
    }
  }

  /**
   * Fresh weights as PyTorch initialises the reference model (seeded): `nn.Linear` weights and
   * biases uniform in ±1/√fan_in, the embedding standard normal, LayerNorm gains 1 and offsets 0.
   */
  initWeights(seed = 1): void {
    const rng = new Rng(seed);
    for (const [name, shape] of this.shapes()) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      const fanIn = name.endsWith('.bias') ? this.shapes().find(([w]) => w === name.replace(/bias$/, 'weight'))?.[1][1] : shape[1];
      if (name.includes('layernorm')) data.fill(name.endsWith('weight') ? 1 : 0);
      else if (name === 'input_map.weight') for (let i = 0; i < n; i++) data[i] = rng.normal();
      else for (let i = 0; i < n; i++) data[i] = (2 * rng.nextFloat() - 1) / Math.sqrt(fanIn ?? 1);
      this.vars.get(name)!.assign(tf.tensor(data, shape));
    }
  }

  emptyStates(batch: number): AttnState[] {
    return emptyStates(this, batch);
  }

  forward(tokens: tf.Tensor2D, o: ForwardOptions = {}): ForwardResult {
    const [B, T] = tokens.shape;
    const { dModel: D, heads: H, gptln } = this.config;
    const hd = D / H;
    const p = (n: string) => this.vars.get(n)!;
    const linear = (x: tf.Tensor, name: string) => dense(x, p(`${name}.weight`), p(`${name}.bias`), { transposeW: true });
    const pos = tf.tile(tf.expandDims(positions(o.offset ?? 0, T, D / 2), 0), [B, 1, 1]);
    let x: tf.Tensor = tf.concat([embed(p('input_map.weight') as unknown as tf.Tensor2D, tokens), pos], 2);
    const statesIn: AttnState[] = [];
    const statesOut: AttnState[] = [];
    const split = (y: tf.Tensor) => tf.transpose(tf.reshape(y, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    for (let l = 0; l < this.config.layers; l++) {
      const pre = `layers.${l}`;
      const ln = (y: tf.Tensor, i: number) => layerNorm(y, p(`${pre}.layernorm${i}.weight`), p(`${pre}.layernorm${i}.bias`));
      x = transformerBlock(x, {
        // No output projection in the reference: the heads' outputs are the branch.
        attention: (a) => {
          const [q, k, v] = ['q', 'k', 'v'].map((n) => split(linear(a, `${pre}.attention.${n}_map`)));
          return attendLayer(this, l, q, k, v, o, statesIn, statesOut);
        },
        feedForward: (f) => linear(gelu(linear(f, `${pre}.U_map`)), `${pre}.V_map`),
        norm1: (y) => ln(y, 1),
        norm2: (y) => ln(y, 2),
        placement: gptln ? 'branch' : 'pre',
      });
    }
    const logits = linear(x, 'output_logit_map') as tf.Tensor3D;
    return { logits, statesIn, statesOut };
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
  }
}

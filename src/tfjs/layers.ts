/**
 * TF.js layers on the fused attention op: multi-head Performer self-attention and a Performer
 * block (attention + GELU feed-forward + layer norms, pre-LN or post-LN). Both serialise with
 * `getConfig` and are registered with `tf.serialization.registerClass`, so models that use them
 * save and load with `tf.io` / `tf.loadLayersModel`.
 *
 * Layers are built from configs, so they cannot take a kernel instance in their constructor:
 * call `await initTfjs()` (or `setKernels(await init())`) once before running them.
 *
 * Random features (favor, or any map with `features` ≠ the head width) are a non-trainable
 * weight `omega: [heads, features, headWidth]`, saved with the model. They are drawn from
 * `seed` by {@link FeatureRedraw}: draw `⌊step / redrawEvery⌋` at step `step` (never redrawn when
 * `redrawEvery` is 0, the default). A step is counted when `layer.redrawStep()` is called; the
 * layers do not count steps themselves (use {@link redrawCallback} with `model.fit`). The step
 * count is part of the config, so a loaded model continues the same schedule.
 */
import * as tf from '@tensorflow/tfjs';
import { FeatureRedraw } from '../features/index.ts';
import type { FeatureMap } from '../kernels/types.ts';
import type { SyncKernels } from '../kernels/interface.ts';
import { init, type InitOptions } from '../wasm/kernels.ts';
import type { WebGPUKernels } from '../webgpu/kernels.ts';
import { performerAttention } from './op.ts';
import { gelu } from './ops/activation.ts';
import { dense } from './ops/dense.ts';
import { transformerBlock } from './ops/block.ts';
import { layerNorm } from './ops/norm.ts';
import { performerAttentionWebGPU } from './webgpu_op.ts';
import { ArgError } from '../kernels/validate.ts';
import { checkTensor } from './ops/check.ts';

let current: SyncKernels | WebGPUKernels | undefined;

/**
 * Sets the kernel instance every Performer layer uses (`undefined` clears it): wasm kernels
 * (`init()`, any TF.js backend) or WebGPU kernels on TF.js's device when the TF.js backend is
 * `webgpu` (`initWebGPU({ device: tfjsWebGPUDevice() })`: the layers then run on TF.js's GPU
 * buffers, see webgpu_op.ts).
 */
export function setKernels(kernels: SyncKernels | WebGPUKernels | undefined): void {
  current = kernels;
}

/** The kernel instance set by {@link setKernels} or {@link initTfjs}; throws when there is none. */
export function getKernels(): SyncKernels | WebGPUKernels {
  if (!current) {
    throw new Error('slim-performer/tfjs: no kernel instance; call `await initTfjs()` (or `setKernels(await init())`) before running Performer layers');
  }
  return current;
}

/** Loads a kernel instance and makes it the one the layers use (once; later calls return it). */
export async function initTfjs(options?: InitOptions): Promise<SyncKernels | WebGPUKernels> {
  if (!current) current = await init(options);
  return current;
}

type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;
type Kwargs = Parameters<tf.layers.Layer['call']>[1];

const FEATURES: readonly FeatureMap[] = ['favor', 'relu', 'elu1', 'sqr'];

export interface PerformerAttentionArgs extends LayerArgs {
  /** Number of heads; must divide the model width into even head widths. */
  heads: number;
  /** Random features per head (default: the head width). */
  features?: number;
  /** Feature map (default `'favor'`). */
  feature?: FeatureMap;
  /** Causal (decoder) attention; default false (bidirectional). */
  causal?: boolean;
  /** Kernel chunk length (default 64). */
  chunk?: number;
  /** Seed of the initial weights and the random features (default 1). */
  seed?: number;
  /** Redraw the random features every this many steps (see {@link PerformerAttention.redrawStep}); 0 = never (default). */
  redrawEvery?: number;
  /** Redraw steps already taken (to resume a schedule; saved by `getConfig`). Default 0. */
  redrawStep?: number;
}

interface AttnSettings {
  heads: number;
  features: number | undefined;
  feature: FeatureMap;
  causal: boolean;
  chunk: number;
  seed: number;
  redrawEvery: number;
  redrawStep: number;
}

function settings(fn: string, a: PerformerAttentionArgs): AttnSettings {
  if (typeof a !== 'object' || a === null) throw new ArgError(`${fn}: expected a config object`);
  const s: AttnSettings = {
    heads: a.heads,
    features: a.features ?? undefined,
    feature: a.feature ?? 'favor',
    causal: a.causal ?? false,
    chunk: a.chunk ?? 64,
    seed: a.seed ?? 1,
    redrawEvery: a.redrawEvery ?? 0,
    redrawStep: a.redrawStep ?? 0,
  };
  const positive = (key: 'heads' | 'features' | 'chunk', v: number | undefined) => {
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw new ArgError(`${fn}: ${key} must be a positive integer, got ${v}`);
  };
  positive('heads', s.heads);
  if (s.features !== undefined) positive('features', s.features);
  positive('chunk', s.chunk);
  if (!FEATURES.includes(s.feature)) throw new ArgError(`${fn}: feature must be one of ${FEATURES.join(', ')}, got ${String(s.feature)}`);
  if (typeof s.causal !== 'boolean') throw new ArgError(`${fn}: causal must be a boolean, got ${String(s.causal)}`);
  if (!Number.isSafeInteger(s.seed)) throw new ArgError(`${fn}: seed must be an integer, got ${s.seed}`);
  for (const key of ['redrawEvery', 'redrawStep'] as const) {
    if (!Number.isSafeInteger(s[key]) || s[key] < 0) throw new ArgError(`${fn}: ${key} must be a non-negative integer, got ${s[key]}`);
  }
  return s;
}

function settingsConfig(s: AttnSettings): tf.serialization.ConfigDict {
  const c: tf.serialization.ConfigDict = {
    heads: s.heads,
    feature: s.feature,
    causal: s.causal,
    chunk: s.chunk,
    seed: s.seed,
    redrawEvery: s.redrawEvery,
    redrawStep: s.redrawStep,
  };
  if (s.features !== undefined) c.features = s.features;
  return c;
}

type Initializer = ReturnType<typeof tf.initializers.zeros>;
type AddWeight = (name: string, shape: number[], init: Initializer, trainable?: boolean) => tf.LayerVariable;

/** Model width of a `[batch, T, width]` input shape. */
function widthOf(fn: string, inputShape: tf.Shape | tf.Shape[]): number {
  const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  const width = shape[shape.length - 1];
  if (shape.length !== 3 || typeof width !== 'number') throw new ArgError(`${fn}: expects inputs [batch, T, width] with a known width, got [${shape}]`);
  return width;
}

function oneTensor(fn: string, inputs: tf.Tensor | tf.Tensor[], width?: number): tf.Tensor3D {
  if (Array.isArray(inputs) && inputs.length !== 1) throw new ArgError(`${fn}: expects one input, got ${inputs.length}`);
  const x = Array.isArray(inputs) ? inputs[0] : inputs;
  return checkTensor<tf.Tensor3D>(fn, 'inputs', x, { dtype: 'float32', shape: [null, null, width ?? null], desc: `[batch, T, ${width ?? 'width'}]` });
}

/** Multi-head attention weights, random features and their redraw schedule, shared by both layers. */
class AttentionCore {
  private wq!: tf.LayerVariable;
  private bq!: tf.LayerVariable;
  private wk!: tf.LayerVariable;
  private bk!: tf.LayerVariable;
  private wv!: tf.LayerVariable;
  private bv!: tf.LayerVariable;
  private wo!: tf.LayerVariable;
  private bo!: tf.LayerVariable;
  private omega: tf.LayerVariable | undefined;
  private redraw: FeatureRedraw | undefined;
  private width = 0;

  constructor(
    readonly s: AttnSettings,
    private readonly fn: string,
  ) {}

  build(width: number, add: AddWeight, prefix: string): void {
    const { heads, seed } = this.s;
    if (width % heads !== 0 || (width / heads) % 2 !== 0) throw new ArgError(`${this.fn}: width ${width} must split into ${heads} heads of even width`);
    const hd = width / heads;
    const m = this.s.features ?? hd;
    this.width = width;
    let n = 0;
    const kernel = () => tf.initializers.glorotUniform({ seed: seed * 100 + n++ });
    this.wq = add(`${prefix}wq`, [width, width], kernel());
    this.bq = add(`${prefix}bq`, [width], tf.initializers.zeros());
    this.wk = add(`${prefix}wk`, [width, width], kernel());
    this.bk = add(`${prefix}bk`, [width], tf.initializers.zeros());
    this.wv = add(`${prefix}wv`, [width, width], kernel());
    this.bv = add(`${prefix}bv`, [width], tf.initializers.zeros());
    this.wo = add(`${prefix}wo`, [width, width], kernel());
    this.bo = add(`${prefix}bo`, [width], tf.initializers.zeros());
    if (this.s.feature === 'favor' || m !== hd) {
      this.redraw = new FeatureRedraw({ h: heads, m, d: hd, seed, every: this.s.redrawEvery, step: this.s.redrawStep });
      this.omega = add(`${prefix}omega`, [heads, m, hd], tf.initializers.zeros(), false);
      this.writeOmega();
    }
  }

  private writeOmega(): void {
    const { heads } = this.s;
    const omega = this.redraw!.current();
    const t = tf.tensor3d(omega, [heads, omega.length / (heads * this.redraw!.d), this.redraw!.d]);
    this.omega!.write(t);
    t.dispose();
  }

  /** The model width this core was built for (undefined before `build`). */
  get built(): number | undefined {
    return this.width || undefined;
  }

  redrawStep(): boolean {
    this.s.redrawStep += 1;
    if (!this.redraw) return false;
    const changed = this.redraw.step();
    if (changed) this.writeOmega();
    return changed;
  }

  /** `[B, T, width]` → `[B, T, width]`. */
  apply(x: tf.Tensor3D): tf.Tensor3D {
    const [B, T, D] = x.shape;
    if (D !== this.width) throw new ArgError(`${this.fn}: input width ${D}, built for ${this.width}`);
    const H = this.s.heads;
    const hd = D / H;
    const proj = (w: tf.LayerVariable, b: tf.LayerVariable) =>
      tf.transpose(tf.reshape(dense(x, w.read(), b.read()), [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    const kernels = getKernels();
    const spec = { feature: this.s.feature, m: this.s.features ?? hd, causal: this.s.causal, chunk: this.s.chunk };
    const [q, k, v] = [proj(this.wq, this.bq), proj(this.wk, this.bk), proj(this.wv, this.bv)];
    const { out } =
      kernels.backend === 'webgpu'
        ? performerAttentionWebGPU(q, k, v, { ...spec, kernels, omega: this.omega?.read() as tf.Tensor3D | undefined, returnState: false })
        : performerAttention(q, k, v, { ...spec, kernels, omega: this.omega ? (this.omega.read().dataSync() as Float32Array) : undefined });
    return dense(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, T, D]), this.wo.read(), this.bo.read()) as tf.Tensor3D;
  }
}

/**
 * Multi-head Performer self-attention: `[batch, T, width]` → `[batch, T, width]`, with q/k/v and
 * output projections (weights `wq, bq, wk, bk, wv, bv, wo, bo`) and, for favor or
 * `features ≠ headWidth`, the non-trainable random features `omega`.
 */
export class PerformerAttention extends tf.layers.Layer {
  static readonly className = 'PerformerAttention';
  private readonly core: AttentionCore;

  constructor(args: PerformerAttentionArgs) {
    super(args);
    this.core = new AttentionCore(settings('PerformerAttention', args), 'PerformerAttention');
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    this.core.build(
      widthOf('PerformerAttention', inputShape),
      (name, shape, init, trainable = true) => this.addWeight(name, shape, 'float32', init, undefined, trainable),
      '',
    );
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => this.core.apply(oneTensor('PerformerAttention', inputs, this.core.built)));
  }

  /** Counts one step of the redraw schedule; returns true when it drew new random features. */
  redrawStep(): boolean {
    return this.core.redrawStep();
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...settingsConfig(this.core.s), ...super.getConfig() };
  }
}

export interface PerformerBlockArgs extends PerformerAttentionArgs {
  /** Feed-forward width (default 4 × the model width). */
  ffn?: number;
  /** Pre-LN (default) or post-LN. */
  preLN?: boolean;
  /**
   * The same flag as it comes back from a saved model: TF.js writes config keys in snake_case
   * (`preLN` → `pre_ln`) and reads them back in camelCase (`preLn`), so configs use this spelling.
   */
  preLn?: boolean;
  /** Layer-norm epsilon (default 1e-5). */
  epsilon?: number;
}

/**
 * A Performer block on `[batch, T, width]`:
 * pre-LN `x + Attn(LN₁(x))`, then `+ FFN(LN₂(·))`; post-LN `LN₁(x + Attn(x))`, then `LN₂(· + FFN(·))`,
 * with `FFN(y) = GELU(y W₁ + b₁) W₂ + b₂` (exact, erf GELU). Same math as a `PerformerLM` block.
 */
export class PerformerBlock extends tf.layers.Layer {
  static readonly className = 'PerformerBlock';
  private readonly core: AttentionCore;
  private readonly ffn: number | undefined;
  private readonly preLN: boolean;
  private readonly epsilon: number;
  private ln1g!: tf.LayerVariable;
  private ln1b!: tf.LayerVariable;
  private ln2g!: tf.LayerVariable;
  private ln2b!: tf.LayerVariable;
  private w1!: tf.LayerVariable;
  private b1!: tf.LayerVariable;
  private w2!: tf.LayerVariable;
  private b2!: tf.LayerVariable;

  constructor(args: PerformerBlockArgs) {
    super(args);
    const fn = 'PerformerBlock';
    this.core = new AttentionCore(settings(fn, args), fn);
    this.ffn = args.ffn ?? undefined;
    this.preLN = args.preLN ?? args.preLn ?? true;
    this.epsilon = args.epsilon ?? 1e-5;
    if (this.ffn !== undefined && (!Number.isSafeInteger(this.ffn) || this.ffn <= 0))
      throw new ArgError(`${fn}: ffn must be a positive integer, got ${this.ffn}`);
    if (typeof this.preLN !== 'boolean') throw new ArgError(`${fn}: preLN must be a boolean, got ${String(this.preLN)}`);
    if (!(this.epsilon > 0)) throw new ArgError(`${fn}: epsilon must be positive, got ${this.epsilon}`);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const width = widthOf('PerformerBlock', inputShape);
    const ffn = this.ffn ?? 4 * width;
    const add: AddWeight = (name, shape, init, trainable = true) => this.addWeight(name, shape, 'float32', init, undefined, trainable);
    const seed = this.core.s.seed;
    this.ln1g = add('ln1g', [width], tf.initializers.ones());
    this.ln1b = add('ln1b', [width], tf.initializers.zeros());
    this.core.build(width, add, 'attn_');
    this.ln2g = add('ln2g', [width], tf.initializers.ones());
    this.ln2b = add('ln2b', [width], tf.initializers.zeros());
    this.w1 = add('w1', [width, ffn], tf.initializers.glorotUniform({ seed: seed * 100 + 50 }));
    this.b1 = add('b1', [ffn], tf.initializers.zeros());
    this.w2 = add('w2', [ffn, width], tf.initializers.glorotUniform({ seed: seed * 100 + 51 }));
    this.b2 = add('b2', [width], tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x: tf.Tensor = oneTensor('PerformerBlock', inputs, this.ln1g.shape[0] ?? undefined);
      const ln = (y: tf.Tensor, g: tf.LayerVariable, b: tf.LayerVariable) => layerNorm(y, g.read(), b.read(), this.epsilon);
      return transformerBlock(x, {
        attention: (a) => this.core.apply(a as tf.Tensor3D),
        feedForward: (y) => dense(gelu(dense(y, this.w1.read(), this.b1.read())), this.w2.read(), this.b2.read()),
        norm1: (y) => ln(y, this.ln1g, this.ln1b),
        norm2: (y) => ln(y, this.ln2g, this.ln2b),
        placement: this.preLN ? 'pre' : 'post',
      });
    });
  }

  /** Counts one step of the attention's redraw schedule; true when it drew new random features. */
  redrawStep(): boolean {
    return this.core.redrawStep();
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c: tf.serialization.ConfigDict = { ...settingsConfig(this.core.s), preLn: this.preLN, epsilon: this.epsilon };
    if (this.ffn !== undefined) c.ffn = this.ffn;
    return { ...c, ...super.getConfig() };
  }
}

tf.serialization.registerClass(PerformerAttention);
tf.serialization.registerClass(PerformerBlock);

/** Every Performer layer in `model` (top level and nested models). */
export function performerLayers(model: tf.LayersModel): Array<PerformerAttention | PerformerBlock> {
  const out: Array<PerformerAttention | PerformerBlock> = [];
  const visit = (layers: tf.layers.Layer[]) => {
    for (const l of layers) {
      if (l instanceof PerformerAttention || l instanceof PerformerBlock) out.push(l);
      else if (l instanceof tf.LayersModel) visit(l.layers);
    }
  };
  visit(model.layers);
  return out;
}

/**
 * A `model.fit` callback that counts one redraw step per training batch on every Performer
 * layer of `model`: `model.fit(x, y, { callbacks: [redrawCallback(model)] })`.
 */
export function redrawCallback(model: tf.LayersModel): tf.CustomCallback {
  return new tf.CustomCallback({
    onBatchEnd: async () => {
      for (const l of performerLayers(model)) l.redrawStep();
    },
  });
}

/**
 * SLiM training: gradients of a whole sequence with memory set by the slice length.
 *
 * Pass 1 runs every slice forward without gradients, carrying each layer's attention state, and
 * keeps only each slice's starting offsets (a few floats). Pass 2 walks the slices in reverse:
 * each layer's starting state is recovered from its end state (`causalUnroll`, exact), the slice
 * is recomputed under the gradient tape with the surrogate term ⟨state_end, G⟩ (passed to the
 * attention op as the upstream state gradient), parameter gradients accumulate, and the op's
 * input-state gradient becomes the `G` of the previous slice. The loss is normalised by the
 * whole sequence's token count, so the result equals full backpropagation.
 */
import * as tf from '@tensorflow/tfjs';
import type { SequenceModel } from '../model/sequence_model.ts';
import type { AttnState, StateGrad } from '../kernels/types.ts';
import { ArgError } from '../kernels/validate.ts';

/**
 * A slice that raised a layer's FAVOR+ offset by more than this (nats) keeps that layer's
 * starting state: unrolling divides by `exp(−raise)`, which would magnify any last-bit
 * difference between the keys of pass 1 and pass 2 (TF.js backends need not be bit-exact).
 */
const KEEP_ABOVE_RAISE = 2;

export interface Batch {
  /** `[B, T + 1]` token ids: inputs are `[:, :-1]`, targets `[:, 1:]`. */
  tokens: Int32Array;
  batch: number;
  /** `[B, T + 1]`, 0 = padding (targets use `[:, 1:]`); default all 1. */
  mask?: Uint8Array;
}

export interface Gradients {
  /** Mean cross-entropy over the unmasked targets. */
  loss: number;
  /** Unmasked target count. */
  tokens: number;
  grads: Map<string, tf.Tensor>;
}

export interface Split {
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  count: number;
}

const what = (x: unknown): string =>
  x === null
    ? 'null'
    : ArrayBuffer.isView(x)
      ? `${x.constructor.name}(${(x as Uint8Array).length})`
      : typeof x === 'object'
        ? ((x as object).constructor?.name ?? 'object')
        : `${typeof x} ${String(x)}`;

/** A batch as inputs, targets and loss weights `[B·T]` (validated: every refusal is an ArgError naming the field). */
export function split(model: SequenceModel, b: Batch): Split {
  if (typeof b !== 'object' || b === null) throw new ArgError(`batch must be an object { tokens: Int32Array [batch, T + 1], batch, mask? }, got ${what(b)}`);
  const B = b.batch;
  if (!Number.isSafeInteger(B) || B <= 0) throw new ArgError(`batch.batch must be a positive integer (the number of sequences), got ${what(B)}`);
  if (!(b.tokens instanceof Int32Array) || b.tokens.length % B !== 0 || b.tokens.length / B < 2) {
    throw new ArgError(`batch.tokens must be an Int32Array of shape [batch, T + 1] = [${B}, T + 1] with T ≥ 1, got ${what(b.tokens)}`);
  }
  const T = b.tokens.length / B - 1;
  if (b.mask !== undefined && (!(b.mask instanceof Uint8Array) || b.mask.length !== b.tokens.length)) {
    throw new ArgError(`batch.mask must be a Uint8Array of shape [batch, T + 1] = [${B}, ${T + 1}] (${B * (T + 1)} elements), got ${what(b.mask)}`);
  }
  if (b.mask) {
    const i = b.mask.findIndex((x) => x > 1);
    if (i >= 0) throw new ArgError(`batch.mask[${Math.floor(i / (T + 1))}, ${i % (T + 1)}] is ${b.mask[i]}; the mask holds 1 (a token) or 0 (padding)`);
  }
  const V = model.config.vocabSize;
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  let count = 0;
  for (let i = 0; i < B; i++) {
    for (let t = 0; t < T; t++) {
      const a = b.tokens[i * (T + 1) + t];
      const y = b.tokens[i * (T + 1) + t + 1];
      if (!(a >= 0 && a < V && y >= 0 && y < V)) {
        const [at, x] = a < 0 || a >= V ? [t, a] : [t + 1, y];
        throw new ArgError(`batch.tokens must lie in [0, ${V}), found ${x} at [${i}, ${at}] (token ids below the model's vocabSize)`);
      }
      inputs[i * T + t] = a;
      targets[i * T + t] = y;
      weights[i * T + t] = b.mask ? b.mask[i * (T + 1) + t + 1] : 1;
      count += weights[i * T + t];
    }
  }
  return { B, T, inputs, targets, weights, count };
}

/** Columns `[t0, t1)` of a `[B, T]` array. */
export function columns(x: Int32Array | Float32Array, B: number, T: number, t0: number, t1: number) {
  const out = new (x.constructor as Int32ArrayConstructor | Float32ArrayConstructor)(B * (t1 - t0));
  for (let i = 0; i < B; i++) out.set(x.subarray(i * T + t0, i * T + t1), i * (t1 - t0));
  return out;
}

/** Σ cross-entropy · weight / normaliser over a slice. */
export function sliceLoss(logits: tf.Tensor3D, targets: Int32Array, weights: Float32Array, normaliser: number): tf.Scalar {
  const V = logits.shape[2];
  const flat = tf.reshape(logits, [-1, V]);
  const logp = tf.logSoftmax(flat);
  const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(targets, 'int32'), V)), 1);
  return tf.div(tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(weights)))), Math.max(normaliser, 1)) as tf.Scalar;
}

/** `acc[name] += g` (kept tensors). */
export function addInto(acc: Map<string, tf.Tensor>, name: string, g: tf.Tensor) {
  const prev = acc.get(name);
  acc.set(name, prev ? tf.keep(tf.add(prev, g)) : tf.keep(g.clone()));
  prev?.dispose();
}

/**
 * After a backward pass that threw (a kernel refusing a NaN upstream gradient, say), TF.js 4.22's
 * `engine.gradients` leaves the tensors its tape saved for the backward kept, and the tape set:
 * they would leak on every refused step. Frees them, unless an outer gradient is being taken.
 */
export function releaseFailedTape(): void {
  const state = (tf.engine() as unknown as { state?: { activeTape: Array<{ saved?: tf.Tensor[] }> | null; gradientDepth: number } }).state;
  if (!state || state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
  state.activeTape = null;
}

/** Gradients of the whole sequence by ordinary backpropagation (memory grows with T). */
export function fullGradients(model: SequenceModel, batch: Batch): Gradients {
  const s = split(model, batch);
  const vars = model.namedVariables();
  const grads = new Map<string, tf.Tensor>();
  const loss = guardTape(() =>
    tf.tidy(() => {
      const { value, grads: g } = tf.variableGrads(
        () => {
          const { logits } = model.forward(tf.tensor2d(s.inputs, [s.B, s.T], 'int32'));
          return sliceLoss(logits, s.targets, s.weights, s.count);
        },
        vars.map(([, v]) => v),
      );
      for (const [name, v] of vars) grads.set(name, tf.keep(g[v.name]));
      return value.dataSync()[0];
    }),
  );
  return { loss, tokens: s.count, grads };
}

/** Runs `f`; if it throws, frees what a failed backward left on the tape. */
function guardTape<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    releaseFailedTape();
    throw e;
  }
}

/** Called after every slice of a SLiM step: pass 1 (forward) or 2 (backward), slices done of `total`. */
export type SliceProgress = (pass: 1 | 2, done: number, total: number) => void;

/** Gradients of the whole sequence, slice by slice (memory set by `sliceLength`). */
export function slimGradients(model: SequenceModel, batch: Batch, sliceLength: number, onSlice?: SliceProgress): Gradients {
  if (!Number.isSafeInteger(sliceLength) || sliceLength <= 0)
    throw new ArgError(`sliceLength must be a positive integer (tokens per slice), got ${what(sliceLength)}`);
  const s = split(model, batch);
  const vars = model.namedVariables();
  const L = model.config.layers;
  const starts: number[] = [];
  for (let t0 = 0; t0 < s.T; t0 += sliceLength) starts.push(t0);

  // Pass 1: forward without gradients; keep each slice's starting offsets, and the starting
  // state itself only where the offset jumped too far to be recovered by unrolling.
  let states: AttnState[] = model.emptyStates(s.B);
  const offsetsIn: Float64Array[][] = [];
  const kept: Array<Array<AttnState | undefined>> = [];
  for (const t0 of starts) {
    const t1 = Math.min(t0 + sliceLength, s.T);
    offsetsIn.push(states.map((st) => Float64Array.from(st.offset)));
    const before = states;
    tf.tidy(() => {
      states = model.forward(tf.tensor2d(columns(s.inputs, s.B, s.T, t0, t1), [s.B, t1 - t0], 'int32'), { offset: t0, states: before }).statesOut;
    });
    kept.push(before.map((st, l) => (states[l].offset.some((o, i) => o - st.offset[i] > KEEP_ABOVE_RAISE && Number.isFinite(st.offset[i])) ? st : undefined)));
    onSlice?.(1, kept.length, starts.length);
  }

  // Pass 2: reverse walk.
  const grads = new Map<string, tf.Tensor>();
  let G: Array<StateGrad | undefined> = new Array(L).fill(undefined);
  let lossSum = 0;
  try {
    for (let si = starts.length - 1; si >= 0; si--) {
      const t0 = starts[si];
      const t1 = Math.min(t0 + sliceLength, s.T);
      const ends = states;
      const nextG: Array<StateGrad | undefined> = new Array(L).fill(undefined);
      let resolved: AttnState[] = [];
      tf.tidy(() => {
        const sources = ends.map((end, l) => {
          const keep = kept[si][l];
          if (keep) return keep;
          return ({ k, v }: { k: Float32Array; v: Float32Array }) =>
            model.kernels.causalUnroll({
              k,
              v,
              dims: {
                b: s.B,
                h: model.config.heads,
                t: t1 - t0,
                d: model.config.dModel / model.config.heads,
                m: model.config.features,
                dv: model.config.dModel / model.config.heads,
              },
              feature: model.config.feature,
              omega: model.omegas[l],
              chunk: model.config.chunk,
              stateOut: end,
              offsetIn: offsetsIn[si][l],
            });
        });
        const { value, grads: g } = tf.variableGrads(
          () => {
            const f = model.forward(tf.tensor2d(columns(s.inputs, s.B, s.T, t0, t1), [s.B, t1 - t0], 'int32'), {
              offset: t0,
              states: sources,
              stateGrads: G.map((up, l) => ({ upstream: up, onInput: (gIn: StateGrad) => (nextG[l] = gIn) })),
            });
            resolved = f.statesIn;
            return sliceLoss(f.logits, columns(s.targets, s.B, s.T, t0, t1) as Int32Array, columns(s.weights, s.B, s.T, t0, t1) as Float32Array, s.count);
          },
          vars.map(([, v]) => v),
        );
        for (const [name, v] of vars) addInto(grads, name, g[v.name]);
        lossSum += value.dataSync()[0];
      });
      states = resolved;
      G = nextG;
      onSlice?.(2, starts.length - si, starts.length);
    }
  } catch (e) {
    // A slice failed (say, a kernel refused non-finite activations): free what was accumulated.
    for (const g of grads.values()) g.dispose();
    releaseFailedTape();
    throw e;
  }
  return { loss: lossSum, tokens: s.count, grads };
}

export interface TrainerOptions {
  /** Tokens per slice: peak memory follows it, not the sequence length. */
  sliceLength: number;
  /** Any TF.js optimizer (default Adam, learning rate 1e-3). */
  optimizer?: tf.Optimizer;
  /** Clip the global gradient norm to this value (default: no clipping). */
  clipNorm?: number;
  /** `'slim'` (default) or `'full'` backpropagation, for comparison. */
  mode?: 'slim' | 'full';
  /** Progress of each SLiM step, slice by slice (for long sequences). */
  onSlice?: SliceProgress;
}

/** One optimisation step per call: gradients (SLiM or full), optional clipping, update. */
export class SlimTrainer {
  readonly optimizer: tf.Optimizer;

  constructor(
    readonly model: SequenceModel,
    readonly options: TrainerOptions,
  ) {
    if (typeof options !== 'object' || options === null)
      throw new ArgError(`SlimTrainer: options must be an object { sliceLength, optimizer?, clipNorm?, mode? }, got ${what(options)}`);
    const mode = options.mode ?? 'slim';
    if (mode !== 'slim' && mode !== 'full') throw new ArgError(`SlimTrainer: options.mode must be 'slim' or 'full', got ${what(options.mode)}`);
    if (mode === 'slim' && (!Number.isSafeInteger(options.sliceLength) || options.sliceLength <= 0)) {
      throw new ArgError(`SlimTrainer: options.sliceLength must be a positive integer (tokens per slice), got ${what(options.sliceLength)}`);
    }
    if (options.clipNorm !== undefined && !(typeof options.clipNorm === 'number' && Number.isFinite(options.clipNorm) && options.clipNorm > 0)) {
      throw new ArgError(`SlimTrainer: options.clipNorm must be a finite number > 0, got ${what(options.clipNorm)}`);
    }
    this.optimizer = options.optimizer ?? tf.train.adam(1e-3);
  }

  /**
   * One step. Refuses (throws, with the weights and the optimizer unchanged) a bad batch (an
   * ArgError naming the field), and a step whose loss or gradients are not finite: a model whose
   * weights went NaN, or activations that overflow float32 (lower the learning rate, or clip).
   */
  step(batch: Batch): { loss: number; tokens: number; gradNorm: number } {
    const weightsNotFinite = (bad: string, cause?: unknown) =>
      new NonFiniteError(
        `SlimTrainer.step: the model's weights are not finite (${bad}); the step was refused and nothing was changed (restore the weights from a checkpoint)`,
        { cause },
      );
    let g: Gradients;
    try {
      g = this.options.mode === 'full' ? fullGradients(this.model, batch) : slimGradients(this.model, batch, this.options.sliceLength, this.options.onSlice);
    } catch (e) {
      if (e instanceof ArgError && /^(batch|sliceLength)/.test(e.message)) throw e; // a bad batch: named as such
      const bad = nonFiniteWeight(this.model);
      if (bad) throw weightsNotFinite(bad, e);
      const message = e instanceof Error ? e.message : String(e);
      if (/finite|overflow/i.test(message)) {
        throw new NonFiniteError(
          `SlimTrainer.step: the activations are not finite although the weights are (${message}); the step was refused and nothing was changed (lower the learning rate, or set clipNorm)`,
          { cause: e },
        );
      }
      throw e;
    }
    let norm: number;
    let weightsFinite: boolean;
    try {
      // One readback: the squared gradient norms, and Σ 0·w per weight (NaN iff a weight is not finite).
      const n = g.grads.size;
      const read = tf.tidy(() => tf.concat([gradSquares(g), tf.stack(this.model.namedVariables().map(([, v]) => tf.sum(tf.mul(v, 0))))]).dataSync());
      norm = Math.sqrt(total(read.subarray(0, n)));
      weightsFinite = Number.isFinite(total(read.subarray(n)));
    } catch (e) {
      for (const t of g.grads.values()) t.dispose();
      throw e;
    }
    if (!weightsFinite) {
      // Weights the batch did not touch (an unused embedding row, say) are non-finite: an update would keep them so.
      for (const t of g.grads.values()) t.dispose();
      throw weightsNotFinite(nonFiniteWeight(this.model) ?? 'a weight is not finite');
    }
    return applyStep(this.optimizer, this.model, g, norm, this.options.clipNorm);
  }
}

/** A step refused because its loss, gradients or the model's weights are not finite. */
export class NonFiniteError extends Error {
  override name = 'NonFiniteError';
}

/** `name[i] is NaN` for the first non-finite weight of `model`, or undefined when all are finite. */
export function nonFiniteWeight(model: Pick<SequenceModel, 'namedVariables'>): string | undefined {
  for (const [name, v] of model.namedVariables()) {
    if (v.isDisposed) return `${name} is disposed`;
    const ok = tf.tidy(() => tf.all(tf.isFinite(v)).dataSync()[0]);
    if (ok) continue;
    const data = v.dataSync();
    const i = data.findIndex((x) => !Number.isFinite(x));
    return `${name}[${i}] is ${data[i]}`;
  }
  return undefined;
}

/** Σ of an array, in float64. */
export function total(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/**
 * ‖g‖² of each parameter gradient, `[parameters]` (summed by the caller with `total`: tf.addN on
 * tfjs-backend-webgpu 4.22 over Dawn/llvmpipe sums only the first 7 of 8 or more inputs).
 */
export function gradSquares(g: Gradients): tf.Tensor1D {
  return tf.stack([...g.grads.values()].map((t) => tf.sum(tf.square(t)))) as tf.Tensor1D;
}

/**
 * Applies `g` (clipped to `clipNorm` given its global norm), then frees it. A non-finite loss or
 * norm (the norm is NaN or infinite when any gradient element is) refuses the update: the grads
 * are freed, a NonFiniteError is thrown, and the weights and the optimizer's state are unchanged.
 */
export function applyStep(
  optimizer: tf.Optimizer,
  model: SequenceModel,
  g: Gradients,
  norm: number,
  clipNorm?: number,
): { loss: number; tokens: number; gradNorm: number } {
  if (!Number.isFinite(g.loss) || !Number.isFinite(norm)) {
    for (const t of g.grads.values()) t.dispose();
    const bad = nonFiniteWeight(model);
    throw new NonFiniteError(
      `SlimTrainer.step: the ${!Number.isFinite(g.loss) ? `loss is ${g.loss}` : `gradient norm is ${norm}`}${bad ? ` (the model's weights are not finite: ${bad})` : ''}; ` +
        'the update was refused and the weights and optimizer are unchanged (lower the learning rate, set clipNorm, or restore a checkpoint)',
    );
  }
  const scale = clipNorm !== undefined && norm > clipNorm ? clipNorm / norm : 1;
  const vars = new Map(model.namedVariables());
  tf.tidy(() => {
    const named: tf.NamedTensorMap = {};
    for (const [n, t] of g.grads) named[vars.get(n)!.name] = scale === 1 ? t : tf.mul(t, scale);
    optimizer.applyGradients(named);
  });
  for (const t of g.grads.values()) t.dispose();
  return { loss: g.loss, tokens: g.tokens, gradNorm: norm };
}

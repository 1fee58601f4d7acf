/**
 * SLiM training on the TF.js `webgpu` backend with the WebGPU kernels: the same gradients as
 * `slimGradients` (slim.ts), with every tensor and every attention state on the GPU.
 *
 * Pass 1 runs the slices forward without gradients and keeps each slice's starting states (GPU
 * tensors `[B·heads, gpuStateWords]`, one per layer: memory grows with the number of slices, not
 * with their length; the wasm trainer recovers them by exact float64 unrolling instead, which
 * float32 GPU states cannot do). Pass 2 walks back: each slice is recomputed under the tape with
 * its starting states as variables and the surrogate ⟨state_end, G⟩ added to the loss, so one
 * `tf.variableGrads` gives the parameter gradients and the starting states' gradients, which are
 * the next `G`. Losses are read with `await data()`: nothing is read back synchronously.
 */
import * as tf from '@tensorflow/tfjs';
import type { PerformerLM } from '../model/performer_lm.ts';
import type { WebGPUKernels } from '../webgpu/kernels.ts';
import { addInto, applyStep, columns, gradSquares, sliceLoss, split, total, type Batch, type Gradients, type TrainerOptions } from './slim.ts';

/** Gradients of the whole sequence, slice by slice, on the GPU (see the module comment). */
export async function slimGradientsWebGPU(model: PerformerLM, kernels: WebGPUKernels, batch: Batch, sliceLength: number): Promise<Gradients> {
  if (!Number.isSafeInteger(sliceLength) || sliceLength <= 0) throw new TypeError(`sliceLength must be a positive integer, got ${sliceLength}`);
  if (tf.getBackend() !== 'webgpu') throw new Error(`slimGradientsWebGPU: the TF.js backend is '${tf.getBackend()}', not 'webgpu' (use slimGradients)`);
  const s = split(model, batch);
  const vars = model.namedVariables();
  const L = model.config.layers;
  const starts: number[] = [];
  for (let t0 = 0; t0 < s.T; t0 += sliceLength) starts.push(t0);
  const tokens = (t0: number, t1: number) => tf.tensor2d(columns(s.inputs, s.B, s.T, t0, t1), [s.B, t1 - t0], 'int32');

  const defined = (xs: Array<tf.Tensor | undefined>) => xs.filter((x): x is tf.Tensor => !!x);
  // Each slice's starting states (undefined: empty), kept from pass 1 until pass 2 is done with
  // them; whatever is left (after an error) is freed at the end.
  const startStates: Array<Array<tf.Tensor2D | undefined>> = [];
  const grads = new Map<string, tf.Tensor>();
  let G: Array<tf.Tensor2D | undefined> = new Array(L).fill(undefined);
  const losses: tf.Scalar[] = [];
  let done = false;
  try {
    // Pass 1: forward without gradients.
    let states: Array<tf.Tensor2D | undefined> = new Array(L).fill(undefined);
    for (const t0 of starts) {
      startStates.push(states);
      const t1 = Math.min(t0 + sliceLength, s.T);
      const before = states;
      states = tf.tidy(() => model.forwardWebGPU(tokens(t0, t1), { kernels, offset: t0, states: before }).statesOut);
    }
    tf.dispose(defined(states)); // the final states: nothing flows back into them

    // Pass 2: reverse walk; G[l] = gradient of the loss w.r.t. layer l's state at the slice's end.
    for (let si = starts.length - 1; si >= 0; si--) {
      const t0 = starts[si];
      const t1 = Math.min(t0 + sliceLength, s.T);
      const stateVars: Array<tf.Variable | undefined> = startStates[si].map((x) => (x ? tf.variable(x, true) : undefined));
      const live = stateVars.filter((v): v is tf.Variable => !!v);
      const nextG: Array<tf.Tensor2D | undefined> = new Array(L).fill(undefined);
      try {
        tf.tidy(() => {
          const { grads: g } = tf.variableGrads(() => {
            const f = model.forwardWebGPU(tokens(t0, t1), { kernels, offset: t0, states: stateVars as Array<tf.Tensor2D | undefined> });
            const loss = sliceLoss(f.logits, columns(s.targets, s.B, s.T, t0, t1) as Int32Array, columns(s.weights, s.B, s.T, t0, t1) as Float32Array, s.count);
            losses.push(tf.keep(tf.clone(loss)));
            let objective: tf.Scalar = loss;
            f.statesOut.forEach((st, l) => {
              const up = G[l];
              if (up) objective = tf.add(objective, tf.sum(tf.mul(st, up)));
            });
            return objective;
          }, [...vars.map(([, v]) => v), ...live]);
          for (const [name, v] of vars) addInto(grads, name, g[v.name]);
          stateVars.forEach((v, l) => {
            if (v) nextG[l] = tf.keep(g[v.name]) as tf.Tensor2D;
          });
        });
      } finally {
        tf.dispose([...live, ...defined(startStates[si]), ...defined(G)]);
        startStates[si] = [];
        G = nextG;
      }
    }
    let loss = 0;
    for (const l of losses) loss += (await l.data())[0];
    done = true;
    return { loss, tokens: s.count, grads };
  } finally {
    tf.dispose([...losses, ...defined(G), ...startStates.flatMap(defined)]);
    if (!done) tf.dispose([...grads.values()]);
  }
}

/** `SlimTrainer` on the GPU: one optimisation step per `await step(batch)` (SLiM gradients, optional clipping). */
export class SlimTrainerWebGPU {
  readonly optimizer: tf.Optimizer;

  constructor(
    readonly model: PerformerLM,
    readonly kernels: WebGPUKernels,
    readonly options: Omit<TrainerOptions, 'mode'>,
  ) {
    this.optimizer = options.optimizer ?? tf.train.adam(1e-3);
  }

  async step(batch: Batch): Promise<{ loss: number; tokens: number; gradNorm: number }> {
    const g = await slimGradientsWebGPU(this.model, this.kernels, batch, this.options.sliceLength);
    const sq = gradSquares(g);
    const norm = Math.sqrt(total(await sq.data()));
    sq.dispose();
    return applyStep(this.optimizer, this.model, g, norm, this.options.clipNorm);
  }
}

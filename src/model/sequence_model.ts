/** What the SLiM trainer and the checkpoint code need from a model, and what its forward takes and returns. */
import type * as tf from '@tensorflow/tfjs';
import type { AttnState, FeatureMap, StateGrad } from '../kernels/types.ts';
import type { SyncKernels } from '../kernels/interface.ts';

/** What a layer's attention starts from: a state, or a function of the layer's own `k, v`. */
export type StateSource = AttnState | ((kv: { k: Float32Array; v: Float32Array }) => AttnState) | undefined;

export interface ForwardOptions {
  /** Position of the first token (default 0). */
  offset?: number;
  /** Per layer: the state to continue from. */
  states?: StateSource[];
  /** Per layer: upstream gradient of the output state, sink for the input state's gradient. */
  stateGrads?: Array<{ upstream?: StateGrad; onInput?: (g: StateGrad) => void } | undefined>;
}

export interface ForwardResult {
  /** `[B, T, vocab]` */
  logits: tf.Tensor3D;
  /** Per layer: the state each layer started from (resolved) and ended with. */
  statesIn: AttnState[];
  statesOut: AttnState[];
}

export interface SequenceModel {
  readonly kernels: SyncKernels;
  readonly config: {
    vocabSize: number;
    dModel: number;
    heads: number;
    layers: number;
    /** Features per head. */
    features: number;
    feature: FeatureMap;
    chunk: number;
  };
  /** Per layer `[heads, features, headWidth]` projections (undefined: identity features). */
  readonly omegas: Array<Float32Array | undefined>;
  forward(tokens: tf.Tensor2D, o?: ForwardOptions): ForwardResult;
  namedVariables(): Array<[string, tf.Variable]>;
  emptyStates(batch: number): AttnState[];
}

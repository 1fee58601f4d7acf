/** What the SLiM trainer and the checkpoint code need from a model. */
import type * as tf from '@tensorflow/tfjs';
import type { AttnState, FeatureMap } from '../kernels/types.ts';
import type { SyncKernels } from '../kernels/interface.ts';
import type { ForwardOptions, ForwardResult } from './performer_lm.ts';

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

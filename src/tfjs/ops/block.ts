/**
 * The residual block every model and layer here is made of: attention then feed-forward, each
 * a residual branch with a layer norm placed one of three ways. PerformerLM and PerformerBlock
 * use `pre` (default) or `post`; the SLiM reference's `gptln` is `branch`, its default `pre`.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Where a branch's layer norm sits: `pre` x + f(LN(x)), `post` LN(x + f(x)), `branch`
 * x + LN(f(x)).
 */
export type NormPlacement = 'pre' | 'post' | 'branch';

/** One residual branch: `x` combined with `f` and its norm as `placement` says. */
export function residual(x: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: (y: tf.Tensor) => tf.Tensor, placement: NormPlacement): tf.Tensor {
  switch (placement) {
    case 'pre':
      return tf.add(x, f(norm(x)));
    case 'post':
      return norm(tf.add(x, f(x)));
    case 'branch':
      return tf.add(x, norm(f(x)));
  }
}

export interface BlockParts {
  /** `[B, T, width]` → `[B, T, width]`: the attention branch (projections included). */
  attention: (y: tf.Tensor) => tf.Tensor;
  /** The feed-forward branch. */
  feedForward: (y: tf.Tensor) => tf.Tensor;
  /** The layer norms of the two branches. */
  norm1: (y: tf.Tensor) => tf.Tensor;
  norm2: (y: tf.Tensor) => tf.Tensor;
  placement: NormPlacement;
}

/** A transformer block: the attention branch, then the feed-forward branch. */
export function transformerBlock(x: tf.Tensor, p: BlockParts): tf.Tensor {
  return residual(residual(x, p.attention, p.norm1, p.placement), p.feedForward, p.norm2, p.placement);
}

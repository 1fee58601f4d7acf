/** Layer normalisation over the last axis: `(x − mean) / √(var + eps) · g + b`, g and b `[width]`. */
import * as tf from '@tensorflow/tfjs';

export function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps = 1e-5): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
}

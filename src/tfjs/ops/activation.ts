/** Exact (erf) GELU: `x · Φ(x) = x/2 · (1 + erf(x/√2))`. */
import * as tf from '@tensorflow/tfjs';
import { checkTensor } from './check.ts';

export function gelu(x: tf.Tensor): tf.Tensor {
  checkTensor('gelu', 'x', x, { dtype: 'float32', desc: '(any shape)' });
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

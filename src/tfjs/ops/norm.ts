/** Layer normalisation over the last axis: `(x − mean) / √(var + eps) · g + b`, g and b `[width]`. */
import * as tf from '@tensorflow/tfjs';
import { ArgError } from '../../kernels/validate.ts';
import { checkTensor } from './check.ts';

export function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps = 1e-5): tf.Tensor {
  const fn = 'layerNorm';
  checkTensor(fn, 'x', x, { dtype: 'float32', rank: [1], desc: '[..., width]' });
  const width = x.shape[x.rank - 1];
  checkTensor(fn, 'g', g, { dtype: 'float32', shape: [width], desc: `[${width}] (x's last axis)` });
  checkTensor(fn, 'b', b, { dtype: 'float32', shape: [width], desc: `[${width}] (x's last axis)` });
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) throw new ArgError(`${fn}: eps must be a finite number > 0, got ${String(eps)}`);
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
  });
}

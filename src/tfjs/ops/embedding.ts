/**
 * Embedding lookup with a gradient that works on every TF.js backend: `tf.gather`'s own gradient
 * needs `UnsortedSegmentSum`, which tfjs-backend-wasm 4.22 does not have, so the rows are
 * scatter-added here instead (on the host; the webgpu backend uses gather's own gradient).
 */
import * as tf from '@tensorflow/tfjs';
import { ArgError } from '../../kernels/validate.ts';
import { checkTensor } from './check.ts';

/**
 * `table: [V, D]`, `ids: [B, T]` int32 → `[B, T, D]`. Ids outside `[0, V)` are refused with an
 * ArgError (on the webgpu backend they are not read back, so there they are not checked).
 */
export function embed(table: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor3D {
  const fn = 'embed';
  checkTensor(fn, 'table', table, { dtype: 'float32', rank: 2, desc: '[vocab, width]' });
  checkTensor(fn, 'ids', ids, { dtype: 'int32', rank: 2, desc: '[batch, T] of token ids' });
  const [V, D] = table.shape;
  const [B, T] = ids.shape;
  // On the webgpu backend gather's own gradient works (it has UnsortedSegmentSum), and reading
  // the upstream gradient back to the host, as below, would be a GPU → CPU round trip.
  if (tf.getBackend() === 'webgpu') return tf.reshape(tf.gather(table, tf.reshape(ids, [-1])), [B, T, D]);
  const idx = ids.dataSync();
  for (let i = 0; i < idx.length; i++) {
    if (!(idx[i] >= 0 && idx[i] < V))
      throw new ArgError(`${fn}: ids[${Math.floor(i / T)}, ${i % T}] is ${idx[i]}; token ids must lie in [0, ${V}) (the table's vocab axis)`);
  }
  const op = tf.customGrad((t) => ({
    value: tf.reshape(tf.gather(t as tf.Tensor2D, tf.reshape(ids, [-1])), [B, T, D]),
    gradFunc: (dy: tf.Tensor) => {
      const g = dy.dataSync();
      const out = new Float32Array(V * D);
      for (let r = 0; r < idx.length; r++) {
        const row = idx[r] * D;
        for (let j = 0; j < D; j++) out[row + j] += g[r * D + j];
      }
      return tf.tensor2d(out, [V, D]);
    },
  }));
  return op(table) as tf.Tensor3D;
}

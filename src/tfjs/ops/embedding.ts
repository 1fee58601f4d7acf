/**
 * Embedding lookup with a gradient that works on every TF.js backend: `tf.gather`'s own gradient
 * needs `UnsortedSegmentSum`, which tfjs-backend-wasm 4.22 does not have, so the rows are
 * scatter-added here instead (on the host; the webgpu backend uses gather's own gradient).
 */
import * as tf from '@tensorflow/tfjs';

/** `table: [V, D]`, `ids: [B, T]` int32 → `[B, T, D]`. */
export function embed(table: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor3D {
  const [V, D] = table.shape;
  const [B, T] = ids.shape;
  // On the webgpu backend gather's own gradient works (it has UnsortedSegmentSum), and reading
  // the upstream gradient back to the host, as below, would be a GPU → CPU round trip.
  if (tf.getBackend() === 'webgpu') return tf.reshape(tf.gather(table, tf.reshape(ids, [-1])), [B, T, D]);
  const idx = ids.dataSync();
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

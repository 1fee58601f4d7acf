/**
 * A dense (fully connected) layer as one op with its own gradient, every product on the
 * backend's fast path (`matMul2d`):
 *
 *   forward   y = x·W + b           x `[..., in]`, W `[in, out]` (or `[out, in]` with `transposeW`,
 *                                   PyTorch's `nn.Linear` layout), b `[out]`, y `[..., out]`
 *   backward  dx = dy·Wᵀ, dW = xᵀ·dy (or dyᵀ·x), db = Σ_rows dy
 *
 * Saved for the backward: x and W (no intermediate).
 */
import * as tf from '@tensorflow/tfjs';
import { ArgError } from '../../kernels/validate.ts';
import { matMul2d } from './matmul.ts';

export interface DenseOptions {
  /** W is `[out, in]` (PyTorch's `nn.Linear.weight`) instead of `[in, out]`. */
  transposeW?: boolean;
}

function check(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | undefined, transposeW: boolean): [number, number] {
  if (!(x instanceof tf.Tensor) || x.isDisposed) throw new ArgError('dense: x must be a live tf.Tensor [..., in]');
  if (!(w instanceof tf.Tensor) || w.isDisposed || w.rank !== 2)
    throw new ArgError(`dense: w must be a live 2-D tf.Tensor ${transposeW ? '[out, in]' : '[in, out]'}`);
  if (x.dtype !== 'float32' || w.dtype !== 'float32') throw new ArgError(`dense: x and w must be float32, got ${x.dtype} and ${w.dtype}`);
  const [inW, out] = transposeW ? [w.shape[1], w.shape[0]] : w.shape;
  const inX = x.shape[x.rank - 1];
  if (x.rank < 1 || inX !== inW) throw new ArgError(`dense: x must be [..., ${inW}], got [${x.shape}]`);
  if (b !== undefined) {
    if (!(b instanceof tf.Tensor) || b.isDisposed || b.dtype !== 'float32' || b.rank !== 1 || b.shape[0] !== out)
      throw new ArgError(`dense: b must be a live float32 tf.Tensor [${out}], got [${b?.shape}]`);
  }
  return [inW, out];
}

/** `x·W + b` (see the file header). */
export function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor, o: DenseOptions = {}): tf.Tensor {
  const tw = o.transposeW ?? false;
  const [inD, outD] = check(x, w, b, tw);
  const outShape = [...x.shape.slice(0, -1), outD];
  const x2 = tf.reshape(x, [-1, inD]) as tf.Tensor2D;
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [a, wt, bias] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor | undefined];
    save([a, wt]);
    const y = matMul2d(a, wt, false, tw);
    return {
      value: bias ? tf.add(y, bias) : y,
      gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) => {
        const g = tf.reshape(dy, [-1, outD]) as tf.Tensor2D;
        const dx = matMul2d(g, ws as tf.Tensor2D, false, !tw);
        const dw = tw ? matMul2d(g, xs as tf.Tensor2D, true, false) : matMul2d(xs as tf.Tensor2D, g, true, false);
        return bias ? [dx, dw, tf.sum(g, 0)] : [dx, dw];
      },
    };
  });
  const y = b ? op(x2, w, b) : op(x2, w);
  return tf.reshape(y, outShape);
}

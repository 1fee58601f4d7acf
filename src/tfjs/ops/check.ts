/**
 * Argument checks for the TF.js ops and layers: each refusal is an `ArgError` naming the
 * function, the argument and what was expected (dtype, shape), and nothing is computed before
 * the checks pass, so a refused call leaves no tensor behind.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgError } from '../../kernels/validate.ts';

/** What a tensor argument must be; `shape` entries that are `null` match any size. */
export interface TensorSpec {
  dtype?: tf.DataType | readonly tf.DataType[];
  /** Exact rank, or `[min]` for "at least". */
  rank?: number | [number];
  shape?: ReadonlyArray<number | null>;
  /** How the expected shape reads in messages, e.g. `[batch, T, width]`. */
  desc: string;
}

/** `x` as the message shows it: `float32 tensor [2,3]`, `a disposed tensor`, `number 3`, … */
export function describeTensor(x: unknown): string {
  if (x instanceof tf.Tensor) return x.isDisposed ? 'a disposed tensor' : `${x.dtype} tensor [${x.shape}]`;
  if (x === null) return 'null';
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object';
  return `${typeof x} ${String(x)}`;
}

/** Returns `x` if it is a live tensor matching `spec`; otherwise throws an ArgError. */
export function checkTensor<T extends tf.Tensor = tf.Tensor>(fn: string, name: string, x: unknown, spec: TensorSpec): T {
  const dtypes = spec.dtype === undefined ? undefined : typeof spec.dtype === 'string' ? [spec.dtype] : spec.dtype;
  const want = `a live ${dtypes ? dtypes.join(' or ') + ' ' : ''}tf.Tensor ${spec.desc}`;
  const refuse = (): never => {
    throw new ArgError(`${fn}: ${name} must be ${want}, got ${describeTensor(x)}`);
  };
  if (!(x instanceof tf.Tensor) || x.isDisposed) return refuse();
  if (dtypes && !dtypes.includes(x.dtype)) refuse();
  if (typeof spec.rank === 'number' && x.rank !== spec.rank) refuse();
  if (Array.isArray(spec.rank) && x.rank < spec.rank[0]) refuse();
  if (spec.shape) {
    if (x.rank !== spec.shape.length) refuse();
    spec.shape.forEach((s, i) => {
      if (s !== null && x.shape[i] !== s) refuse();
    });
  }
  return x as T;
}

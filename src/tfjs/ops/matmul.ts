/**
 * Matrix products on TF.js's fast paths.
 *
 * tfjs-backend-wasm 4.22 runs `matMul` on XNNPACK only for an untransposed product of two 2-D
 * (batch 1) operands: ~25 GFLOP/s on one core, against ~2 GFLOP/s (`transposeB`) and ~1 GFLOP/s
 * (`transposeA`) for its fallback loop. `matMul2d` therefore makes every transposed operand
 * explicit with `transpose2d` before calling the fast path; on the wasm backend `transpose2d` is a
 * blocked copy in the backend's own heap (about 3× faster than `tf.transpose` there). On every
 * other backend both are the plain TF.js ops, whose transposed products are already fast.
 */
import * as tf from '@tensorflow/tfjs';

const TRANSPOSE = 'SlimTranspose2D';
const BLOCK = 16;

/** What the kernels below need of tfjs-backend-wasm's `BackendWasm`. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

/** `dst[c, r] = src[r, c]` for row-major `src: [r, c]`, in cache-sized blocks. */
export function transposeInto(src: Float32Array, dst: Float32Array, r: number, c: number): void {
  for (let i0 = 0; i0 < r; i0 += BLOCK) {
    const i1 = Math.min(i0 + BLOCK, r);
    for (let j0 = 0; j0 < c; j0 += BLOCK) {
      const j1 = Math.min(j0 + BLOCK, c);
      for (let i = i0; i < i1; i++) {
        const row = i * c;
        for (let j = j0; j < j1; j++) dst[j * r + i] = src[row + j];
      }
    }
  }
}

let registered = false;

function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: TRANSPOSE,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = inputs.x as tf.TensorInfo;
      const b = backend as unknown as WasmBackend;
      const [r, c] = x.shape;
      const out = b.makeOutput([c, r], 'float32');
      transposeInto(b.typedArrayFromHeap(x), b.typedArrayFromHeap(out), r, c);
      return out;
    },
  });
}

const onWasm = () => tf.getBackend() === 'wasm';

/** `xᵀ` of a float32 `[r, c]` tensor. */
export function transpose2d(x: tf.Tensor2D): tf.Tensor2D {
  if (!onWasm() || x.dtype !== 'float32') return tf.transpose(x);
  registerWasmKernels();
  return tf.engine().runKernel(TRANSPOSE, { x }, {}) as tf.Tensor2D;
}

/** `op(a) · op(b)` for 2-D float32 tensors, on the backend's fast path (see the file header). */
export function matMul2d(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!onWasm()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => tf.matMul(transposeA ? transpose2d(a) : a, transposeB ? transpose2d(b) : b));
}

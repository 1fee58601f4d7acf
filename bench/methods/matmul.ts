/**
 * tfjs-matmul-ceiling: tf.matMul on square float32 N×N matrices on the wasm backend (XNNPACK,
 * SIMD, one thread): the practical GFLOP/s ceiling for any TF.js-on-wasm attention. Flops 2N³.
 * Inputs stay resident; the timed call is the matMul alone (wasm kernels run synchronously).
 */
import { tf, tfjsReady } from '../harness/tfjs.ts';
import { gaussian } from '../harness/data.ts';
import { chooseReps, summarize, timeOnce, timeReps, type Summary } from '../harness/timing.ts';

export const MATMUL_NAME = 'tfjs-matmul-ceiling';

export interface MatmulRow {
  n: number;
  samples: number[];
  summary: Summary;
  gflops: number;
}

export async function runMatmulCeiling(sizes: number[], fixedReps?: number): Promise<MatmulRow[]> {
  await tfjsReady();
  const rows: MatmulRow[] = [];
  for (const n of sizes) {
    const a = tf.tensor2d(gaussian(n * n, 11), [n, n]);
    const b = tf.tensor2d(gaussian(n * n, 12), [n, n]);
    const call = () => tf.matMul(a, b).dispose();
    const warm = await timeOnce(call);
    const samples = await timeReps(call, chooseReps(warm, fixedReps));
    const summary = summarize(samples);
    rows.push({ n, samples, summary, gflops: (2 * n ** 3) / (summary.median * 1e6) });
    tf.dispose([a, b]);
  }
  return rows;
}

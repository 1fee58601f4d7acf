/** Language-model batches shared by the SLiM suites. */
import type { Batch } from '../../src/train/slim.ts';
import { Rng } from './rng.ts';

/** Two random sequences of `t + 1` tokens; `masked`: the second one's last 3 targets are padding. */
export function lmBatch(seed: number, vocab: number, masked: boolean, t: number): Batch {
  const rng = new Rng(seed);
  const B = 2;
  const tokens = Int32Array.from({ length: B * (t + 1) }, () => Math.floor(rng.next() * vocab));
  const mask = masked ? Uint8Array.from({ length: B * (t + 1) }, (_, i) => (i % (t + 1) > t - 4 && i >= t + 1 ? 0 : 1)) : undefined;
  return { tokens, batch: B, mask };
}

/**
 * The PyTorch model that `npm run bench:training -- --compare` races against computes what ours
 * computes: bench/training/torch_slim.py, in float64, against the SLiM paper's reference vectors
 * (logits, loss, full and slice-by-slice gradients), in both attention forms. Runs where
 * `python3` can import torch (Debian: python3-torch); skipped, with that reason, elsewhere.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SCRIPT = resolve(import.meta.dirname, '../../bench/training/torch_slim.py');
const python = ['/usr/bin/python3', 'python3'].find(
  (py) => (!py.startsWith('/') || existsSync(py)) && spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0,
);

describe.skipIf(!python)('PyTorch baseline of the training benchmark (skipped: python3 cannot import torch)', () => {
  for (const attention of ['chunked', 'prefix-sum']) {
    it(`${attention}: matches the reference vectors in float64`, () => {
      const r = spawnSync(python!, [SCRIPT, 'check', `--attention=${attention}`], { encoding: 'utf8', timeout: 120_000 });
      expect(r.stdout, r.stderr).toMatch(/matches the reference/);
      expect(r.status).toBe(0);
    });
  }
});

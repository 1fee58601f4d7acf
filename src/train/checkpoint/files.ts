/**
 * Checkpoint files in Node: atomic writes through `<path>.tmp` and a rename, verified reads.
 * `node:fs` is loaded only when a function here is called, so bundles for other runtimes can
 * include this module.
 */
import type * as tf from '@tensorflow/tfjs';
import type { SyncKernels } from '../../kernels/interface.ts';
import type { PerformerLM } from '../../model/performer_lm.ts';
import { type Checkpoint, decodeCheckpoint } from './format.ts';
import { encodeCheckpoint, modelFromCheckpoint, optimizerFromCheckpoint, restoreCheckpoint, type SaveOptions } from './model.ts';

/**
 * Writes a checkpoint atomically: the bytes go to `<path>.tmp`, are flushed, then renamed over
 * `path`; on any failure the temporary file is removed and `path` is left as it was.
 */
export async function saveCheckpoint(path: string, model: PerformerLM, optimizer?: tf.Optimizer, o: SaveOptions = {}): Promise<number> {
  const bytes = await encodeCheckpoint(model, optimizer, o);
  await writeFileAtomic(path, bytes);
  return bytes.length;
}

export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const fs = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  const tmp = `${path}.tmp`;
  let fh: import('node:fs/promises').FileHandle | undefined;
  try {
    fh = await fs.open(tmp, 'w');
    await fh.writeFile(bytes);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new Error(`could not write checkpoint ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const dir = await fs.open(dirname(path), 'r'); // make the rename durable (best effort)
    await dir.sync().finally(() => dir.close());
  } catch {
    /* not supported on this platform */
  }
}

/** Reads and verifies a checkpoint file. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  const fs = await import('node:fs/promises');
  const buf = await fs.readFile(path);
  try {
    return decodeCheckpoint(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** Loads a checkpoint file into a new model (and a new optimizer when the file holds one). */
export async function loadCheckpoint(
  path: string,
  kernels: SyncKernels,
): Promise<{ model: PerformerLM; optimizer?: tf.Optimizer; step: number; meta: Record<string, unknown>; checkpoint: Checkpoint }> {
  const ck = await readCheckpoint(path);
  const model = await modelFromCheckpoint(ck, kernels);
  try {
    const optimizer = await optimizerFromCheckpoint(ck, model);
    return { model, optimizer, step: ck.header.step, meta: ck.header.meta, checkpoint: ck };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Loads a checkpoint file into an existing model (and optimizer). */
export async function loadInto(path: string, model: PerformerLM, optimizer?: tf.Optimizer): Promise<Checkpoint> {
  const ck = await readCheckpoint(path);
  await restoreCheckpoint(ck, model, optimizer);
  return ck;
}

/**
 * Checkpoints: the format (format.ts), models and optimizers to and from it (model.ts), and
 * storage in Node files (files.ts) and the browser (browser.ts).
 */
export {
  CHECKPOINT_MAGIC,
  CHECKPOINT_VERSION,
  type Checkpoint,
  type CheckpointHeader,
  crc32,
  decodeCheckpoint,
  type OptimizerState,
  packCheckpoint,
  type TensorEntry,
} from './format.ts';
export { encodeCheckpoint, modelFromCheckpoint, optimizerFromCheckpoint, restoreCheckpoint, SCALAR_SLOTS, type SaveOptions } from './model.ts';
export { loadCheckpoint, loadInto, readCheckpoint, saveCheckpoint, writeFileAtomic } from './files.ts';
export { downloadCheckpoint, loadCheckpointFromIndexedDB, saveCheckpointToIndexedDB } from './browser.ts';

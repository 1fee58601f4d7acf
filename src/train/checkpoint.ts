/**
 * Checkpoints: a PerformerLM's weights (by name), its fixed random features, and optionally a
 * TF.js optimizer's state, in one self-describing binary file.
 *
 * Layout (integers little-endian):
 *
 *   offset  size  field
 *   0       8     magic "SLIMPERF"
 *   8       4     format version (u32, currently 1)
 *   12      4     header length H (u32)
 *   16      8     payload length P (u64)
 *   24      H     header: UTF-8 JSON (model config, step, meta, optimizer, tensor table)
 *   …       0–7   zero padding to a multiple of 8
 *   D       P     payload: raw little-endian float32 data at the offsets in the tensor table
 *   D + P   4     CRC-32 (IEEE) of every byte before it
 *
 * Tensor names: `model/<namedVariables name>`, `features/<layer>` (the random projections, so a
 * checkpoint does not depend on the generator that made them), `optimizer/<variable>/<slot>`.
 *
 * Encoding and decoding work on `Uint8Array`s in any runtime; the file helpers (Node: atomic
 * write through `<path>.tmp` and a rename) and the browser helpers (IndexedDB, download) sit on
 * top and load their runtime's APIs only when called.
 */
import * as tf from '@tensorflow/tfjs';
import { PerformerLM, type PerformerLMConfig } from '../model/performer_lm.ts';
import type { SyncKernels } from '../kernels/interface.ts';

export const CHECKPOINT_MAGIC = 'SLIMPERF';
export const CHECKPOINT_VERSION = 1;
const PREFIX = 24;

export interface TensorEntry {
  name: string;
  dtype: 'float32';
  shape: number[];
  /** Byte offset inside the payload. */
  offset: number;
  bytes: number;
}

export interface OptimizerState {
  /** TF.js class name, e.g. `'Adam'`. */
  className: string;
  /** `optimizer.getConfig()`. */
  config: Record<string, unknown>;
  iterations: number;
  /** Optimizer weight tensor names, in `getWeights()` order (without the iteration counter). */
  weights: string[];
  /** Scalars that `setWeights` recomputes rather than restores (Adam's β₁ᵗ, β₂ᵗ), kept exactly. */
  scalars: Record<string, number>;
}

export interface CheckpointHeader {
  format: 'slim-performer-checkpoint';
  version: number;
  created: string;
  step: number;
  meta: Record<string, unknown>;
  config: Required<PerformerLMConfig>;
  optimizer: OptimizerState | null;
  tensors: TensorEntry[];
}

/** A decoded checkpoint: its header and every tensor's data. */
export interface Checkpoint {
  header: CheckpointHeader;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

// ---------------------------------------------------------------------------------------------
// CRC-32 and little-endian helpers

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as in zip and PNG). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function f32ToBytes(src: Float32Array, dst: Uint8Array, at: number): void {
  if (LITTLE_ENDIAN) {
    dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), at);
  } else {
    const view = new DataView(dst.buffer, dst.byteOffset);
    for (let i = 0; i < src.length; i++) view.setFloat32(at + 4 * i, src[i], true);
  }
}

function bytesToF32(src: Uint8Array, at: number, n: number): Float32Array {
  if (LITTLE_ENDIAN) return new Float32Array(src.slice(at, at + 4 * n).buffer);
  const view = new DataView(src.buffer, src.byteOffset);
  return Float32Array.from({ length: n }, (_, i) => view.getFloat32(at + 4 * i, true));
}

// ---------------------------------------------------------------------------------------------
// Bytes

/** Packs a header (without its tensor table) and named float32 tensors into checkpoint bytes. */
export function packCheckpoint(header: Omit<CheckpointHeader, 'tensors'>, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>): Uint8Array {
  const table: TensorEntry[] = [];
  let payload = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (!(t.data instanceof Float32Array) || t.data.length !== n) throw new TypeError(`packCheckpoint: tensor ${t.name} must be a Float32Array of ${n} values`);
    table.push({ name: t.name, dtype: 'float32', shape: t.shape, offset: payload, bytes: 4 * n });
    payload += Math.ceil((4 * n) / 8) * 8;
  }
  const json = new TextEncoder().encode(JSON.stringify({ ...header, tensors: table }));
  const dataStart = Math.ceil((PREFIX + json.length) / 8) * 8;
  const out = new Uint8Array(dataStart + payload + 4);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(CHECKPOINT_MAGIC), 0);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, json.length, true);
  view.setBigUint64(16, BigInt(payload), true);
  out.set(json, PREFIX);
  tensors.forEach((t, i) => f32ToBytes(t.data, out, dataStart + table[i].offset));
  view.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

/** Parses checkpoint bytes, verifying magic, version, length and checksum; throws a clear Error otherwise. */
export function decodeCheckpoint(bytes: Uint8Array): Checkpoint {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeCheckpoint: expected a Uint8Array');
  const magic = new TextEncoder().encode(CHECKPOINT_MAGIC);
  const head = bytes.subarray(0, Math.min(bytes.length, magic.length));
  if (head.some((b, i) => b !== magic[i])) throw new Error('not a slim-performer checkpoint (wrong magic bytes)');
  if (bytes.length < PREFIX + 4) throw new Error(`checkpoint truncated: ${bytes.length} bytes, less than the fixed ${PREFIX + 4}-byte frame`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) throw new Error(`checkpoint format version ${version} is not supported (this build reads version ${CHECKPOINT_VERSION})`);
  const headerLength = view.getUint32(12, true);
  const payload = Number(view.getBigUint64(16, true));
  const dataStart = Math.ceil((PREFIX + headerLength) / 8) * 8;
  const expected = dataStart + payload + 4;
  if (bytes.length < expected) throw new Error(`checkpoint truncated: expected ${expected} bytes, got ${bytes.length}`);
  if (bytes.length > expected) throw new Error(`checkpoint corrupt: ${bytes.length} bytes, but its frame describes ${expected}`);
  const stored = view.getUint32(expected - 4, true);
  const actual = crc32(bytes.subarray(0, expected - 4));
  if (stored !== actual) {
    throw new Error(
      `checkpoint checksum mismatch (stored crc32 ${stored.toString(16).padStart(8, '0')}, computed ${actual.toString(16).padStart(8, '0')}): the file is corrupt`,
    );
  }
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(PREFIX, PREFIX + headerLength)));
  } catch (e) {
    throw new Error(`checkpoint header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || header.format !== 'slim-performer-checkpoint' || !Array.isArray(header.tensors))
    throw new Error('not a slim-performer checkpoint (unexpected header)');
  if (typeof header.config !== 'object' || header.config === null || Array.isArray(header.config))
    throw new Error('checkpoint corrupt: the header has no model config object');
  // The CRC says the bytes are the ones written; the table is still checked in full, so that a
  // file written by other code (or a colliding CRC) cannot make the reader misbehave.
  const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  const seen = new Set<string>();
  const spans: Array<[number, number, string]> = [];
  for (const t of header.tensors as unknown[]) {
    const e = t as Partial<TensorEntry> | null;
    const name = typeof e?.name === 'string' ? e.name : undefined;
    if (!e || name === undefined) throw new Error('checkpoint corrupt: a tensor table entry has no name');
    if (seen.has(name)) throw new Error(`checkpoint corrupt: tensor ${name} appears twice in the table`);
    seen.add(name);
    if (!Array.isArray(e.shape) || !e.shape.every(isCount))
      throw new Error(`checkpoint corrupt: tensor ${name} has shape ${JSON.stringify(e.shape)}, not a list of non-negative integers`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.dtype !== 'float32' || !isCount(e.offset) || !isCount(e.bytes) || e.bytes !== 4 * n || e.offset + e.bytes > payload) {
      throw new Error(
        `checkpoint corrupt: tensor ${name} (${String(e.dtype)} [${e.shape}], ${String(e.bytes)} bytes at ${String(e.offset)}) does not fit the ${payload}-byte payload`,
      );
    }
    spans.push([e.offset, e.offset + e.bytes, name]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1])
      throw new Error(`checkpoint corrupt: tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap in the payload (bytes ${spans[i][0]}–${spans[i - 1][1]})`);
  }
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of header.tensors) tensors.set(t.name, { shape: t.shape, data: bytesToF32(bytes, dataStart + t.offset, t.bytes / 4) });
  return { header, tensors };
}

// ---------------------------------------------------------------------------------------------
// Model and optimizer ↔ checkpoint

export interface SaveOptions {
  /** Training step (default: the optimizer's iteration count, else 0). */
  step?: number;
  /** Anything JSON-serialisable: vocabulary, data set, command line… */
  meta?: Record<string, unknown>;
}

const SCALAR_SLOTS = ['accBeta1', 'accBeta2'];

/** Encodes a model (and an optimizer's state) as checkpoint bytes. */
export async function encodeCheckpoint(model: PerformerLM, optimizer?: tf.Optimizer, o: SaveOptions = {}): Promise<Uint8Array> {
  const tensors: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
  const byVarName = new Map<string, string>();
  for (const [name, v] of model.namedVariables()) {
    tensors.push({ name: `model/${name}`, shape: v.shape, data: v.dataSync() as Float32Array });
    byVarName.set(v.name, name);
  }
  const hd = model.config.dModel / model.config.heads;
  model.omegas.forEach((w, l) => {
    if (w) tensors.push({ name: `features/${l}`, shape: [model.config.heads, model.config.features, hd], data: w });
  });
  let opt: OptimizerState | null = null;
  if (optimizer) {
    const weights = await optimizer.getWeights();
    const iter = weights[0]?.name === 'iter' ? weights[0] : undefined;
    const slots = iter ? weights.slice(1) : weights;
    const names: string[] = [];
    for (const { name, tensor } of slots) {
      const cut = name.lastIndexOf('/');
      const owner = byVarName.get(name.slice(0, cut));
      if (cut < 0 || owner === undefined) throw new Error(`encodeCheckpoint: optimizer weight ${name} belongs to no variable of this model`);
      names.push(`optimizer/${owner}/${name.slice(cut + 1)}`);
      tensors.push({ name: names[names.length - 1], shape: tensor.shape, data: Float32Array.from(tensor.dataSync()) });
    }
    const iterations = iter ? (await iter.tensor.data())[0] : optimizer.iterations;
    iter?.tensor.dispose();
    const scalars: Record<string, number> = {};
    for (const k of SCALAR_SLOTS) {
      const v = (optimizer as unknown as Record<string, unknown>)[k];
      if (v instanceof tf.Variable && v.size === 1) scalars[k] = v.dataSync()[0];
    }
    const className = (optimizer.constructor as unknown as { className?: string }).className ?? optimizer.getClassName();
    opt = { className, config: optimizer.getConfig() as Record<string, unknown>, iterations, weights: names, scalars };
  }
  const header = {
    format: 'slim-performer-checkpoint' as const,
    version: CHECKPOINT_VERSION,
    created: new Date().toISOString(),
    step: o.step ?? opt?.iterations ?? 0,
    meta: o.meta ?? {},
    config: model.config,
    optimizer: opt,
  };
  return packCheckpoint(header, tensors);
}

/** Every config field must match, except the seed: the random features come from the file. */
function checkConfig(saved: Record<string, unknown>, actual: Record<string, unknown>): void {
  const diffs: string[] = [];
  for (const k of new Set([...Object.keys(saved), ...Object.keys(actual)])) {
    if (k === 'seed') continue;
    if (JSON.stringify(saved[k]) !== JSON.stringify(actual[k]))
      diffs.push(`${k} is ${JSON.stringify(saved[k])} in the checkpoint but ${JSON.stringify(actual[k])} in the model`);
  }
  if (diffs.length) throw new Error(`checkpoint config mismatch: ${diffs.join('; ')}`);
}

function take(ck: Checkpoint, name: string, shape: number[]): Float32Array {
  const t = ck.tensors.get(name);
  if (!t) throw new Error(`checkpoint lacks tensor ${name}`);
  if (t.shape.join() !== shape.join()) throw new Error(`checkpoint shape mismatch for ${name}: [${t.shape}] in the checkpoint, [${shape}] in the model`);
  const i = t.data.findIndex((x) => !Number.isFinite(x));
  if (i >= 0) throw new Error(`checkpoint tensor ${name}[${i}] is ${t.data[i]}; weights and optimizer state must be finite`);
  return t.data;
}

/**
 * Writes a checkpoint's weights and random features into `model` (its config must match) and,
 * when given, its state into `optimizer` (same class; the moments map to the model's variables
 * in `namedVariables()` order, which is the order `SlimTrainer` applies gradients in).
 */
export async function restoreCheckpoint(ck: Checkpoint, model: PerformerLM, optimizer?: tf.Optimizer): Promise<void> {
  checkConfig(ck.header.config as unknown as Record<string, unknown>, model.config as unknown as Record<string, unknown>);
  const vars = model.namedVariables();
  const values = vars.map(([name, v]) => take(ck, `model/${name}`, v.shape));
  const hd = model.config.dModel / model.config.heads;
  const features = model.omegas.map((w, l) => (w ? take(ck, `features/${l}`, [model.config.heads, model.config.features, hd]) : undefined));
  const byName = new Map(vars);
  let slotData: Array<{ name: string; data: Float32Array; shape: number[] }> = [];
  if (optimizer) {
    const saved = ck.header.optimizer;
    if (!saved) throw new Error('checkpoint holds no optimizer state');
    const className = (optimizer.constructor as unknown as { className?: string }).className ?? optimizer.getClassName();
    if (saved.className !== className)
      throw new Error(`checkpoint optimizer mismatch: the checkpoint holds ${saved.className} state, the optimizer is ${className}`);
    if (!Array.isArray(saved.weights) || !saved.weights.every((w) => typeof w === 'string' && w.startsWith('optimizer/')))
      throw new Error('checkpoint corrupt: optimizer.weights must list optimizer/<variable>/<slot> names');
    if (!Number.isSafeInteger(saved.iterations) || saved.iterations < 0)
      throw new Error(`checkpoint corrupt: optimizer.iterations is ${String(saved.iterations)}`);
    if (
      typeof saved.scalars !== 'object' ||
      saved.scalars === null ||
      !Object.values(saved.scalars).every((x) => typeof x === 'number' && Number.isFinite(x))
    ) {
      throw new Error('checkpoint corrupt: optimizer.scalars must map names to finite numbers');
    }
    slotData = saved.weights.map((full) => {
      const rest = full.slice('optimizer/'.length);
      const cut = rest.lastIndexOf('/');
      const v = byName.get(rest.slice(0, cut));
      if (!v) throw new Error(`checkpoint optimizer weight ${full} names no variable of this model`);
      return { name: `${v.name}/${rest.slice(cut + 1)}`, data: take(ck, full, v.shape), shape: v.shape };
    });
  }
  // Everything checked: now write (the model and optimizer are untouched when any check fails).
  const slots = slotData.map((s) => ({ name: s.name, tensor: tf.tensor(s.data, s.shape) }));
  tf.tidy(() => vars.forEach(([, v], i) => v.assign(tf.tensor(values[i], v.shape))));
  features.forEach((f, l) => f && model.omegas[l]!.set(f));
  if (optimizer) {
    const saved = ck.header.optimizer!;
    const old = await optimizer.getWeights();
    const iter = tf.scalar(saved.iterations, 'int32');
    await optimizer.setWeights([{ name: 'iter', tensor: iter }, ...slots]);
    tf.tidy(() => {
      for (const [k, x] of Object.entries(saved.scalars)) {
        const v = (optimizer as unknown as Record<string, unknown>)[k];
        if (v instanceof tf.Variable) v.assign(tf.scalar(x));
      }
    });
    tf.dispose([iter, ...slots.map((s) => s.tensor), ...old.map((w) => w.tensor)]);
  }
}

/** A new model built from a checkpoint's config, holding its weights. */
export async function modelFromCheckpoint(ck: Checkpoint, kernels: SyncKernels): Promise<PerformerLM> {
  const model = new PerformerLM(kernels, ck.header.config);
  try {
    await restoreCheckpoint(ck, model);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** A new optimizer of the checkpoint's class and config, holding its state (or undefined if it has none). */
export async function optimizerFromCheckpoint(ck: Checkpoint, model: PerformerLM): Promise<tf.Optimizer | undefined> {
  const saved = ck.header.optimizer;
  if (!saved) return undefined;
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[saved.className];
  if (!entry) throw new Error(`checkpoint optimizer class ${saved.className} is not registered with TF.js`);
  const [cls, fromConfig] = entry;
  const optimizer = fromConfig(cls, saved.config as tf.serialization.ConfigDict) as tf.Optimizer;
  try {
    await restoreCheckpoint(ck, model, optimizer);
  } catch (e) {
    optimizer.dispose();
    throw e;
  }
  return optimizer;
}

// ---------------------------------------------------------------------------------------------
// Node files

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

// ---------------------------------------------------------------------------------------------
// Browser

const DB = 'slim-performer';
const STORE = 'checkpoints';

function openDB(): Promise<IDBDatabase> {
  if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available in this runtime');
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idb<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDB();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Stores checkpoint bytes under `key` in IndexedDB (one transaction: all or nothing). */
export async function saveCheckpointToIndexedDB(key: string, bytes: Uint8Array): Promise<void> {
  await idb('readwrite', (s) => s.put(bytes, key));
}

/** Reads and verifies checkpoint bytes stored under `key` in IndexedDB. */
export async function loadCheckpointFromIndexedDB(key: string): Promise<Checkpoint> {
  const bytes = await idb<unknown>('readonly', (s) => s.get(key));
  if (bytes === undefined) throw new Error(`no checkpoint stored under "${key}" in IndexedDB`);
  return decodeCheckpoint(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes as ArrayBuffer));
}

/** Offers checkpoint bytes as a file download (browsers). */
export function downloadCheckpoint(bytes: Uint8Array, filename = 'model.slimckpt'): void {
  if (typeof document === 'undefined' || typeof URL?.createObjectURL !== 'function') throw new Error('downloadCheckpoint needs a browser document');
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

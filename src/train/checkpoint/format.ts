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
 * This module is the format alone (bytes ↔ {@link Checkpoint}, CRC-32), in any runtime; model.ts
 * maps models and optimizers to it, files.ts (Node) and browser.ts (IndexedDB, download) store it.
 */
import type { PerformerLMConfig } from '../../model/performer_lm.ts';

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

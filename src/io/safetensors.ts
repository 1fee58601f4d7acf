/**
 * safetensors, read and written without dependencies: an 8-byte little-endian header length,
 * a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {…}}`, then
 * the raw little-endian data. The reader checks everything before touching the data and never
 * reads past the buffer; it copies each tensor out, so no view aliases the input.
 */

export type DType = 'F64' | 'F32' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TensorData = Float64Array | Float32Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

const SIZE: Record<DType, number> = { F64: 8, F32: 4, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const CTOR = {
  F64: Float64Array,
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
} as const;

/** Headers larger than this are refused (the format's own reference limit is 100 MB). */
const MAX_HEADER = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const bad = (msg: string): never => {
  throw new SafetensorsError(`safetensors: ${msg}`);
};

const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Parses a safetensors buffer into tensors and string metadata. */
export function parseSafetensors(bytes: Uint8Array): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  if (!(bytes instanceof Uint8Array)) bad('expected the file as a Uint8Array');
  if (!isLittleEndian) bad('big-endian hosts are not supported');
  if (bytes.length < 8) bad(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER, bytes.length - 8)))
    bad(`header length ${n} exceeds the file (${bytes.length - 8} bytes after the length) or the ${MAX_HEADER}-byte limit`);
  const headerLen = Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    return bad(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header must be a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Array<[string, DType, number[], number, number]> = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null) bad('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw as object)) {
        if (typeof v !== 'string') bad(`__metadata__.${k} must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) bad(`entry ${name} must be an object`);
    if (typeof e.dtype !== 'string' || !Object.hasOwn(SIZE, e.dtype))
      bad(`tensor ${name}: unknown dtype ${JSON.stringify(e.dtype)} (known: ${Object.keys(SIZE).join(', ')})`);
    const dtype = e.dtype as DType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      bad(`tensor ${name}: shape must be a list of non-negative integers`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0))
      bad(`tensor ${name}: data_offsets must be [begin, end]`);
    const [begin, end] = off as number[];
    if (begin > end || end > dataLen) bad(`tensor ${name}: data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data section`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(count * SIZE[dtype]) || count * SIZE[dtype] !== end - begin) {
      bad(`tensor ${name}: shape [${shape}] of ${dtype} needs ${count * SIZE[dtype]} bytes, data_offsets give ${end - begin}`);
    }
    entries.push([name, dtype, shape, begin, end]);
  }
  const sorted = [...entries].sort((a, b) => a[3] - b[3] || a[4] - b[4]);
  let cursor = 0;
  for (const [name, , , begin, end] of sorted) {
    if (begin < cursor) bad(`tensor ${name}: data_offsets [${begin}, ${end}] overlap another tensor`);
    if (begin > cursor) bad(`data section has a hole before tensor ${name} (bytes ${cursor}–${begin})`);
    cursor = end;
  }
  if (cursor !== dataLen) bad(`data section is ${dataLen} bytes but the tensors cover ${cursor}`);
  const tensors = new Map<string, Tensor>();
  for (const [name, dtype, shape, begin, end] of entries) {
    const copy = bytes.slice(dataStart + begin, dataStart + end);
    tensors.set(name, { dtype, shape, data: new CTOR[dtype](copy.buffer, 0, (end - begin) / SIZE[dtype]) });
  }
  return { tensors, metadata };
}

function dtypeOf(data: TensorData): DType {
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  return bad('unsupported array type');
}

/** Writes tensors (in the given order) and string metadata as a safetensors buffer. */
export function writeSafetensors(
  tensors: Map<string, { shape: number[]; data: TensorData; dtype?: DType }>,
  metadata: Record<string, string> = {},
): Uint8Array {
  if (!isLittleEndian) bad('big-endian hosts are not supported');
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) bad(`tensor ${name}: shape [${t.shape}] has ${count} elements, data has ${t.data.length}`);
    header[name] = { dtype: t.dtype ?? dtypeOf(t.data), shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** safetensors: round trips, an independent reader, and a malformed-file suite. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, type Kernels } from '../../src/index.ts';
import { parseSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { exportWeights, importWeights } from '../../src/io/weights.ts';
import { ReferenceLM } from '../../src/model/reference_lm.ts';

const FIXTURE = resolve(import.meta.dirname, '../fixtures/slim-reference/m_sqr_gptln.weights.safetensors');

/** A minimal reader written from the format's description, independent of ours. */
function independentRead(bytes: Uint8Array): Record<string, { dtype: string; shape: number[]; values: number[] }> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out: Record<string, { dtype: string; shape: number[]; values: number[] }> = {};
  for (const [k, v] of Object.entries(header) as Array<[string, { dtype: string; shape: number[]; data_offsets: [number, number] }]>) {
    if (k === '__metadata__') continue;
    const values: number[] = [];
    for (let o = v.data_offsets[0]; o < v.data_offsets[1]; o += 4) values.push(buf.readFloatLE(8 + n + o));
    out[k] = { dtype: v.dtype, shape: v.shape, values };
  }
  return out;
}

/** A valid two-tensor file to corrupt: `a: F32 [2]`, `b: F32 [1]`. */
function sample(): Uint8Array {
  return writeSafetensors(
    new Map([
      ['a', { shape: [2], data: new Float32Array([1, 2]) }],
      ['b', { shape: [1], data: new Float32Array([3]) }],
    ]),
  );
}

/** Rewrites the header of `sample()` with `edit` applied to its JSON. */
function withHeader(edit: (h: Record<string, any>) => void, extraData = 0): Uint8Array {
  const s = sample();
  const n = Number(new DataView(s.buffer).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(s.subarray(8, 8 + n)));
  edit(h);
  const head = new TextEncoder().encode(JSON.stringify(h));
  const data = s.subarray(8 + n);
  const out = new Uint8Array(8 + head.length + data.length + extraData);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

describe('safetensors', () => {
  let K: Kernels;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    K = await init();
  });
  afterAll(() => K.dispose());

  it('reads the reference F64 weights and round-trips them bit for bit through F32', () => {
    const bytes = new Uint8Array(readFileSync(FIXTURE));
    const meta = parseSafetensors(bytes).metadata;
    const config = JSON.parse(meta.config);
    const a = new ReferenceLM(K, config);
    importWeights(a, bytes);
    const file = exportWeights(a, { config: meta.config });
    const b = new ReferenceLM(K, config);
    expect(importWeights(b, file).config).toBe(meta.config);
    const ref = independentRead(file);
    for (const [[name, va], [, vb]] of a.namedVariables().map((x, i) => [x, b.namedVariables()[i]] as const)) {
      expect(Array.from(vb.dataSync()), name).toEqual(Array.from(va.dataSync()));
      expect(ref[name].dtype).toBe('F32');
      expect(ref[name].shape).toEqual(va.shape);
      expect(ref[name].values, `${name} read independently`).toEqual(Array.from(va.dataSync()));
    }
    a.dispose();
    b.dispose();
  });

  it('refuses a file that does not fit the model', () => {
    const bytes = new Uint8Array(readFileSync(FIXTURE));
    const config = JSON.parse(parseSafetensors(bytes).metadata.config);
    const wider = new ReferenceLM(K, { ...config, ffn: config.ffn * 2 });
    expect(() => importWeights(wider, bytes)).toThrow(/layers\.0\.U_map\.bias must be \[\d+\], the file has \[\d+\]/);
    const deeper = new ReferenceLM(K, { ...config, layers: 3 });
    expect(() => importWeights(deeper, bytes)).toThrow(/missing \[layers\.2\./);
    const shallower = new ReferenceLM(K, { ...config, layers: 1 });
    expect(() => importWeights(shallower, bytes)).toThrow(/unexpected \[layers\.1\./);
    for (const m of [wider, deeper, shallower]) m.dispose();
  });

  const malformed: Array<[string, () => Uint8Array, RegExp]> = [
    ['empty', () => new Uint8Array(3), /shorter than the 8-byte header length/],
    ['truncated data', () => sample().subarray(0, sample().length - 2), /data_offsets \[8, 12\] lie outside the 10-byte data section/],
    ['truncated header', () => sample().subarray(0, 20), /header length \d+ exceeds the file/],
    [
      'header length lies (huge)',
      () => {
        const s = sample();
        new DataView(s.buffer).setBigUint64(0, 2n ** 62n, true);
        return s;
      },
      /header length 4611686018427387904 exceeds/,
    ],
    ['header not JSON', () => withHeader(() => {}).map((x, i) => (i === 8 ? 0x7b + 1 : x)), /header is not valid UTF-8 JSON/],
    ['unknown dtype', () => withHeader((h) => (h.a.dtype = 'F128')), /tensor a: unknown dtype "F128"/],
    ['shape/size mismatch', () => withHeader((h) => (h.a.shape = [3])), /tensor a: shape \[3\] of F32 needs 12 bytes, data_offsets give 8/],
    ['offsets overlap', () => withHeader((h) => (h.b.data_offsets = [4, 8])), /overlap another tensor/],
    ['offsets out of range', () => withHeader((h) => (h.b.data_offsets = [8, 16])), /lie outside the 12-byte data section/],
    ['hole in the data', () => withHeader(() => {}, 4), /data section is 16 bytes but the tensors cover 12/],
    ['negative shape', () => withHeader((h) => (h.a.shape = [-2])), /shape must be a list of non-negative integers/],
    ['non-string metadata', () => withHeader((h) => (h.__metadata__ = { x: 1 })), /__metadata__\.x must be a string/],
  ];
  for (const [name, make, message] of malformed) {
    it(`rejects a malformed file: ${name}`, () => expect(() => parseSafetensors(make())).toThrow(message));
  }

  it('reads what it writes, for every dtype', () => {
    const t = new Map<string, { shape: number[]; data: any }>([
      ['f64', { shape: [2, 1], data: new Float64Array([1.5, -2]) }],
      ['i32', { shape: [3], data: new Int32Array([1, -2, 3]) }],
      ['u8', { shape: [1], data: new Uint8Array([7]) }],
      ['i64', { shape: [1], data: new BigInt64Array([5n]) }],
    ]);
    const back = parseSafetensors(writeSafetensors(t, { k: 'v' }));
    expect(back.metadata).toEqual({ k: 'v' });
    for (const [name, x] of t) {
      expect(back.tensors.get(name)!.shape).toEqual(x.shape);
      expect(Array.from(back.tensors.get(name)!.data as any)).toEqual(Array.from(x.data));
    }
  });
});

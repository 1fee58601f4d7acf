/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend's buffer pool: buffers handed out are counted live until released, released
 * ones are kept by size and usage for reuse up to a byte limit, and uploads / read-backs go
 * through it, so `liveBytes()` is 0 between calls and a leak shows.
 */
import { ArgError } from '../kernels/validate.ts';

export const STORAGE = 0x80; // GPUBufferUsage.STORAGE
export const COPY_SRC = 0x04;
export const COPY_DST = 0x08;
export const MAP_READ = 0x01;
export const UNIFORM = 0x40;
export const IO = STORAGE | COPY_SRC | COPY_DST;

export const align = (x: number, a = 64): number => Math.ceil(x / a) * a;

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly live = new Map<GPUBuffer, number>();
  private pooledBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    /** Bytes of released buffers kept for reuse. */
    private readonly limit: number,
  ) {}

  /** Bytes of buffers handed out and not yet released. */
  liveBytes(): number {
    let n = 0;
    for (const b of this.live.values()) n += b;
    return n;
  }

  liveBuffers(): number {
    return this.live.size;
  }

  /** Live plus pooled bytes. */
  memoryBytes(): number {
    return this.liveBytes() + this.pooledBytes;
  }

  /** A buffer from the pool: sizes round up to 256 bytes, or to 4 when `exact` (hand-overs such as TF.js tensors, which read a buffer whole). */
  acquire(bytes: number, usage: number, label: string, exact = false): GPUBuffer {
    const size = exact ? align(Math.max(bytes, 4), 4) : align(Math.max(bytes, 16), 256);
    const key = `${size}/${usage}`;
    let buf = this.free.get(key)?.pop();
    if (buf) this.pooledBytes -= size;
    else buf = this.device.createBuffer({ size, usage, label });
    this.live.set(buf, size);
    return buf;
  }

  /** Takes back a buffer handed out here: pooled, or destroyed when over the limit or `destroy`. */
  release(buf: GPUBuffer, destroy = false): void {
    const size = this.live.get(buf);
    if (size === undefined) throw new ArgError('release: this buffer was not handed out by this backend (or was released already)');
    this.live.delete(buf);
    if (destroy || this.pooledBytes + size > this.limit) {
      buf.destroy();
      return;
    }
    const key = `${size}/${buf.usage}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buf);
    this.pooledBytes += size;
  }

  /** Destroys every pooled buffer (live ones stay valid until released). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }

  /** Destroys every buffer, pooled or live. */
  destroy(): void {
    this.trim();
    for (const b of this.live.keys()) b.destroy();
    this.live.clear();
  }

  /** A live storage buffer holding `a`. */
  upload(a: Float32Array, label: string): GPUBuffer {
    const buf = this.acquire(a.byteLength, IO, label);
    this.device.queue.writeBuffer(buf, 0, a.buffer, a.byteOffset, a.byteLength);
    return buf;
  }

  /** Reads `words` floats of `buf` from `offsetWords` back to the host. */
  async download(buf: GPUBuffer, words: number, offsetWords = 0): Promise<Float32Array> {
    const bytes = words * 4;
    const staging = this.acquire(bytes, MAP_READ | COPY_DST, 'staging');
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buf, offsetWords * 4, staging, 0, align(bytes, 4));
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(1 /* GPUMapMode.READ */, 0, bytes);
      const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
      staging.unmap();
      return out;
    } finally {
      this.release(staging);
    }
  }
}

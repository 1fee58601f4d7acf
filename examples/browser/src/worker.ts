/**
 * The training worker: TF.js (wasm backend, else cpu), the slim-performer wasm kernels, a
 * PerformerLM and the SLiM trainer. Everything heavy runs here so the page stays responsive.
 *
 * Fine-tuning runs on WebGPU (SlimTrainerWebGPU on the TF.js webgpu backend, the WebGPU kernels on
 * TF.js's device) when `webgpu-check` found a hardware adapter, else on the wasm kernels; the
 * page may also ask for either. Between runs the model and the optimizer state live on the TF.js
 * wasm (or cpu) backend, where loss measurement, generation and checkpoints run: a GPU run moves
 * them to the GPU and, when it ends, back with asynchronous reads (no synchronous GPU read-back).
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import tfWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import tfWasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import tfWasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
// The package's own sources (an app of yours would import 'slim-performer' and 'slim-performer/webgpu').
import { init, randomProjection, Rng, simdSupported, type Kernels } from '../../../src/index.ts';
import { PerformerLM } from '../../../src/model/performer_lm.ts';
import {
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpointFromIndexedDB,
  modelFromCheckpoint,
  optimizerFromCheckpoint,
  SCALAR_SLOTS,
  saveCheckpointToIndexedDB,
  type Checkpoint,
} from '../../../src/train/checkpoint/index.ts';
import { SlimTrainer, type Batch } from '../../../src/train/slim.ts';
import type { WebGPUKernels } from '../../../src/webgpu/kernels.ts';
import kernelsSimdUrl from '../../../wasm/slim_kernels_simd.wasm?url';
import kernelsScalarUrl from '../../../wasm/slim_kernels_scalar.wasm?url';
import type { BackendInfo, Event, MemoryInfo, ModelInfo, Request, TrainedOn, WebGPUInfo } from './protocol.ts';

/** The architecture of the shipped checkpoint (and of "start from scratch"). */
const ARCH = { dModel: 64, heads: 4, layers: 2, ffn: 256, feature: 'favor' as const, features: 16 };
const LR = 3e-3;

let kernels: Kernels | undefined;
let info: BackendInfo | undefined;
let model: PerformerLM | undefined;
let optimizer: tf.Optimizer | undefined;
let modelInfo: ModelInfo | undefined;
let vocab: string[] = [];
let stopRequested = false;
let busy: string | undefined;
/** What `webgpu-check` found (undefined: no adapter, or not checked yet). */
let gpu: { adapter: string; software: boolean } | undefined;
/** WebGPU kernels on TF.js's webgpu device, made by the first GPU training run. */
let gpuKernels: WebGPUKernels | undefined;
const peak: MemoryInfo = { kernelsHeap: 0, kernelsLive: 0, tensorBytes: 0, tfHeap: 0 };

const post = (e: Event) => (self as unknown as Worker).postMessage(e);

// ---------------------------------------------------------------------------------------------
// Errors in plain words

class UserError extends Error {}

function plain(op: string, e: unknown, ctx: { seq?: number; slice?: number } = {}): { message: string; detail?: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const text = `${err.name}: ${err.message}`;
  if (err instanceof UserError) return { message: err.message };
  if (
    /out of memory|cannot allocate|allocation failed|could not allocate|Invalid typed array length|Array buffer allocation|WebAssembly\.Memory|memory access out of bounds|exceeds.*4 GiB|grow/i.test(
      text,
    )
  ) {
    const at = ctx.seq ? ` at sequence length ${ctx.seq}${ctx.slice ? ` with slices of ${ctx.slice}` : ''}` : '';
    return {
      message: `The browser ran out of memory while ${op}${at}. Try a shorter slice length, a smaller batch or a shorter sequence, then try again (reload the page if it keeps failing).`,
      detail: text,
    };
  }
  if (/checkpoint|magic|checksum|truncated/i.test(err.message)) {
    return { message: `This checkpoint cannot be used: ${err.message}.`, detail: text };
  }
  return { message: `Something went wrong while ${op}: ${err.message}`, detail: err.stack ?? text };
}

// ---------------------------------------------------------------------------------------------
// Setup

async function setup(prefer: 'wasm' | 'cpu'): Promise<BackendInfo> {
  let tfReason = `TF.js 'cpu' backend (plain JavaScript), as requested`;
  let tfBackend = 'cpu';
  if (prefer === 'wasm') {
    try {
      setWasmPaths({
        'tfjs-backend-wasm.wasm': tfWasm,
        'tfjs-backend-wasm-simd.wasm': tfWasmSimd,
        'tfjs-backend-wasm-threaded-simd.wasm': tfWasmThreaded,
      });
      // One thread: the slim kernels are single-threaded, and threads need a cross-origin
      // isolated page (SharedArrayBuffer) that a plain static host does not give.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      if (await tf.setBackend('wasm')) {
        tfBackend = 'wasm';
        const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
        tfReason = `TF.js 'wasm' backend (${simd ? 'SIMD' : 'no SIMD'}, one thread)`;
      } else tfReason = `TF.js 'cpu' backend (plain JavaScript): the wasm backend failed to start`;
    } catch (e) {
      tfReason = `TF.js 'cpu' backend (plain JavaScript): the wasm backend failed to load (${(e as Error).message})`;
    }
  }
  if (tfBackend !== 'wasm') await tf.setBackend('cpu');
  await tf.ready();
  const simd = simdSupported();
  kernels = await init({ wasm: simd ? kernelsSimdUrl : kernelsScalarUrl, simd });
  const isolated = (self as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  return {
    tfBackend,
    tfReason,
    kernels: `slim-performer wasm kernels (${kernels.simd ? 'SIMD' : 'scalar, this browser has no WebAssembly SIMD'})`,
    simd: kernels.simd,
    threads: `single thread in a Web Worker: ${isolated ? 'the page is cross-origin isolated, but the kernels and this example run one thread' : 'the page is not cross-origin isolated (no SharedArrayBuffer), so no wasm threads'}`,
    crossOriginIsolated: isolated,
  };
}

async function webgpuCheck(): Promise<WebGPUInfo> {
  const api = (self.navigator as Navigator & { gpu?: GPU }).gpu;
  if (!api) {
    return {
      available: false,
      summary:
        'No WebGPU: this browser does not expose WebGPU (navigator.gpu is missing; in Chrome it needs a secure context and a supported GPU). Training uses the wasm kernels either way.',
    };
  }
  const { findAdapter, WebGPUKernels } = await import('../../../src/webgpu/index.ts');
  const choice = await findAdapter();
  if (!choice)
    return {
      available: false,
      summary:
        'No WebGPU: the browser has the API but offered no GPU adapter (WebGPU switched off, the GPU blocklisted, or no driver). Training uses the wasm kernels either way.',
    };
  const gk = await WebGPUKernels.create({ adapter: choice.adapter });
  try {
    // One causal attention forward on the GPU, compared with the wasm kernels.
    const dims = { b: 1, h: 2, t: 96, d: 16, m: 16, dv: 16 };
    const rng = new Rng(7);
    const rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal() * 0.5);
    const q = rand(dims.b * dims.h * dims.t * dims.d);
    const k = rand(q.length);
    const v = rand(dims.b * dims.h * dims.t * dims.dv);
    const omega = randomProjection({ h: dims.h, m: dims.m, d: dims.d, seed: 3 });
    const args = { q, k, v, dims, feature: 'favor' as const, omega, chunk: 32 };
    const g = await gk.causalForward(args);
    const w = kernels!.causalForward(args);
    let maxDiff = 0;
    for (let i = 0; i < w.out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(g.out[i] - w.out[i]));
    const soft = choice.software ? ' (a software renderer)' : '';
    gpu = { adapter: choice.description, software: choice.software };
    return {
      available: true,
      adapter: choice.description,
      software: choice.software,
      maxDiff,
      trainsOnGpu: !choice.software,
      summary:
        `WebGPU available: ${choice.description}${soft}. Its attention kernel was run once and matches wasm to ${maxDiff.toExponential(1)}. ` +
        (choice.software
          ? 'Fine-tuning stays on the wasm kernels by default (a software renderer is slower); choose WebGPU to try it. '
          : 'Fine-tuning runs on it (SlimTrainerWebGPU). ') +
        'Loss measurement and generation use the wasm kernels.',
    };
  } finally {
    gk.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Model

function memory(): MemoryInfo {
  const m: MemoryInfo = {
    kernelsHeap: kernels?.memoryBytes() ?? 0,
    kernelsLive: kernels?.liveBytes() ?? 0,
    tensorBytes: tf.memory().numBytes,
    tfHeap: (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.length ?? 0,
  };
  for (const k of Object.keys(m) as Array<keyof MemoryInfo>) peak[k] = Math.max(peak[k], m[k]);
  return m;
}

function disposeModel(): void {
  model?.dispose();
  optimizer?.dispose();
  model = undefined;
  optimizer = undefined;
}

function describe(source: string, step: number, meta: Record<string, unknown> = {}): ModelInfo {
  const params = model!.namedVariables().reduce((n: number, [, v]) => n + v.size, 0);
  modelInfo = {
    source,
    vocab: vocab.join(''),
    config: { ...model!.config },
    params,
    step,
    seq: typeof meta.seq === 'number' ? meta.seq : undefined,
    slice: typeof meta.slice === 'number' ? meta.slice : undefined,
  };
  return modelInfo;
}

async function fromCheckpoint(ck: Checkpoint, source: string): Promise<ModelInfo> {
  const v = ck.header.meta?.vocab;
  if (typeof v !== 'string' || [...v].length !== ck.header.config.vocabSize) {
    throw new UserError(
      `This checkpoint cannot be used: it does not carry its character vocabulary (meta.vocab with ${ck.header.config.vocabSize} characters), so text cannot be encoded for it.`,
    );
  }
  const m = await modelFromCheckpoint(ck, kernels!);
  let o: tf.Optimizer | undefined;
  try {
    o = (await optimizerFromCheckpoint(ck, m)) ?? tf.train.adam(LR);
  } catch (e) {
    m.dispose();
    throw e;
  }
  disposeModel();
  model = m;
  optimizer = o;
  vocab = [...v];
  return describe(source, ck.header.step, ck.header.meta);
}

function decodeOrExplain(bytes: Uint8Array, what: string): Checkpoint {
  try {
    return decodeCheckpoint(bytes);
  } catch (e) {
    throw new UserError(`${what} is not a usable checkpoint: ${(e as Error).message}.`);
  }
}

function encode(text: string): { ids: Int32Array; dropped: number } {
  const index = new Map(vocab.map((c, i) => [c, i]));
  const out: number[] = [];
  let dropped = 0;
  for (const c of text) {
    const i = index.get(c);
    if (i === undefined) dropped++;
    else out.push(i);
  }
  return { ids: Int32Array.from(out), dropped };
}

function needModel(): PerformerLM {
  if (!model) throw new UserError('No model yet: load the pretrained checkpoint or start from scratch first.');
  return model;
}

/** Mean next-character cross-entropy over the text's first rows (deterministic), slice by slice. */
function evalLoss(text: string, seq: number, slice: number): number {
  const m = needModel();
  const { ids } = encode(text);
  if (ids.length < 2) throw new UserError('The text has fewer than two characters the model knows.');
  const T = Math.min(seq, ids.length - 1);
  const rows = Math.min(4, Math.floor((ids.length - 1) / T));
  let sum = 0;
  let count = 0;
  for (let r = 0; r < rows; r++) {
    let states = m.emptyStates(1);
    for (let t0 = 0; t0 < T; t0 += slice) {
      const t1 = Math.min(T, t0 + slice);
      const inp = Array.from(ids.subarray(r * T + t0, r * T + t1));
      const tgt = Array.from(ids.subarray(r * T + t0 + 1, r * T + t1 + 1));
      sum += tf.tidy(() => {
        const f = m.forward(tf.tensor2d(inp, [1, inp.length], 'int32'), { offset: t0, states });
        states = f.statesOut;
        const logp = tf.logSoftmax(f.logits.reshape([inp.length, m.config.vocabSize]));
        return -tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(tgt, 'int32'), m.config.vocabSize))).dataSync()[0];
      });
      count += inp.length;
    }
  }
  return sum / count;
}

/** Resolves the run's device; for WebGPU, switches TF.js to its webgpu backend and makes the kernels. */
async function trainDevice(r: Extract<Request, { type: 'train' }>): Promise<TrainedOn & { kernels?: WebGPUKernels }> {
  const want = r.device === 'auto' ? (gpu && !gpu.software ? 'webgpu' : 'wasm') : r.device;
  if (want === 'wasm') {
    const why =
      r.device === 'wasm'
        ? 'as chosen'
        : gpu
          ? `the WebGPU adapter (${gpu.adapter}) is a software renderer, slower than wasm`
          : 'no WebGPU adapter was found (or the check has not finished)';
    return { device: 'wasm', reason: `wasm ${kernels!.simd ? 'SIMD' : 'scalar'} kernels: ${why}` };
  }
  if (!gpu) throw new UserError('No WebGPU adapter was found in this browser: choose the wasm kernels (or "auto").');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu').catch(() => false))) {
    await tf.setBackend(info!.tfBackend);
    throw new UserError('TF.js could not start its webgpu backend in this browser: choose the wasm kernels (or "auto").');
  }
  await tf.ready();
  if (!gpuKernels) {
    const { initWebGPU } = await import('../../../src/webgpu/index.ts');
    const { tfjsWebGPUDevice } = await import('../../../src/tfjs/webgpu_op.ts');
    gpuKernels = await initWebGPU({ device: tfjsWebGPUDevice() });
  }
  return { device: 'webgpu', reason: `WebGPU (${gpu.adapter}): SlimTrainerWebGPU on the TF.js webgpu backend`, kernels: gpuKernels };
}

/**
 * Brings the model's weights and the optimizer's state back from the GPU to the TF.js backend the
 * rest of the page uses, reading them asynchronously (TF.js would otherwise move them later with
 * synchronous GPU reads).
 */
async function backFromGpu(m: PerformerLM, o: tf.Optimizer): Promise<void> {
  const vars = m.namedVariables().map(([, v]) => v);
  const slots = await o.getWeights();
  const scalars = SCALAR_SLOTS.map((k) => (o as unknown as Record<string, unknown>)[k]).filter((v): v is tf.Variable => v instanceof tf.Variable);
  const all = [...vars, ...slots.map((w) => w.tensor), ...scalars];
  const values = await Promise.all(all.map((t) => t.data()));
  await tf.setBackend(info!.tfBackend);
  const fresh = all.map((t, i) => tf.tensor(values[i] as Float32Array, t.shape, t.dtype));
  vars.forEach((v, i) => v.assign(fresh[i]));
  await o.setWeights(slots.map((w, i) => ({ name: w.name, tensor: fresh[vars.length + i] })));
  scalars.forEach((v, i) => v.assign(fresh[vars.length + slots.length + i]));
  tf.dispose([...fresh, ...slots.map((w) => w.tensor)]);
}

async function train(id: number, r: Extract<Request, { type: 'train' }>): Promise<unknown> {
  const m = needModel();
  const { seq: T, slice, batch: B, steps } = r;
  for (const [k, v] of Object.entries({ 'sequence length': T, 'slice length': slice, batch: B, steps })) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new UserError(`The ${k} must be a positive whole number (got ${v}).`);
  }
  if (!(r.lr > 0 && r.lr < 1)) throw new UserError(`The learning rate must lie between 0 and 1 (got ${r.lr}).`);
  const { ids, dropped } = encode(r.text);
  if (ids.length < T + 2) {
    throw new UserError(
      `The text is too short for sequence length ${T}: it has ${ids.length} characters the model knows${dropped ? ` (${dropped} others were skipped)` : ''}, and ${T + 2} are needed. Paste a longer text or choose a shorter sequence length.`,
    );
  }
  if (optimizer instanceof tf.AdamOptimizer) (optimizer as unknown as { learningRate: number }).learningRate = r.lr;
  const on = await trainDevice(r);
  try {
    return await trainOn(id, r, m, ids, dropped, on);
  } finally {
    if (on.kernels) await backFromGpu(m, optimizer!);
  }
}

async function trainOn(
  id: number,
  r: Extract<Request, { type: 'train' }>,
  m: PerformerLM,
  ids: Int32Array,
  dropped: number,
  on: TrainedOn & { kernels?: WebGPUKernels },
): Promise<unknown> {
  const { seq: T, slice, batch: B, steps } = r;
  const options = { sliceLength: slice, optimizer: optimizer!, clipNorm: 1 };
  const trainer = on.kernels ? new (await import('../../../src/train/slim_webgpu.ts')).SlimTrainerWebGPU(m, on.kernels, options) : new SlimTrainer(m, options);
  const rng = new Rng(modelInfo!.step + 1);
  stopRequested = false;
  const losses: number[] = [];
  const t0 = performance.now();
  let tokens = 0;
  for (let step = 1; step <= steps && !stopRequested; step++) {
    const tokensArr = new Int32Array(B * (T + 1));
    for (let b = 0; b < B; b++) {
      const at = Math.floor(rng.nextFloat() * (ids.length - T - 1));
      tokensArr.set(ids.subarray(at, at + T + 1), b * (T + 1));
    }
    const ts = performance.now();
    const res = await trainer.step({ tokens: tokensArr, batch: B } satisfies Batch);
    const dt = performance.now() - ts;
    tokens += B * T;
    losses.push(res.loss);
    modelInfo!.step++;
    post({
      id,
      type: 'progress',
      step,
      steps,
      loss: res.loss,
      tokPerSec: tokens / ((performance.now() - t0) / 1000),
      msPerStep: dt,
      memory: memory(),
      dropped,
      device: on.device,
    });
    // Let 'stop' (and other messages) in between steps.
    await new Promise((res) => setTimeout(res, 0));
  }
  const trainedOn: TrainedOn = { device: on.device, reason: on.reason };
  return { losses, stopped: stopRequested, seconds: (performance.now() - t0) / 1000, peak: { ...peak }, model: modelInfo, trainedOn };
}

/**
 * One SLiM step over a long sequence (a million tokens fits: memory follows the slice length):
 * the text repeated to `tokens` characters, or random characters. Slice progress is posted.
 */
function longStep(id: number, r: Extract<Request, { type: 'long-step' }>): unknown {
  const m = needModel();
  const { tokens: T, slice } = r;
  for (const [k, v] of Object.entries({ 'number of tokens': T, 'slice length': slice })) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new UserError(`The ${k} must be a positive whole number (got ${v}).`);
  }
  if (T > 16_777_216) throw new UserError(`At most 16 777 216 tokens in one step here (got ${T}).`);
  const ids = new Int32Array(T + 1);
  let dropped = 0;
  if (r.source === 'text') {
    const enc = encode(r.text);
    dropped = enc.dropped;
    if (enc.ids.length < 2) throw new UserError('The text has fewer than two characters the model knows: paste a text or choose random characters.');
    for (let i = 0; i <= T; i++) ids[i] = enc.ids[i % enc.ids.length];
  } else {
    const rng = new Rng(T);
    for (let i = 0; i <= T; i++) ids[i] = rng.nextU32() % m.config.vocabSize;
  }
  let lastPost = 0;
  const onSlice = (pass: 1 | 2, done: number, total: number) => {
    const now = performance.now();
    if (now - lastPost < 100 && done !== total) return; // at most ~10 messages a second
    lastPost = now;
    post({ id, type: 'slice-progress', pass, done, total, memory: memory() });
  };
  const trainer = new SlimTrainer(m, { sliceLength: slice, optimizer: optimizer!, clipNorm: 1, onSlice });
  const t0 = performance.now();
  const res = trainer.step({ tokens: ids, batch: 1 } satisfies Batch);
  modelInfo!.step++;
  const seconds = (performance.now() - t0) / 1000;
  return { loss: res.loss, tokens: T, slice, seconds, tokPerSec: T / seconds, memory: memory(), peak: { ...peak }, dropped, model: modelInfo };
}

function generate(id: number, r: Extract<Request, { type: 'generate' }>): unknown {
  const m = needModel();
  const { ids, dropped } = encode(r.prompt);
  if (ids.length === 0) throw new UserError('The prompt has no characters the model knows: type a few ordinary letters.');
  if (!Number.isSafeInteger(r.tokens) || r.tokens <= 0 || r.tokens > 5000)
    throw new UserError('The number of characters to generate must be between 1 and 5000.');
  const t0 = performance.now();
  let text = '';
  m.generate(Array.from(ids), {
    maxNewTokens: r.tokens,
    temperature: r.temperature,
    topK: r.topK,
    seed: r.seed,
    onToken: (t: number) => {
      text += vocab[t];
      post({ id, type: 'token', text: vocab[t] });
    },
  });
  return { text, dropped, tokPerSec: r.tokens / ((performance.now() - t0) / 1000), memory: memory() };
}

async function handle(id: number, r: Request): Promise<unknown> {
  switch (r.type) {
    case 'init':
      info = await setup(r.tfBackend);
      return info;
    case 'webgpu-check':
      return webgpuCheck();
    case 'load-url': {
      let res: Response;
      try {
        res = await fetch(r.url);
      } catch (e) {
        throw new UserError(`The pretrained checkpoint could not be downloaded (${(e as Error).message}).`);
      }
      if (!res.ok) throw new UserError(`The pretrained checkpoint could not be downloaded: the server answered HTTP ${res.status}.`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      return fromCheckpoint(decodeOrExplain(bytes, 'The pretrained file'), 'pretrained checkpoint (trained with npm start)');
    }
    case 'load-bytes':
      return fromCheckpoint(decodeOrExplain(new Uint8Array(r.bytes), `The file "${r.name}"`), `file ${r.name}`);
    case 'scratch': {
      const chars = [...new Set(r.text)].sort();
      if (chars.length < 2) throw new UserError('Paste some text first: the new model takes its character vocabulary from the training text.');
      const m = new PerformerLM(kernels!, { vocabSize: chars.length, ...ARCH, seed: r.seed });
      disposeModel();
      model = m;
      optimizer = tf.train.adam(LR);
      vocab = chars;
      return describe('new model (random weights)', 0);
    }
    case 'train':
      return train(id, r);
    case 'long-step':
      return longStep(id, r);
    case 'stop':
      stopRequested = true;
      return undefined;
    case 'eval':
      return { loss: evalLoss(r.text, r.seq, r.slice) };
    case 'generate':
      return generate(id, r);
    case 'save-idb': {
      const bytes = await encodeCheckpoint(needModel(), optimizer, {
        step: modelInfo!.step,
        meta: { vocab: vocab.join(''), source: 'browser example', base: modelInfo!.source },
      });
      await saveCheckpointToIndexedDB(r.key, bytes);
      return { bytes: bytes.length };
    }
    case 'restore-idb': {
      let ck: Checkpoint;
      try {
        ck = await loadCheckpointFromIndexedDB(r.key);
      } catch (e) {
        if (/no checkpoint stored/.test((e as Error).message)) throw new UserError('Nothing saved yet in this browser: press "Save" after training first.');
        throw new UserError(`The saved weights in this browser cannot be used: ${(e as Error).message}.`);
      }
      return fromCheckpoint(ck, `restored from this browser's storage (IndexedDB "${r.key}")`);
    }
    case 'export': {
      const bytes = await encodeCheckpoint(needModel(), optimizer, {
        step: modelInfo!.step,
        meta: { vocab: vocab.join(''), source: 'browser example', base: modelInfo!.source },
      });
      return bytes.buffer;
    }
  }
}

const OPS: Record<Request['type'], string> = {
  init: 'starting the kernels',
  'webgpu-check': 'checking WebGPU',
  'load-url': 'loading the pretrained checkpoint',
  'load-bytes': 'loading the checkpoint file',
  scratch: 'creating a new model',
  train: 'fine-tuning',
  'long-step': 'running one long SLiM step',
  stop: 'stopping',
  eval: 'measuring the loss',
  generate: 'generating text',
  'save-idb': 'saving the weights',
  'restore-idb': 'restoring the saved weights',
  export: 'preparing the download',
};

self.onmessage = async (ev: MessageEvent<{ id: number; req: Request }>) => {
  const { id, req } = ev.data;
  if (req.type !== 'stop' && req.type !== 'webgpu-check' && busy) {
    post({ id, type: 'error', message: `Please wait: the worker is still ${busy}.` });
    return;
  }
  const track = req.type !== 'stop' && req.type !== 'webgpu-check';
  if (track) busy = OPS[req.type];
  try {
    const result = await handle(id, req);
    if (result instanceof ArrayBuffer) (self as unknown as Worker).postMessage({ id, type: 'done', result } satisfies Event, [result]);
    else post({ id, type: 'done', result });
  } catch (e) {
    const ctx = req.type === 'train' ? { seq: req.seq, slice: req.slice } : req.type === 'long-step' ? { seq: req.tokens, slice: req.slice } : {};
    post({ id, type: 'error', ...plain(OPS[req.type], e, ctx) });
  } finally {
    if (track) busy = undefined;
  }
};

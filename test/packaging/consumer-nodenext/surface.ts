/**
 * What README.md's prose promises a user, by name and type, checked against the packed
 * package (never run: type-checked only, by the `readme-types` scenario of test/packaging/run.ts).
 */
import * as tf from '@tensorflow/tfjs';
import {
  ArgError,
  FeatureRedraw,
  emptyState,
  headProjection,
  init,
  randomProjection,
  type AttnState,
  type CallStats,
  type CausalGrads,
  type Dims,
  type FeatureMap,
  type Kernels,
  type StateGrad,
  type WasmSource,
} from 'slim-performer';
import { init as initInline, wasmInlined } from 'slim-performer/inline';
import { createPool, type KernelPool, type PoolInfo } from 'slim-performer/parallel';
import {
  createKernels,
  fromGpuState,
  gpuStateWords,
  initWebGPU,
  toGpuState,
  WebGPUError,
  type KernelChoice,
  type WebGPUKernels,
} from 'slim-performer/webgpu';
import {
  PerformerAttention,
  PerformerBlock,
  PerformerLM,
  ReferenceLM,
  SlimTrainer,
  SlimTrainerWebGPU,
  dense,
  exportWeights,
  fullGradients,
  gelu,
  importWeights,
  layerNorm,
  performerAttention,
  performerAttentionWebGPU,
  setKernels,
  slimGradients,
  slimGradientsWebGPU,
  tfjsWebGPUDevice,
  type Batch,
  type Gradients,
} from 'slim-performer/tfjs';

export async function kernelApi(wasmUrl: URL, wasmPath: string, bytes: Uint8Array, res: Response, mod: WebAssembly.Module): Promise<void> {
  // "`init({ simd: false })` forces the scalar binary; `init({ wasm })` takes a URL, a path, bytes, a `Response` or a compiled `WebAssembly.Module`"
  const sources: WasmSource[] = [wasmUrl, wasmPath, bytes, bytes.buffer as ArrayBuffer, res, mod];
  const kernels: Kernels = await init({ simd: false, wasm: wasmUrl });
  void sources;
  const dims: Dims = { b: 1, h: 2, t: 8, d: 4, m: 4, dv: 4 };
  const x = new Float32Array(dims.b * dims.h * dims.t * dims.d);
  // "`feature`: 'favor' …, 'relu', 'elu1', 'sqr'"
  const features: FeatureMap[] = ['favor', 'relu', 'elu1', 'sqr'];
  // @ts-expect-error: not a feature map
  const notAFeature: FeatureMap = 'softmax';
  // "A state is { S: Float64Array [b,h,m,dv], z: Float64Array [b,h,m], offset: Float64Array [b,h] }"
  const empty: AttnState = emptyState(dims, 'favor');
  const { S, z, offset }: { S: Float64Array; z: Float64Array; offset: Float64Array } = empty;
  // "randomProjection/headProjection (seeded block-orthogonal Gaussian features, row norms 'chi' or 'sqrt-d')"
  const omega: Float32Array = randomProjection({ h: dims.h, m: dims.m, d: dims.d, seed: 1, norms: 'sqrt-d' });
  const head: Float32Array = headProjection({ m: dims.m, d: dims.d, seed: 1, head: 0, norms: 'chi' });
  const redraw = new FeatureRedraw({ h: dims.h, m: dims.m, d: dims.d, seed: 1, every: 100 });

  // The table: every call, its inputs and outputs.
  const fwd: { out: Float32Array; state: AttnState } = kernels.causalForward({ q: x, k: x, v: x, dims, feature: 'favor', omega, chunk: 64, state: empty });
  const grads: CausalGrads = kernels.causalBackward({ q: x, k: x, v: x, dims, feature: 'favor', omega, stateIn: empty, stateOut: fwd.state, out: fwd.out, dOut: x });
  const dState: StateGrad = grads.dState;
  const { dq, dk, dv }: { dq: Float32Array; dk: Float32Array; dv: Float32Array } = grads;
  const ff = kernels.causalForwardFeatures({ phiQ: x, phiK: x, v: x, dims });
  const fb = kernels.causalBackwardFeatures({ phiQ: x, phiK: x, v: x, dims, stateOut: ff.state, dOut: x });
  const { dPhiQ, dPhiK }: { dPhiQ: Float32Array; dPhiK: Float32Array } = fb;
  const bi: Float32Array = kernels.bidirectionalForward({ q: x, k: x, v: x, dims, feature: 'relu' }).out;
  const bg: { dq: Float32Array; dk: Float32Array; dv: Float32Array } = kernels.bidirectionalBackward({ q: x, k: x, v: x, dims, feature: 'relu', dOut: x });
  const step: { out: Float32Array; state: AttnState } = kernels.recurrentStep({ q: x, k: x, v: x, dims, feature: 'relu', state: emptyState(dims, 'relu') });
  const back: AttnState = kernels.causalUnroll({ k: x, v: x, dims, feature: 'favor', omega, stateOut: fwd.state, offsetIn: empty.offset });
  // "kernels.liveBytes() and kernels.memoryBytes() expose the wasm heap, kernels.lastCall() the bytes the last call copied and the scratch it needed"
  const heap: number = kernels.liveBytes() + kernels.memoryBytes();
  const last: CallStats = kernels.lastCall();
  const copied: number = last.ioBytes + last.scratchBytes;
  // "throws an `ArgError` naming the argument"
  const err: Error = new ArgError('q');
  kernels.dispose();

  // ./inline (both binaries as base64) and ./parallel (a worker pool over heads)
  const inlined: boolean = wasmInlined;
  const k2: Kernels = await initInline();
  const pool: KernelPool = await createPool({ threads: 2 });
  const info: PoolInfo = pool.info;
  const pooled: { out: Float32Array; state: AttnState } = await pool.causalForward({ q: x, k: x, v: x, dims, feature: 'relu' });
  await pool.dispose();
  void [features, notAFeature, S, z, offset, head, redraw, dState, dq, dk, dv, dPhiQ, dPhiK, bi, bg, step, back, heap, copied, err, inlined, k2, info, pooled];
}

export async function webgpu(dims: Dims, q: Float32Array, omega: Float32Array): Promise<void> {
  // "the same calls and arguments as the wasm kernels, returning Promises"
  const K: WebGPUKernels = await initWebGPU({ chunkParallel: false, windowBytes: 1 << 24 });
  const r: { out: Float32Array; state: AttnState } = await K.causalForward({ q, k: q, v: q, dims, feature: 'favor', omega });
  const g: CausalGrads = await K.causalBackward({ q, k: q, v: q, dims, feature: 'favor', omega, stateOut: r.state, dOut: q });
  // "`await K.flush()`. `await K.prepare()`"
  await K.prepare();
  await K.flush();
  const choice: KernelChoice = await createKernels({ backend: 'auto', dims });
  const backend: 'wasm' | 'webgpu' = choice.backend;
  const reason: string = choice.reason;
  // "a tensor [b·h, gpuStateWords(m, dv)] … toGpuState / fromGpuState convert from and to the float64 states"
  const words: number = gpuStateWords(dims.m, dims.dv);
  const raw: Float32Array = toGpuState(r.state, dims);
  const back: AttnState = fromGpuState(raw, dims, 'favor');
  const e: Error = new WebGPUError('x');
  K.dispose();
  void [g, backend, reason, words, back, e];
}

export async function tfjs(kernels: Kernels, q: tf.Tensor4D, omega: Float32Array, tokens: Int32Array, prompt: number[]): Promise<void> {
  // "performerAttention(q, k, v, {kernels, feature, omega, causal, state, stateGrad})"
  const a = performerAttention(q, q, q, { kernels, feature: 'favor', omega, causal: true, state: emptyState({ b: 1, h: 4, m: 4, dv: 4 }, 'favor'), stateGrad: { onInput: (g: StateGrad) => void g } });
  const out: tf.Tensor4D = a.out;
  const st: AttnState | undefined = a.state;
  // "dense(x, w, b, { transposeW })", "gelu, layerNorm"
  const y: tf.Tensor = layerNorm(gelu(dense(q, q, undefined, { transposeW: true })), q, q);
  // "new SlimTrainer(model, { sliceLength, onSlice })", "mode: 'full'"
  const model = new PerformerLM(kernels, { vocabSize: 96, dModel: 128, heads: 4, layers: 2, ffn: 512, feature: 'favor' });
  const trainer = new SlimTrainer(model, { sliceLength: 256, clipNorm: 1, mode: 'full', onSlice: (pass: 1 | 2, done: number, total: number) => void [pass, done, total] });
  const batch: Batch = { tokens, batch: 1, mask: new Uint8Array(tokens.length) };
  const s: { loss: number; tokens: number; gradNorm: number } = trainer.step(batch);
  const gs: Gradients = slimGradients(model, batch, 7);
  const gf: Gradients = fullGradients(model, batch);
  const ids: number[] = model.generate(prompt, { maxNewTokens: 200, temperature: 0.8, topK: 20, seed: 1 });
  // "ReferenceLM … safetensors (exportWeights / importWeights)"
  const ref = new ReferenceLM(kernels, { vocab: 96, hidden: 128, layers: 2, ffn: 512, heads: 2, feature: 'favor+', gptln: true });
  const bytes: Uint8Array = exportWeights(ref);
  const meta: Record<string, string> = importWeights(model, bytes);
  // Layers: "PerformerAttention / PerformerBlock layers"
  const layers: tf.layers.Layer[] = [new PerformerAttention({ heads: 4, feature: 'relu' }), new PerformerBlock({ heads: 4, ffn: 512, feature: 'relu' })];
  void [out, st, y, s, gs, gf, ids, meta, layers];
}

export async function tfjsWebGPU(model: PerformerLM, q: tf.Tensor4D, omega: Float32Array, batch: Batch, prompt: number[]): Promise<void> {
  const K = await initWebGPU({ device: tfjsWebGPUDevice() });
  const first = performerAttentionWebGPU(q, q, q, { kernels: K, feature: 'favor', omega, causal: true });
  const state: tf.Tensor2D | undefined = first.state;
  const next: tf.Tensor4D = performerAttentionWebGPU(q, q, q, { kernels: K, feature: 'favor', omega, causal: true, state }).out;
  setKernels(K);
  // "new SlimTrainerWebGPU(model, K, { sliceLength }) and await trainer.step(batch) (or await slimGradientsWebGPU(model, K, batch, sliceLength))"
  const trainer = new SlimTrainerWebGPU(model, K, { sliceLength: 256 });
  const s: { loss: number; tokens: number; gradNorm: number } = await trainer.step(batch);
  const g: Gradients = await slimGradientsWebGPU(model, K, batch, 256);
  // "await model.generateWebGPU(prompt, { kernels: K, maxNewTokens })"
  const ids: number[] = await model.generateWebGPU(prompt, { kernels: K, maxNewTokens: 10 });
  void [next, s, g, ids];
}

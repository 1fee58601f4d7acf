/**
 * ours-relaxed / ours-simd / ours-scalar: the library's fused chunked kernels (src/index.ts →
 * wasm, one per binary), FAVOR+ features, chunk C = 64. A fresh kernel instance per case.
 * Timed calls: causalForward (fwd); causalForward + causalBackward (fwd+bwd), JS arrays in/out.
 * Peak memory: wasm memory growth during the first call on a fresh instance (memoryBytes() is a
 * high-water mark) + the JS-side result arrays.
 */
import type { BenchCase, Inputs, Measured, Method, Mode } from '../harness/types.ts';
import { typedBytes } from '../harness/memory.ts';

export const CHUNK = 64;

import { BINARY_LABEL, init, relaxedSimdSupported, type Kernels, type SimdOption } from '../../src/index.ts';

interface CallArgs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dims: { b: number; h: number; t: number; d: number; m: number; dv: number };
  feature: 'favor';
  omega: Float32Array;
  chunk: number;
}

interface Ctx {
  c: BenchCase;
  x: Inputs;
  kern: Kernels;
  args: CallArgs;
}

function argsOf(c: BenchCase, x: Inputs): CallArgs {
  const dims = { b: c.b, h: c.h, t: c.t, d: c.d, m: c.m, dv: c.dv };
  return { q: x.q, k: x.k, v: x.v, dims, feature: 'favor', omega: x.omega, chunk: CHUNK };
}

/** Forward then backward (given the forward's output, as autograd keeps it). */
function fwdbwdOn(kern: Kernels, args: CallArgs, dOut: Float32Array) {
  const f = kern.causalForward(args);
  const fwdScratch = kern.lastCall().scratchBytes;
  const g = kern.causalBackward({ ...args, stateOut: f.state, out: f.out, dOut });
  return { f, g, scratchBytes: Math.max(fwdScratch, kern.lastCall().scratchBytes) };
}

/** JS-side bytes of a result, not counting views onto the wasm memory itself. */
function jsBytes(kern: Kernels, r: unknown): number {
  const wasmSize = kern.memoryBytes();
  const views: ArrayBufferView[] = [];
  const walk = (x: unknown) => {
    if (x == null || typeof x !== 'object') return;
    if (ArrayBuffer.isView(x)) return void views.push(x);
    Object.values(x).forEach(walk);
  };
  walk(r);
  return views.filter((v) => v.buffer.byteLength !== wasmSize).reduce((n, v) => n + typedBytes(v), 0);
}

/**
 * Flops of the chunked algorithm per (b,h), matmul terms only (2 per multiply-add), chunk C:
 * forward  = 2·2·T·M·d (φq, φk projections)
 *          + Σ_chunks [2C²M (ΦQΦKᵀ) + 2C²D (AV) + 2CMD (ΦQ S) + 2CMD (state update ΦK_wᵀV)]
 * backward (crate/src/linear_attn/README.md, "Chunking"), given the forward's out =
 *            2·T·M·d (key pre-scan for the chunk offsets, FAVOR+)
 *          + Σ_chunks [ 2·2CMd (re-project q, k) + 2·2CMd (ωᵀ∂ℓ for q, k)
 *                     + 2CMD (ΦK_wᵀV to undo the state) + 2C²M (A)
 *                     + 2C²D (E = GN Vᵀ) + 2CMD (GN S_inᵀ) + 2C²M (E ΦK)
 *                     + 2CMD (V Gᵀ) + 2C²M (Eᵀ ΦQ) + 2CMD (ΦK G) + 2C²D (Aᵀ GN) + 2CMD (ΦQᵀ GN) ]
 * (full squares counted, although the kernels skip the masked halves);
 * ≈ 2.3× forward at M = 128, d = D = 64; fwd+bwd = forward + backward.
 */
export function chunkedFlops(c: BenchCase, mode: Mode, C = CHUNK): number {
  const { t: T, d, m: M, dv: D } = c;
  let fwd = 2 * 2 * T * M * d;
  let bwd = 2 * T * M * d;
  for (let s = 0; s < T; s += C) {
    const n = Math.min(C, T - s); // tokens in this chunk
    fwd += 2 * n * n * M + 2 * n * n * D + 2 * n * M * D + 2 * n * M * D;
    bwd += 4 * n * M * d + 4 * n * M * d + 3 * (2 * n * n * M) + 2 * (2 * n * n * D) + 5 * (2 * n * M * D);
  }
  return c.b * c.h * (mode === 'fwd' ? fwd : fwd + bwd);
}

function makeOurs(name: string, simd: SimdOption): Method<Ctx> {
  const label = BINARY_LABEL[simd === 'relaxed' ? 'relaxed' : simd ? 'simd' : 'scalar'];
  const unsupported = () => (simd === 'relaxed' && !relaxedSimdSupported() ? 'this engine has no WebAssembly relaxed SIMD (Node 21+, Chrome 114+)' : null);
  return {
    name,
    about: `slim-performer fused chunked kernels (${label} wasm), FAVOR+, C = ${CHUNK}`,
    reference: 'linear',
    dependsOnM: true,
    modes: ['fwd', 'fwdbwd'],
    async init() {
      if (unsupported()) return;
      const k = await init({ simd });
      k.dispose();
    },
    supports: () => unsupported() ?? true,
    async setup(c, x) {
      const kern = await init({ simd });
      return { c, x, kern, args: argsOf(c, x) };
    },
    fwd: (ctx) => ctx.kern.causalForward(ctx.args).out,
    fwdbwd: (ctx) => fwdbwdOn(ctx.kern, ctx.args, ctx.x.dOut),
    async measure(ctx, mode): Promise<Measured> {
      // fwd: the first call on the case's fresh instance. fwd+bwd: a second fresh instance.
      const kern = mode === 'fwd' ? ctx.kern : await init({ simd });
      try {
        const before = kern.memoryBytes();
        const t0 = performance.now();
        const r = mode === 'fwd' ? kern.causalForward(ctx.args) : fwdbwdOn(kern, ctx.args, ctx.x.dOut);
        const ms = performance.now() - t0;
        const growth = kern.memoryBytes() - before;
        const js = jsBytes(kern, r);
        const scratchBytes = 'scratchBytes' in r ? r.scratchBytes : kern.lastCall().scratchBytes;
        return {
          peakBytes: growth + js,
          ms,
          warmed: mode === 'fwd',
          detail: { wasmGrowthBytes: growth, jsResultBytes: js, wasmBytes: kern.memoryBytes(), scratchBytes },
        };
      } finally {
        if (kern !== ctx.kern) kern.dispose();
      }
    },
    flops: (c, mode) => chunkedFlops(c, mode),
    dispose: (ctx) => ctx.kern.dispose(),
  };
}

export const oursRelaxed = makeOurs('ours-relaxed', 'relaxed');
export const oursSimd = makeOurs('ours-simd', true);
export const oursScalar = makeOurs('ours-scalar', false);

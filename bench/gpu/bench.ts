/**
 * WebGPU kernel benchmark: fused causal forward and forward + backward on GPUBuffers (no host
 * copies of the T-sized tensors inside the timed region), GFLOP/s and GB/s. Bundled by
 * bench/gpu/build.sh into bench/gpu/dist/bench.mjs (only `webgpu` external) for the lent GPU
 * machine; see bench/gpu/README.md.
 *
 *   node bench/gpu/dist/bench.mjs [--bh=32 --t=65536 --d=64 --m=128 --dv=64 --chunk=64
 *        --feature=favor --reps=3 --wg=64,256 --schedules=chunk-parallel,per-slice
 *        --products=tiled,plain --budget-s=420 --window-mb=1024 --backend=vulkan --out=DIR]
 *
 * Every (schedule, products, workgroup size) triple is one configuration (schedules: the causal
 * kernels' `chunkParallel` true / false; products: the `tiled` option, shaders/tile.wgsl, or
 * the plain loops). Before timing, each configuration is checked against the float64 reference
 * on a small problem (B·H = 2, T = 300, C = 64, several chunks; max error / max |ref| over
 * out, dq, dk, dv), since no GPU has run these shaders before. Configurations stop being
 * started once `--budget-s` seconds have passed, and the skipped ones are listed. `--window-mb`:
 * the chunk-parallel kernels' `windowBytes` (library default 256 MiB; more chunks per window
 * means more workgroups per dispatch: at B·H = 32, M = 128, 1 GiB gives ~90 chunks).
 *
 * Flop model (per token, "useful" work of the chunked algorithm): forward
 * 2·2·m·d (q, k projections) + 2·C·m (scores, avg C/2 causal… counted full) + 2·C·dv (A·V)
 * + 2·m·dv (ΦQ·S) + 2·m·dv (state update); the backward is counted as 2× the forward
 * (the standard convention), so forward + backward = 3× forward.
 * Bytes: forward reads q, k, v and writes out; backward reads q, k, v, dOut, writes dq, dk, dv.
 */
import { randomProjection } from '../../src/features/index.ts';
import type { FeatureMap } from '../../src/kernels/types.ts';
import { refCausalBackward, refCausalForward } from '../../src/reference/index.ts';
import { initWebGPU, type WebGPUKernels } from '../../src/webgpu/kernels.ts';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? '1'];
  }),
);
const num = (k: string, d: number) => (args[k] !== undefined ? Number(args[k]) : d);
const bh = num('bh', 32);
const t = num('t', 65_536);
const d = num('d', 64);
const m = num('m', 128);
const dv = num('dv', 64);
const chunk = num('chunk', 64);
const reps = num('reps', 3);
const wgs = (args.wg ?? '64,256').split(',').map(Number);
const schedules = (args.schedules ?? 'chunk-parallel,per-slice').split(',');
const products = (args.products ?? 'tiled,plain').split(',');
const budgetMs = num('budget-s', 420) * 1000;
const windowBytes = num('window-mb', 1024) * 2 ** 20;
const feature = (args.feature ?? 'favor') as FeatureMap;
const backend = args.backend ?? process.env.SLIM_WEBGPU_BACKEND ?? 'vulkan';
const outDir = args.out ?? process.env.OUT;

async function main() {
  const t0 = performance.now();
  const K0: WebGPUKernels = await initWebGPU({ nodeBackends: backend.split(','), powerPreference: 'high-performance' });
  const dev = K0.device;
  const maxWg = dev.limits.maxComputeInvocationsPerWorkgroup;
  const info = {
    adapter: K0.description,
    limits: {
      maxStorageBufferBindingSize: dev.limits.maxStorageBufferBindingSize,
      maxBufferSize: dev.limits.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: maxWg,
    },
  };
  console.log(`adapter: ${info.adapter}; init ${(performance.now() - t0).toFixed(0)} ms`);
  const dims = { b: 1, h: bh, t, d, m, dv };
  const omega = feature === 'favor' || m !== d ? randomProjection({ h: bh, m, d, seed: 7 }) : undefined;
  // Inputs are generated on the GPU side by a host fill, in slices (bounded host memory).
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const make = (n: number, scale: number, seed: number) => {
    const buf = dev.createBuffer({ size: n * 4, usage });
    const step = 1 << 22;
    let s = seed >>> 0;
    for (let o = 0; o < n; o += step) {
      const a = new Float32Array(Math.min(step, n - o));
      for (let i = 0; i < a.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        a[i] = scale * ((s / 4294967296) * 2 - 1);
      }
      dev.queue.writeBuffer(buf, o * 4, a.buffer, 0, a.byteLength);
    }
    return buf;
  };
  const nq = bh * t * d;
  const nv = bh * t * dv;
  const q = make(nq, 1, 1);
  const k = make(nq, 1, 2);
  const v = make(nv, 1, 3);
  const g = make(nv, 1, 4);
  await dev.queue.onSubmittedWorkDone();
  const perTok = 4 * m * d + 2 * chunk * (m + dv) + 4 * m * dv;
  const fwdFlops = bh * t * perTok;
  const fwdBytes = 4 * bh * t * (2 * d + 2 * dv);
  const bwdBytes = 4 * bh * t * (4 * d + 3 * dv);
  const rows: Array<Record<string, unknown>> = [];
  const finite = async (buf: GPUBuffer, n: number) => {
    const st = dev.createBuffer({ size: Math.min(n, 1 << 20) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = dev.createCommandEncoder();
    enc.copyBufferToBuffer(buf, (n - Math.min(n, 1 << 20)) * 4, st, 0, Math.min(n, 1 << 20) * 4);
    dev.queue.submit([enc.finish()]);
    await st.mapAsync(GPUMapMode.READ);
    const a = new Float32Array(st.getMappedRange().slice(0));
    st.destroy();
    return a.every(Number.isFinite);
  };
  const skipped: string[] = [];
  const configs = schedules.flatMap((schedule) => products.flatMap((prod) => wgs.filter((w) => w <= maxWg).map((wg) => ({ schedule, prod, wg }))));
  for (const { schedule, prod, wg } of configs) {
    if (performance.now() - t0 > budgetMs) {
      skipped.push(`${schedule}/${prod}/wg=${wg}`);
      continue;
    }
    const K = await initWebGPU({ device: dev, workgroupSize: wg, chunkParallel: schedule === 'chunk-parallel', windowBytes, tiled: prod === 'tiled' });
    const relErr = await check(K);
    for (const what of ['forward', 'forward+backward'] as const) {
      const times: number[] = [];
      let ok = true;
      let error: string | undefined;
      for (let r = 0; r <= reps; r++) {
        try {
          const s = performance.now();
          const f = await K.causalForwardGPU({ q, k, v, dims, feature, omega, chunk });
          let grads: { dq: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer } | undefined;
          if (what === 'forward+backward') grads = await K.causalBackwardGPU({ q, k, v, dOut: g, dims, feature, omega, chunk, stateOut: f.state });
          const ms = performance.now() - s;
          if (r > 0) times.push(ms);
          if (r === reps) ok = relErr <= 1e-4 && (await finite(f.out, nv)) && (!grads || (await finite(grads.dq, nq)));
          K.release(f.out);
          if (grads) for (const b of [grads.dq, grads.dk, grads.dv]) K.release(b);
        } catch (e) {
          ok = false;
          error = (e as Error).message;
          break;
        }
      }
      const best = times.length ? Math.min(...times) : NaN;
      const flops = what === 'forward' ? fwdFlops : 3 * fwdFlops;
      const bytes = what === 'forward' ? fwdBytes : fwdBytes + bwdBytes;
      rows.push({
        schedule,
        products: prod,
        wg: K.workgroupSize,
        relErr,
        what,
        ok,
        error,
        bestMs: best,
        medianMs: times.sort((a, b) => a - b)[times.length >> 1],
        gflops: flops / best / 1e6,
        gbps: bytes / best / 1e6,
        dispatches: K.lastSteps,
      });
    }
    K.dispose();
  }
  for (const b of [q, k, v, g]) b.destroy();
  K0.dispose();
  const result = {
    date: new Date().toISOString(),
    info,
    windowBytes,
    dims: { bh, t, d, m, dv, chunk, feature },
    flopModel: `forward ${perTok} flop/token; forward+backward = 3x`,
    rows,
    skipped,
  };
  if (outDir) {
    const fs = await import('node:fs');
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(`${outDir}/webgpu-bench.json`, JSON.stringify(result, null, 2));
  }
  console.log(`\nB·H=${bh} T=${t} d=${d} M=${m} D=${dv} C=${chunk} ${feature}`);
  console.log('schedule        products  wg   what               ok     best ms    GFLOP/s     GB/s  dispatches  check err');
  for (const r of rows) {
    console.log(
      `${String(r.schedule).padEnd(15)} ${String(r.products).padEnd(8)} ${String(r.wg).padStart(3)}  ${String(r.what).padEnd(18)} ${String(r.ok).padEnd(5)} ${Number(r.bestMs).toFixed(1).padStart(10)} ${Number(r.gflops).toPrecision(4).padStart(10)} ${Number(r.gbps).toPrecision(4).padStart(8)}  ${String(r.dispatches).padStart(10)}  ${Number(r.relErr).toExponential(1)}${r.error ? `  ERROR ${r.error}` : ''}`,
    );
  }
  if (skipped.length) console.log(`skipped (over --budget-s): ${skipped.join(', ')}`);
  if (rows.some((r) => !r.ok)) process.exitCode = 1;
}

/**
 * Max error / max |ref| of out, dq, dk, dv against the float64 twins on a small problem of this
 * run's feature map and sizes d, m, dv (B·H = 2, T = 300: several chunks and a partial one);
 * NaN when the kernels fail. A result over 1e-4 marks the configuration not ok.
 */
async function check(K: WebGPUKernels): Promise<number> {
  const T = 300;
  const cd = { b: 1, h: 2, t: T, d, m, dv };
  let s = 12345;
  const rnd = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = (s / 4294967296) * 2 - 1;
    }
    return a;
  };
  const [cq, ck, cv, cg] = [rnd(2 * T * d), rnd(2 * T * d), rnd(2 * T * dv), rnd(2 * T * dv)];
  const om = feature === 'favor' || m !== d ? randomProjection({ h: 2, m, d, seed: 3 }) : undefined;
  const a = { q: cq, k: ck, v: cv, dims: cd, feature, omega: om, chunk: Math.min(chunk, 64) };
  try {
    const f = await K.causalForward(a);
    const b = await K.causalBackward({ ...a, dOut: cg, stateOut: f.state });
    const rf = refCausalForward(a);
    const rb = refCausalBackward({ ...a, dOut: cg });
    let worst = 0;
    for (const [ref, got] of [
      [rf.out, f.out],
      [rb.dq, b.dq],
      [rb.dk, b.dk],
      [rb.dv, b.dv],
    ] as const) {
      let e = 0;
      let mx = 0;
      for (let i = 0; i < ref.length; i++) {
        e = Math.max(e, Math.abs(ref[i] - got[i]));
        mx = Math.max(mx, Math.abs(ref[i]));
      }
      worst = Math.max(worst, Number.isFinite(e) ? e / mx : Number.NaN);
    }
    return worst;
  } catch (e) {
    console.log(`check failed: ${(e as Error).message}`);
    return Number.NaN;
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

// The kernel benchmark every runtime runs (plain JavaScript, copied into each temporary consumer
// project next to the installed tarball). FAVOR+ causal attention, b = 1, h = bh, d = dv = 64,
// chunk 64; per T: forward and forward + backward, `reps` timed calls after one warm-up; the
// median and best in ms. Memory: the kernel instance's wasm heap (its high-water mark, since
// wasm memory never grows back) and the last call's scratch, measured inside the module, plus
// the process RSS where the runtime reports one.
export function makeInputs(lib, bh, t, m, chunk = 64) {
  const d = 64,
    dv = 64;
  let s = 99;
  const rnd = (n) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      a[i] = (s / 4294967296 - 0.5) * 2;
    }
    return a;
  };
  const dims = { b: 1, h: bh, t, d, m, dv };
  const n = bh * t;
  return {
    dims,
    args: { q: rnd(n * d), k: rnd(n * d), v: rnd(n * dv), dims, feature: 'favor', omega: lib.randomProjection({ h: bh, m, d, seed: 5 }), chunk },
    dOut: rnd(n * dv),
  };
}

export async function runOnce(kernels, x, mode) {
  const f = await kernels.causalForward(x.args);
  if (mode === 'fwdbwd') await kernels.causalBackward({ ...x.args, stateOut: f.state, dOut: x.dOut });
}

function rss() {
  try {
    if (typeof process !== 'undefined' && typeof process.memoryUsage === 'function') return process.memoryUsage().rss;
    if (typeof Deno !== 'undefined') return Deno.memoryUsage().rss;
  } catch {}
  return null;
}

export async function benchKernels(lib, kernels, { ts, bh, m, reps, chunk = 64, now = () => performance.now() }) {
  const rows = [];
  for (const t of ts) {
    const x = makeInputs(lib, bh, t, m, chunk);
    for (const mode of ['fwd', 'fwdbwd']) {
      await runOnce(kernels, x, mode);
      const samples = [];
      for (let i = 0; i < reps; i++) {
        const t0 = now();
        await runOnce(kernels, x, mode);
        samples.push(now() - t0);
      }
      const sorted = [...samples].sort((a, b) => a - b);
      const last = typeof kernels.lastCall === 'function' ? kernels.lastCall() : null;
      rows.push({
        t,
        bh,
        m,
        mode,
        chunk,
        medianMs: sorted[Math.floor(sorted.length / 2)],
        bestMs: sorted[0],
        samplesMs: samples,
        wasmHeapBytes: typeof kernels.memoryBytes === 'function' ? kernels.memoryBytes() : null,
        scratchBytes: last ? last.scratchBytes : null,
        rssBytes: rss(),
      });
    }
  }
  return rows;
}

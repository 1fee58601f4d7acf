// The inference probe every consumer runs (plain JavaScript, no imports: each consumer passes the
// package's exports in). Deterministic inputs, a FAVOR+ causal forward and backward, and FNV-1a
// hashes of the raw bits of the results, which the harness compares with the source tree's.
// This file is copied into each temporary consumer project; `export` is stripped for CommonJS.
export async function probe(lib, kernels) {
  const dims = { b: 2, h: 2, t: 77, d: 16, m: 32, dv: 8 };
  let s = 12345;
  const rand = (n) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      a[i] = (s / 4294967296 - 0.5) * 2;
    }
    return a;
  };
  const bht = dims.b * dims.h * dims.t;
  const q = rand(bht * dims.d);
  const k = rand(bht * dims.d);
  const v = rand(bht * dims.dv);
  const dOut = rand(bht * dims.dv);
  const omega = lib.randomProjection({ h: dims.h, m: dims.m, d: dims.d, seed: 7 });
  const args = { q, k, v, dims, feature: 'favor', omega, chunk: 16 };
  const f = await kernels.causalForward(args);
  const g = await kernels.causalBackward({ ...args, stateOut: f.state, dOut });
  const fnv = (arrs) => {
    let h = 0x811c9dc5;
    for (const a of arrs) {
      const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 16777619) >>> 0;
    }
    return h.toString(16).padStart(8, '0');
  };
  let sum = 0;
  for (const x of f.out) sum += x;
  return {
    simd: kernels.simd,
    binary: kernels.binary,
    forward: fnv([f.out, f.state.S, f.state.z, f.state.offset]),
    backward: fnv([g.dq, g.dk, g.dv, g.dState.S, g.dState.z]),
    sumOut: sum,
  };
}

// Every kernel source a consumer can load, probed into `r`: the default and scalar binaries,
// the inlined ones, a two-thread pool and what the automatic pool picks.
export async function probeAll(lib, inline, createPool, r) {
  r.default = await probe(lib, await lib.init());
  r.scalar = await probe(lib, await lib.init({ simd: false }));
  // Where the default is the relaxed binary, the plain SIMD one is checked too.
  if (r.default.binary === 'relaxed') r.simdOnly = await probe(lib, await lib.init({ simd: true }));
  r.inlineFlag = inline.wasmInlined;
  r.inline = await probe(inline, await inline.init());
  r.inlineScalar = await probe(inline, await inline.init({ simd: false }));
  const pool = await createPool({ threads: 2 });
  r.poolInfo = pool.info;
  r.pool = await probe(lib, pool);
  await pool.dispose();
  const auto = await createPool();
  r.autoInfo = auto.info;
  await auto.dispose();
  return r;
}

/**
 * Quick start: causal FAVOR+ attention forward and backward on SIMD WebAssembly, checked
 * against the float64 reference, then a few decoding steps with the carried state.
 *
 *   npm start
 */
import { init, randomProjection, emptyState } from '../src/index.ts';
import { refCausalForward } from '../src/reference/index.ts';

const kernels = await init();
console.log(`slim-performer kernels loaded (${kernels.simd ? 'SIMD' : 'scalar'} WebAssembly)`);

const dims = { b: 1, h: 4, t: 4096, d: 64, m: 128, dv: 64 };
const omega = randomProjection({ h: dims.h, m: dims.m, d: dims.d, seed: 42 }); // [h, m, d]
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const q = rand(dims.b * dims.h * dims.t * dims.d); // [b, h, t, d]
const k = rand(q.length);
const v = rand(dims.b * dims.h * dims.t * dims.dv); // [b, h, t, dv]

let t0 = performance.now();
const { out, state } = kernels.causalForward({ q, k, v, dims, feature: 'favor', omega });
const fwd = performance.now() - t0;
const dOut = rand(out.length);
t0 = performance.now();
const grads = kernels.causalBackward({ q, k, v, dims, feature: 'favor', omega, stateOut: state, out, dOut });
const bwd = performance.now() - t0;
console.log(`causal attention B·H=${dims.b * dims.h}, T=${dims.t}, d=${dims.d}, M=${dims.m}: forward ${fwd.toFixed(1)} ms, backward ${bwd.toFixed(1)} ms`);
console.log(`|dq| = ${Math.hypot(...grads.dq.subarray(0, 1000)).toFixed(4)} (first 1000), state offset ${state.offset[0].toFixed(3)}`);

const small = { ...dims, t: 200 };
const cut = (x: Float32Array, w: number) => {
  const r = new Float32Array(small.b * small.h * small.t * w);
  for (let i = 0; i < small.b * small.h; i++) r.set(x.subarray(i * dims.t * w, (i * dims.t + small.t) * w), i * small.t * w);
  return r;
};
const args = { q: cut(q, dims.d), k: cut(k, dims.d), v: cut(v, dims.dv), dims: small, feature: 'favor' as const, omega };
const fast = kernels.causalForward(args).out;
const ref = refCausalForward(args).out;
let err = 0;
for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(fast[i] - ref[i]));
console.log(`float32 kernel vs float64 reference (T=${small.t}): max |error| = ${err.toExponential(2)}`);

let st = emptyState(dims, 'favor');
const one = { ...dims, t: 1 };
const per = [];
for (let step = 0; step < 5; step++) {
  t0 = performance.now();
  const r = kernels.recurrentStep({
    q: rand(dims.h * dims.d),
    k: rand(dims.h * dims.d),
    v: rand(dims.h * dims.dv),
    dims: one,
    feature: 'favor',
    omega,
    state: st,
  });
  per.push(performance.now() - t0);
  st = r.state;
}
console.log(`decoding: ${per.map((x) => x.toFixed(2)).join(', ')} ms per token (constant in context length)`);
kernels.dispose();

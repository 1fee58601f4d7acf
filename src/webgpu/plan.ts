/// <reference types="@webgpu/types" />
/**
 * How one WebGPU kernel call is laid out and split into dispatches: the work buffer's regions
 * (omega, states, chunk scratch, the chunk-parallel windows), the uniform `Params` of every
 * dispatch (shaders/common.wgsl), and the chunk ranges each dispatch takes so that no invocation
 * runs past a software adapter's loop limit or a GPU's watchdog. Pure functions of the call's
 * sizes and the device: `kernels.ts` encodes what they return.
 */
import { FEATURE_CODES as CODES } from '../kernels/state.ts';
import { ArgError } from '../kernels/validate.ts';
import type { Dims, FeatureMap } from '../kernels/types.ts';
import { align } from './buffers.ts';
import type { KernelName } from './shaders/index.ts';
import { gpuStateWords as stateWords } from './state.ts';

/** What the plans depend on beyond the call: the backend's options and the device. */
export interface PlanEnv {
  workgroupSize: number;
  /** A software adapter (llvmpipe, SwiftShader): loop limits, small windows. */
  software: boolean;
  limits: GPUSupportedLimits;
  windowBytes: number;
  chunkWindow: number | undefined;
  compensate: boolean;
  /** The per-chunk products run tiled (shaders/tile.wgsl). */
  tiled: boolean;
}

/** A call's checked arguments. */
export interface Checked {
  dims: Dims;
  feature: FeatureMap | 'identity';
  omega?: Float32Array;
  /** Random features already on the GPU (the synchronous calls), `[h, m, d]` f32. */
  omegaBuf?: GPUBuffer;
  chunk: number;
  eps: number;
}

/** Word offsets of the regions of a call's work buffer. */
export interface Layout {
  /** Chunk states of the chunk-parallel kernels, and chunks per window. */
  csOff: number;
  window: number;
  omegaOff: number;
  stateInOff: number;
  dStateOff: number;
  stateOutOff: number;
  scratchOff: number;
  sliceWords: number;
  words: number;
  group: number;
  nGroups: number;
}

/** A GPU-side copy encoded around a kernel (offsets and size in bytes). */
export interface Copy {
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
}

function chunkWords(c: number, m: number, dv: number): number {
  return 4 * c * m + 4 * c + c * c + c + c * dv + 4;
}

function gradWords(c: number, m: number, dv: number): number {
  return m * dv + m + c * dv + 2 * c + c * c + 2 * c * m;
}

/** Bytes of the kernels' uniform `Params` (shaders/common.wgsl). */
export const PARAM_BYTES = 128;
/** Estimated loop iterations per invocation per dispatch: software adapters (llvmpipe's 65 535 with margin), GPUs. */
const SOFTWARE_LOOP_BUDGET = 40_000;
const GPU_LOOP_BUDGET = 4_000_000;

/** One dispatch: chunks [cBegin, cEnd) of a kernel phase (group g for the causal backward). */
export interface Step {
  phase: number;
  cBegin: number;
  cEnd: number;
  g: number;
  /** Workgroups (default b·h: one per slice). */
  groups?: number;
}

export function layout(kind: KernelName, c: Checked, hasState: boolean, hasDState: boolean, env: PlanEnv): Layout {
  const { b, h, t, d, m, dv } = c.dims;
  const bh = b * h;
  const C = c.chunk;
  const sw = stateWords(m, dv);
  const nC = Math.ceil(t / C);
  const group = Math.max(1, Math.ceil(Math.sqrt(nC)));
  const nGroups = Math.ceil(nC / group);
  let sliceWords = chunkWords(C, m, dv);
  if (kind === 'causal_backward') sliceWords += gradWords(C, m, dv) + (1 + group + nGroups) * sw;
  if (kind === 'causal_backward_parallel' || kind === 'bidirectional_backward_parallel') sliceWords += gradWords(C, m, dv);
  if (kind === 'bidirectional_forward') sliceWords += sw;
  if (kind === 'bidirectional_backward') sliceWords += sw + gradWords(C, m, dv);
  // Chunk-parallel kernels: a window of chunks has bh·window scratch regions and chunk states
  // (and, backward, as many state gradients); see shaders/chunk_parallel.wgsl.
  const ns = m * dv + m;
  const csw = ns + 2;
  const parallel = kind.endsWith('_parallel');
  const perChunk = sliceWords + csw + (kind === 'causal_backward_parallel' || kind === 'bidirectional_backward_parallel' ? ns : 0);
  let window = 1;
  if (parallel) {
    // At most half of what one binding may hold (a caller's device may have WebGPU's default limits).
    const lim = env.limits;
    const budget = Math.min(env.windowBytes, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize) / 2);
    const fit = Math.floor(budget / (4 * bh * perChunk));
    window = Math.max(1, Math.min(nC, env.chunkWindow ?? fit, env.software ? 1000 : nC));
  }
  const nWindows = Math.ceil(nC / window);
  let o = 0;
  const omegaOff = o;
  o = align(o + (c.omega || c.omegaBuf ? h * m * d : 0));
  const stateInOff = o;
  o = align(o + (hasState ? bh * sw : 0));
  const dStateOff = o;
  o = align(o + (hasDState ? bh * (m * dv + m) : 0));
  const stateOutOff = o;
  if (kind === 'causal_forward' || kind === 'causal_forward_parallel') o = align(o + bh * sw);
  if (kind === 'causal_backward' || kind === 'causal_backward_parallel') o = align(o + bh * (m * dv + m + 1));
  const csOff = o;
  if (parallel) o = align(o + bh * window * csw + bh);
  // causal backward: ΔG / G_after per window chunk, carried G, running state, window checkpoints
  if (kind === 'causal_backward_parallel') o = align(o + bh * window * ns + bh * ns + bh * sw + nWindows * bh * sw);
  // bidirectional: the running summary; backward also KV_g shares per window chunk and totals
  if (kind === 'bidirectional_forward_parallel') o = align(o + bh * sw);
  if (kind === 'bidirectional_backward_parallel') o = align(o + bh * sw + bh * window * ns + bh * ns);
  const scratchOff = o;
  o += bh * window * sliceWords;
  return { csOff, window, omegaOff, stateInOff, dStateOff, stateOutOff, scratchOff, sliceWords, words: Math.max(o, 4), group, nGroups };
}

export function writeParams(
  c: Checked,
  L: Layout,
  hasState: boolean,
  hasDState: boolean,
  wgPerRow: number,
  step: Step,
  buf: ArrayBuffer,
  at: number,
  env: PlanEnv,
): void {
  const { b, h, t, d, m, dv } = c.dims;
  const u = new Uint32Array(buf, at, PARAM_BYTES / 4);
  const f = new Float32Array(buf, at, PARAM_BYTES / 4);
  u.set([b * h, h, t, d, m, dv, c.chunk, CODES[c.feature], c.omega || c.omegaBuf ? 1 : 0, hasState ? 1 : 0, hasDState ? 1 : 0, L.group]);
  u.set([L.omegaOff, L.stateInOff, L.dStateOff, L.stateOutOff, L.scratchOff, L.sliceWords], 12);
  f[18] = c.eps;
  f[19] = c.feature === 'favor' ? d ** -0.25 : 1;
  u.set([L.nGroups, wgPerRow, env.compensate ? 1 : 0, step.phase], 20);
  u.set([step.cBegin, step.cEnd, step.g, Math.ceil(t / c.chunk)], 24);
  u.set([L.csOff, L.window, 0, 0], 28);
}

/**
 * Loop iterations one invocation spends on one chunk (an over-estimate), which sets how many
 * chunks a dispatch may take: Mesa llvmpipe stops every outermost loop of an invocation after
 * 65 535 iterations (counting nested loops), so on software adapters a dispatch stays below
 * that; on GPUs dispatches stay short for the watchdog.
 */
function chunkCost(kind: KernelName, c: Checked, env: PlanEnv): number {
  const { d, m, dv } = c.dims;
  const C = c.chunk;
  const u = (n: number) => Math.ceil(n / env.workgroupSize);
  // A rows × cols product over k: one element per invocation, or tiles (shaders/tile.wgsl:
  // k-blocks of 16, each staging two TM × 16 tiles and running 16 register steps).
  const tm = 4 * (env.workgroupSize >= 256 ? 16 : 8);
  const mm = (rows: number, cols: number, k: number) =>
    env.tiled ? Math.ceil(rows / tm) * Math.ceil(cols / tm) * (Math.ceil(k / 16) * (2 * u(16 * tm) + 16) + 17) : u(rows * cols) * k;
  const proj = 2 * (u(C) * d + mm(C, m, d) + u(C * m));
  const feat = 2 * (u(C) * 2 * m + u(C * m)) + C;
  const attend = u(C) * (m + C + 2) + mm(C, dv, m) + mm(C, dv, C) + 2 * u(C * dv);
  const increment = mm(m, dv, C) + u(m * dv) + u(m) * (C + 1);
  const fwd = proj + feat + mm(C, C, m) + attend + increment + u(C * dv) + 40;
  if (kind === 'causal_forward' || kind === 'causal_forward_parallel' || kind === 'bidirectional_forward' || kind === 'bidirectional_forward_parallel')
    return fwd;
  // (the chunk-parallel backward's largest per-chunk phase is the chunk backward, as below)
  const featureBackward = u(C * m) + (env.tiled ? u(C) * m + mm(C, d, m) : u(C * d) * 2 * m);
  const grads =
    u(C) * dv + u(C * dv) + mm(C, C, dv) + 2 * (mm(C, m, dv) + mm(C, m, C)) + mm(C, dv, m) + mm(C, dv, C) + mm(m, dv, C) + u(m) * C + 2 * featureBackward;
  return fwd + grads + 2 * u(stateWords(m, dv)) + 40;
}

/** The dispatches of one kernel call, in order. */
export function plan(kind: KernelName, c: Checked, L: Layout, fn: string, env: PlanEnv): Step[] {
  const nC = Math.ceil(c.dims.t / c.chunk);
  const cost = chunkCost(kind, c, env);
  const budget = env.software ? SOFTWARE_LOOP_BUDGET : GPU_LOOP_BUDGET;
  if (cost > budget && env.software) {
    throw new ArgError(
      `${fn}: one chunk needs about ${cost} loop iterations per invocation, more than this software adapter runs in one loop (Mesa llvmpipe stops at 65 535); use a smaller chunk (now ${c.chunk}) or a larger workgroupSize`,
    );
  }
  const per = Math.max(1, Math.floor(budget / cost));
  const steps: Step[] = [];
  const segs = (phase: number, a: number, b: number, g = 0) => {
    for (let x = a; x < b; x += per) steps.push({ phase, cBegin: x, cEnd: Math.min(b, x + per), g });
  };
  if (kind.endsWith('_parallel')) return parallelPlan(kind, c, L, env);
  if (kind === 'causal_forward') segs(0, 0, nC);
  else if (kind === 'causal_backward') {
    segs(1, 0, nC);
    for (let g = L.nGroups - 1; g >= 0; g--) {
      const c0 = g * L.group;
      const c1 = Math.min(nC, c0 + L.group);
      segs(2, c0, c1, g);
      for (let x = c1; x > c0; x -= per) steps.push({ phase: 3, cBegin: Math.max(c0, x - per), cEnd: x, g });
    }
  } else {
    if (c.feature === 'favor') segs(1, 0, nC);
    else steps.push({ phase: 1, cBegin: 0, cEnd: 0, g: 0 });
    segs(2, 0, nC);
    segs(3, 0, nC);
    if (kind === 'bidirectional_backward') segs(4, 0, nC);
  }
  return steps;
}

/**
 * Dispatches of the chunk-parallel kernels (shaders/chunk_parallel.wgsl), window by window.
 * Scan phases (1, 3, 5) run a workgroup per (slice, block of state elements), commits (2) one
 * per slice, the rest one per (slice, chunk of the window) — except the causal forward's
 * phase 3, per chunk (its outputs).
 */
function parallelPlan(kind: KernelName, c: Checked, L: Layout, env: PlanEnv): Step[] {
  const nC = Math.ceil(c.dims.t / c.chunk);
  const bh = c.dims.b * c.dims.h;
  const blocks = Math.ceil((c.dims.m * c.dims.dv + c.dims.m) / env.workgroupSize);
  const windows: Array<[number, number]> = [];
  for (let w0 = 0; w0 < nC; w0 += L.window) windows.push([w0, Math.min(nC, w0 + L.window)]);
  const steps: Step[] = [];
  const pass = (ws: Array<[number, number]>, phases: number[]) => {
    for (const [w0, w1] of ws) {
      for (const phase of phases) {
        const scan = phase === 1 || phase === 5 || (phase === 3 && kind === 'causal_backward_parallel');
        steps.push({ phase, cBegin: w0, cEnd: w1, g: 0, groups: bh * (scan ? blocks : phase === 2 ? 1 : w1 - w0) });
      }
    }
  };
  if (kind === 'causal_forward_parallel') pass(windows, [0, 1, 3]); // phase 3 commits too
  if (kind === 'causal_backward_parallel') {
    pass(windows, [0, 1, 2]);
    pass([...windows].reverse(), [0, 3, 4, 5, 6]);
  }
  if (kind === 'bidirectional_forward_parallel') {
    pass(windows, [0, 1, 2]);
    pass(windows, [3]);
  }
  if (kind === 'bidirectional_backward_parallel') {
    pass(windows, [0, 1, 2]);
    pass(windows, [4, 5]);
    pass(windows, [6]);
  }
  return steps;
}

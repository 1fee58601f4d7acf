// Chunk-parallel bidirectional forward: the summary in windows (phases 0–2,
// bidirectional_parallel.wgsl), then phase 3, per (slice, chunk): the chunk's outputs
// φq_iᵀ KV / (φq_i·kz + ε).

@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) ids: vec3<u32>, @builtin(local_invocation_index) local: u32) {
  let g = groupIndex(ids);
  if (summaryPhase(g, local)) { return; }
  if (chunkPrologue(g, local)) { return; }
  let k = g / P.bh;
  let ci = P.cBegin + k;
  let t0 = ci * P.chunk;
  let n = min(P.chunk, P.t - t0);
  queryFeatures(t0, n);
  queryAttend(n, runAt(wid));
  let ob = (wid * P.t + t0) * P.dv;
  for (var e = lid; e < n * P.dv; e += WG) { OUT[ob + e] = W[oNum + e]; }
}

// Poisons a buffer with NaN (debugging aid: unwritten outputs then fail the tests).

struct FillParams { n: u32, bits: u32, start: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> F: FillParams;
@group(0) @binding(1) var<storage, read_write> X: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = g.x + g.y * nw.x * 64u;
  if (i < F.n) { X[F.start + i] = F.bits; }
}

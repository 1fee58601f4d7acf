#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu/bench.ts: chunked causal linear attention (FAVOR+ features), fp32
with TF32 off, forward and forward + backward (autograd), same sizes and flop/byte model.

Chunked-parallel form (no Python loop over chunks): per chunk c, A_c = (ΦQ_c ΦK_cᵀ)∘tril,
num = ΦQ_c S_c + A_c V_c, den = ΦQ_c z_c + A_c 1, with S_c = Σ_{c'<c} ΦK_c'ᵀ V_c' (an exclusive
cumsum over chunk increments, memory nChunks·M·D per slice). Keys use one stabiliser per slice
(the maximum logit over the whole sequence): a speed baseline, not the kernels' causal contract.

  python3 torch_chunked.py [--bh 32 --t 65536 --d 64 --m 128 --dv 64 --chunk 64 --reps 3 --out DIR]
Prints a short table; writes torch-bench.json into --out (or $OUT). Exits 0 with a note when
torch or CUDA is missing.
"""
import argparse, json, os, sys, time

p = argparse.ArgumentParser()
for k, v in dict(bh=32, t=65536, d=64, m=128, dv=64, chunk=64, reps=3).items():
    p.add_argument(f"--{k}", type=int, default=v)
p.add_argument("--out", default=os.environ.get("OUT"))
p.add_argument("--device", default="cuda")
a = p.parse_args()


def write(obj):
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "torch-bench.json"), "w") as f:
            json.dump(obj, f, indent=2)


try:
    import torch
except Exception as e:  # noqa: BLE001
    print(f"torch not available ({e}); skipped")
    write({"skipped": f"torch not available: {e}"})
    sys.exit(0)
if a.device == "cuda" and not torch.cuda.is_available():
    print("CUDA not available to torch; skipped")
    write({"skipped": "no CUDA"})
    sys.exit(0)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
dev = torch.device(a.device)
BH, T, d, M, D, C = a.bh, a.t, a.d, a.m, a.dv, a.chunk
assert T % C == 0, "T must be a multiple of the chunk here"
n = T // C
g = torch.Generator(device=dev).manual_seed(0)
q = (torch.rand(BH, T, d, device=dev, generator=g) * 2 - 1).requires_grad_()
k = (torch.rand(BH, T, d, device=dev, generator=g) * 2 - 1).requires_grad_()
v = (torch.rand(BH, T, D, device=dev, generator=g) * 2 - 1).requires_grad_()
w = torch.randn(BH, M, d, device=dev, generator=g)
dout = torch.rand(BH, T, D, device=dev, generator=g) * 2 - 1
tril = torch.ones(C, C, device=dev).tril()


def forward(q, k, v):
    s = d ** -0.25
    def logits(x):
        xs = x * s
        return torch.einsum("btd,bmd->btm", xs, w) - 0.5 * (xs * xs).sum(-1, keepdim=True)
    lq, lk = logits(q), logits(k)
    pq = torch.exp(lq - lq.amax(-1, keepdim=True).detach())
    pk = torch.exp(lk - lk.amax((1, 2), keepdim=True).detach())
    pq, pk, vc = pq.view(BH, n, C, M), pk.view(BH, n, C, M), v.view(BH, n, C, D)
    inc = torch.einsum("bncm,bncd->bnmd", pk, vc)
    S = torch.cumsum(inc, 1) - inc                      # exclusive: state before each chunk
    z = torch.cumsum(pk.sum(2), 1) - pk.sum(2)
    A = torch.einsum("bnim,bnjm->bnij", pq, pk) * tril
    num = torch.einsum("bncm,bnmd->bncd", pq, S) + torch.einsum("bnij,bnjd->bnid", A, vc)
    den = torch.einsum("bncm,bnm->bnc", pq, z) + A.sum(-1)
    return (num / (den.unsqueeze(-1) + 1e-16)).view(BH, T, D)


def timed(fn):
    ts = []
    for r in range(a.reps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if r:
            ts.append((time.perf_counter() - t0) * 1e3)
    return min(ts), sorted(ts)[len(ts) // 2]


per_tok = 4 * M * d + 2 * C * (M + D) + 4 * M * D
fwd_flops = BH * T * per_tok
fwd_bytes = 4 * BH * T * (2 * d + 2 * D)
bwd_bytes = 4 * BH * T * (4 * d + 3 * D)
rows = []
with torch.no_grad():
    best, med = timed(lambda: forward(q, k, v))
rows.append(dict(what="forward", bestMs=best, medianMs=med, gflops=fwd_flops / best / 1e6, gbps=fwd_bytes / best / 1e6))


def fb():
    q.grad = k.grad = v.grad = None
    forward(q, k, v).backward(dout)


best, med = timed(fb)
rows.append(dict(what="forward+backward", bestMs=best, medianMs=med, gflops=3 * fwd_flops / best / 1e6, gbps=(fwd_bytes + bwd_bytes) / best / 1e6))
peak = torch.cuda.max_memory_allocated() / 2**30
info = dict(torch=torch.__version__, device=torch.cuda.get_device_name(), tf32=False, peakGiB=peak)
write(dict(info=info, dims=dict(bh=BH, t=T, d=d, m=M, dv=D, chunk=C), rows=rows))
print(f"\ntorch {torch.__version__} on {info['device']} (TF32 off), peak {peak:.1f} GiB")
print("what               best ms    GFLOP/s     GB/s")
for r in rows:
    print(f"{r['what']:<18} {r['bestMs']:10.1f} {r['gflops']:10.1f} {r['gbps']:8.1f}")

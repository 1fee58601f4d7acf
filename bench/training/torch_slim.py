#!/usr/bin/env python3
"""PyTorch baseline for bench/training.ts: the SLiM paper's reference architecture (what
`ReferenceLM` implements; see its header and test/fixtures/slim-reference/README.md) and one SLiM
training step (slice-by-slice gradients + Adam), written from the paper's description.

- input: Embedding(vocab, hidden/2) ++ sinusoidal positions (width hidden/2, sines then cosines,
  absolute positions); gptln (post-LN) or pre-LN layers; attention q, k, v = Linear(hidden,
  hidden), no output projection; features relu / elu+1 / sqr, or favor+ with fixed rfs [H, hd, hd]
  (x' = x·hd^(-1/4), φ = exp(x'·rfs − |x'|²/2)); GELU (erf) FFN; head Linear(hidden, vocab).
- causal attention per slice in chunked form: A = tril(ΦQ ΦKᵀ), num = A·V + ΦQ·S, den = A·1 + ΦQ·z,
  out = num / (den + 1e-16), S += ΦKᵀV, z += ΦKᵀ1 (the state carried between slices); or
  (`--attention=prefix-sum`) in the paper's form, a cumulative sum of the per-token outer products
  φk_j v_jᵀ over the slice, `[B, H, L, M, hd]`.
- SLiM step: pass 1 runs every slice forward without gradients and keeps each slice's starting
  states; pass 2 walks the slices in reverse, recomputes each with its starting states as leaves,
  backpropagates its loss plus the surrogate ⟨state_end, G⟩, and hands the starting states'
  gradients on as the previous slice's G. Parameter gradients accumulate: they equal full backprop.

  python3 torch_slim.py check [--attention=…]  float64 logits, loss, full and SLiM gradients against
                                              the reference vectors (exit 1 on a mismatch)
  python3 torch_slim.py bench --config=ptb --t=1024 --slice=256 --threads=1 --reps=3 [--feature=sqr]
                            [--attention=chunked|prefix-sum]
                                              prints one JSON line: tokens/s, step times, peak RSS

A benchmark: nothing here asserts a time.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

# "chunked" (default): quadratic within the slice plus the carried state, all matrix products;
# "prefix-sum": the paper's formulation, a cumulative sum of per-token outer products.
ATTENTION = "chunked"

CONFIGS = {
    # hidden 128, 2 layers, FFN 512, 4 heads (the "small" model)
    "small": dict(vocab=256, hidden=128, layers=2, ffn=512, heads=4, gptln=True),
    # the paper's Penn Treebank character model
    "ptb": dict(vocab=256, hidden=512, layers=3, ffn=2048, heads=8, gptln=True),
}


def positions(offset, t, width, dtype):
    half = width // 2
    pos = torch.arange(offset, offset + t, dtype=dtype)[:, None]
    freq = torch.exp(-math.log(10000.0) * 2 * torch.arange(half, dtype=dtype) / width)
    a = pos * freq
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)  # [t, width]


class Attention(nn.Module):
    def __init__(self, hidden, heads, feature, rfs):
        super().__init__()
        self.q_map, self.k_map, self.v_map = (nn.Linear(hidden, hidden) for _ in range(3))
        self.heads, self.feature = heads, feature
        self.register_buffer("rfs", rfs)  # [H, hd, hd] or None

    def phi(self, x):  # x [B, H, L, hd]
        f = self.feature
        if f == "relu":
            return torch.relu(x)
        if f in ("elu", "elu+1"):
            return nn.functional.elu(x) + 1
        if f == "sqr":
            return x * x
        hd = x.shape[-1]
        x = x * hd ** -0.25
        return torch.exp(torch.einsum("bhld,hdr->bhlr", x, self.rfs) - (x * x).sum(-1, keepdim=True) / 2)

    def forward(self, x, state):
        B, L, D = x.shape
        H = self.heads
        split = lambda y: y.view(B, L, H, D // H).transpose(1, 2)  # [B, H, L, hd]
        q, k, v = split(self.q_map(x)), split(self.k_map(x)), split(self.v_map(x))
        pq, pk = self.phi(q), self.phi(k)
        S, z = state  # [B, H, M, hd], [B, H, M]
        if ATTENTION == "prefix-sum":
            # the paper's form: every token's state as a prefix sum of φk⊗v, [B, H, L, M, hd]
            Ss = S[:, :, None] + torch.cumsum(pk[..., :, None] * v[..., None, :], dim=2)
            zs = z[:, :, None] + torch.cumsum(pk, dim=2)
            num = (pq[..., :, None] * Ss).sum(-2)
            den = (pq * zs).sum(-1)
            new_state = (Ss[:, :, -1], zs[:, :, -1])
        else:
            a = torch.tril(pq @ pk.transpose(-1, -2))  # [B, H, L, L]
            num = a @ v + pq @ S
            den = a.sum(-1) + (pq * z[:, :, None, :]).sum(-1)
            new_state = (S + pk.transpose(-1, -2) @ v, z + pk.sum(2))
        out = num / (den[..., None] + 1e-16)
        return out.transpose(1, 2).reshape(B, L, D), new_state


class Layer(nn.Module):
    def __init__(self, hidden, ffn, heads, feature, gptln, rfs):
        super().__init__()
        self.attention = Attention(hidden, heads, feature, rfs)
        self.U_map, self.V_map = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.layernorm1, self.layernorm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.gptln = gptln

    def forward(self, x, state):
        ff = lambda y: self.V_map(nn.functional.gelu(self.U_map(y)))
        if self.gptln:
            a, state = self.attention(x, state)
            x = x + self.layernorm1(a)
            return x + self.layernorm2(ff(x)), state
        a, state = self.attention(self.layernorm1(x), state)
        x = x + a
        return x + ff(self.layernorm2(x)), state


class SlimLM(nn.Module):
    def __init__(self, vocab, hidden, layers, ffn, heads, feature, gptln, rfs=None):
        super().__init__()
        self.input_map = nn.Embedding(vocab, hidden // 2)
        self.layers = nn.ModuleList(Layer(hidden, ffn, heads, feature, gptln, None if rfs is None else rfs[l]) for l in range(layers))
        self.output_logit_map = nn.Linear(hidden, vocab)
        self.hidden, self.heads = hidden, heads

    def empty_states(self, B, dtype):
        hd = self.hidden // self.heads
        return [(torch.zeros(B, self.heads, hd, hd, dtype=dtype), torch.zeros(B, self.heads, hd, dtype=dtype)) for _ in self.layers]

    def forward(self, ids, offset, states):
        B, L = ids.shape
        e = self.input_map(ids)
        x = torch.cat([e, positions(offset, L, self.hidden // 2, e.dtype).expand(B, L, -1)], dim=2)
        out_states = []
        for layer, st in zip(self.layers, states):
            x, st = layer(x, st)
            out_states.append(st)
        return self.output_logit_map(x), out_states


def slice_loss(logits, targets, weights, count):
    ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (ce * weights.reshape(-1)).sum() / (count + 1e-8)


def slim_gradients(model, inputs, targets, weights, slice_len):
    """Accumulates the whole sequence's gradients into .grad, slice by slice; returns the loss."""
    B, T = inputs.shape
    count = float(weights.sum())
    starts = list(range(0, T, slice_len))
    dtype = model.output_logit_map.weight.dtype
    states = model.empty_states(B, dtype)
    kept = []
    with torch.no_grad():
        for t0 in starts:
            kept.append(states)
            _, states = model(inputs[:, t0 : t0 + slice_len], t0, states)
    G = None
    total = 0.0
    for si in reversed(range(len(starts))):
        t0 = starts[si]
        leaves = [(S.clone().requires_grad_(), z.clone().requires_grad_()) for S, z in kept[si]]
        logits, ends = model(inputs[:, t0 : t0 + slice_len], t0, leaves)
        loss = slice_loss(logits, targets[:, t0 : t0 + slice_len], weights[:, t0 : t0 + slice_len], count)
        objective = loss
        if G is not None:
            objective = objective + sum((S * gS).sum() + (z * gz).sum() for (S, z), (gS, gz) in zip(ends, G))
        objective.backward()
        G = [(S.grad, z.grad) for S, z in leaves]
        total += float(loss)
    return total


# ---------------------------------------------------------------- safetensors (the fixtures)

DTYPES = {"F64": np.float64, "F32": np.float32, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        tensors[name] = np.frombuffer(data[a:b], dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
    return tensors, meta


def check(directory):
    """float64 logits, loss and gradients of this model against the reference vectors."""
    torch.set_default_dtype(torch.float64)
    names = sorted(f[: -len(".weights.safetensors")] for f in os.listdir(directory) if f.endswith(".weights.safetensors"))
    worst = 0.0
    for name in names:
        w, meta = read_safetensors(os.path.join(directory, f"{name}.weights.safetensors"))
        vec, vmeta = read_safetensors(os.path.join(directory, f"{name}.vectors.safetensors"))
        cfg = json.loads(meta["config"])
        rfs = sorted((k for k in vec if k.startswith("rfs.")), key=lambda k: int(k.split(".")[1]))
        feature = cfg["feature"]
        model = SlimLM(cfg["vocab"], cfg["hidden"], cfg["layers"], cfg["ffn"], cfg["heads"], feature, cfg["gptln"], [torch.tensor(vec[k].copy()) for k in rfs] if rfs else None)
        loaded = model.load_state_dict({k: torch.tensor(v.copy()) for k, v in w.items()}, strict=False)
        missing = [k for k in loaded.missing_keys if not k.endswith("attention.rfs")]  # rfs come from the vectors
        if missing or loaded.unexpected_keys:
            raise SystemExit(f"{name}: weights do not fit the model: missing {missing}, unexpected {loaded.unexpected_keys}")
        tok = torch.tensor(vec["tokens"].astype(np.int64))
        mask = torch.tensor(vec["mask"].astype(np.float64))
        inputs, targets, weights = tok[:, :-1], tok[:, 1:], mask[:, 1:]
        B, T = inputs.shape
        rel = lambda ref, got: float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))
        errs = {}
        with torch.no_grad():
            logits, _ = model(inputs, 0, model.empty_states(B, torch.float64))
        errs["logits"] = rel(vec["logits"], logits.numpy())
        model.zero_grad()
        logits, _ = model(inputs, 0, model.empty_states(B, torch.float64))
        loss = slice_loss(logits, targets, weights, float(weights.sum()))
        loss.backward()
        errs["loss_full"] = abs(float(loss) - float(vmeta["loss_full"])) / abs(float(vmeta["loss_full"]))
        params = dict(model.named_parameters())
        errs["grad_full"] = max(rel(vec[f"grad_full.{p}"], params[p].grad.numpy()) for p in w)
        for C in sorted({int(k.split(".")[0][len("grad_slim") :]) for k in vec if k.startswith("grad_slim")}):
            model.zero_grad()
            slim_gradients(model, inputs, targets, weights, C)
            errs[f"grad_slim{C}"] = max(rel(vec[f"grad_slim{C}.{p}"], params[p].grad.numpy()) for p in w)
        print(f"{name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        worst = max(worst, *errs.values())
    ok = worst < 1e-9
    print(f"worst relative error {worst:.1e}: {'matches' if ok else 'DOES NOT match'} the reference (float64, bound 1e-9)")
    return ok


def bench(a):
    torch.set_num_threads(a.threads)
    cfg = dict(CONFIGS[a.config])
    if a.hidden:
        cfg["hidden"] = a.hidden
    feature = a.feature
    hd = cfg["hidden"] // cfg["heads"]
    g = torch.Generator().manual_seed(1)
    rfs = [torch.randn(cfg["heads"], hd, hd, generator=g) for _ in range(cfg["layers"])] if feature == "favor+" else None
    torch.manual_seed(1)
    model = SlimLM(feature=feature, rfs=rfs, **cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, cfg["vocab"], (1, a.t + 1), generator=g)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    weights = torch.ones(1, a.t)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = slim_gradients(model, inputs, targets, weights, a.slice)
        opt.step()
        return loss

    step()  # warm-up (creates Adam's moments)
    times, losses = [], []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(json.dumps({
        "method": f"pytorch-{ATTENTION}", "torch": torch.__version__, "threads": torch.get_num_threads(), "config": a.config, "feature": feature,
        "model": cfg, "T": a.t, "slice": a.slice, "stepMs": [t * 1000 for t in times], "tokensPerSec": a.t / med,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "losses": losses,
    }))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["check", "bench"])
    p.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "slim-reference"))
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--feature", default="sqr", choices=["relu", "elu+1", "sqr", "favor+"])
    p.add_argument("--hidden", type=int, default=0)
    p.add_argument("--t", type=int, default=1024)
    p.add_argument("--slice", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--attention", choices=["chunked", "prefix-sum"], default="chunked")
    a = p.parse_args()
    ATTENTION = a.attention
    if a.what == "check":
        sys.exit(0 if check(a.dir) else 1)
    bench(a)

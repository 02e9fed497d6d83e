"""Section ``matmul``: the machine's measured GFLOP/s at the model's GEMM shapes, the FLOP-based limit that
every other section's fraction is of (docs/performance.md, "The FLOP-based limit")."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..common import Bench, sync


def bench_matmul(b: Bench, s: dict, rounds: int = 20) -> dict:
    """GFLOP/s of F.linear at the model's forward GEMM shapes (M = batch*seq rows), best of ``rounds``;
    the effective rate is the FLOP-weighted harmonic mean over one layer + the LM head."""
    m, d, f, v = b.batch * b.seq, s["d"], s["ffn"], s["vocab"]
    gemms = {"qkv/o (d->d)": (d, s["attn_width"], 2 + 2 * s["kv_width"] / s["attn_width"]),
             "gate/up (d->ffn)": (d, f, 2), "down (ffn->d)": (f, d, 1), "head (d->vocab)": (d, v, 1 / s["layers"])}
    dtype = torch.bfloat16 if b.dtype == "bf16" else torch.float32
    rates, weights = {}, {}
    for name, (k, n, count) in gemms.items():
        x = torch.randn(m, k, device=b.device, dtype=dtype)
        w = torch.randn(n, k, device=b.device, dtype=dtype)
        best = math.inf
        for _ in range(rounds):
            sync(b)
            t0 = time.perf_counter()
            F.linear(x, w)
            sync(b)
            best = min(best, time.perf_counter() - t0)
        rates[name] = 2 * m * k * n / best / 1e9
        weights[name] = 2 * m * k * n * count
    total = sum(weights.values())
    effective = total / sum(weights[k] / rates[k] for k in rates)
    return {"gflops": {k: round(r, 1) for k, r in rates.items()}, "effective_gflops": round(effective, 1),
            "rows": m}

"""`trainer.precision=auto`: bf16 autocast where this machine runs bf16 faster than fp32, else fp32.

Whether bf16 pays on a CPU depends on the chip: on Intel Xeons without AMX bf16 GEMMs run at ~0.6x fp32
(docs/performance.md), on AMD EPYC with avx512_bf16 a bf16-autocast training step of the default
backbone is ~1.5x faster than fp32 (`benchmarks/suite.py --dtype bf16` vs fp32). So the default measures instead of guessing:
one GEMM of the default backbone's FFN shape in each dtype, best of a few interleaved repeats (~0.3 s).
"""

from __future__ import annotations

import time

import torch


def bf16_speedup(n: int = 1024, k: int = 576, m: int = 1536, repeats: int = 5) -> float:
    """fp32 time / bf16 time of an (n x k) @ (k x m) matmul on the CPU (> 1: bf16 is faster)."""
    a32, b32 = torch.randn(n, k), torch.randn(k, m)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(repeats):  # interleaved, best-of: robust to a noisy neighbour on a shared machine
        for name, (a, b) in (("fp32", (a32, b32)), ("bf16", (a16, b16))):
            t0 = time.perf_counter()
            for _ in range(3):
                a @ b
            best[name] = min(best[name], time.perf_counter() - t0)
    return best["fp32"] / best["bf16"]


def resolve_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """(Lightning precision, why). `auto` -> bf16-mixed on GPUs; on CPUs bf16-mixed only if measured faster."""
    if precision != "auto":
        return precision, "set in the config"
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed", "auto: GPU"
    speedup = bf16_speedup()
    if speedup > 1.1:
        return "bf16-mixed", f"auto: bf16 GEMM {speedup:.2f}x faster than fp32 on this CPU"
    return "32-true", f"auto: bf16 GEMM only {speedup:.2f}x fp32 on this CPU"

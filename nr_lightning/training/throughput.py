"""Model FLOPs utilisation (MFU) next to tokens/s: the figure GPU users compare across frameworks.

FLOPs per trained token follow the FLOP model of ``benchmarks/common.py`` (useful FLOPs, no recomputation,
no causal skipping): frozen matmul weights cost their forward (2N) and the activation gradients (2N),
trained ones add their weight gradients (2N); attention scores and mixing add 4·T·width per layer forward.
The device's peak is Lightning's table of theoretical FLOP/s per chip and dtype
(``lightning.fabric.utilities.throughput.get_available_flops``); it has no entry for CPUs, where the bench's
measured matmul limit is the comparable figure (docs/performance.md), so no MFU is logged there.
"""

from __future__ import annotations

import torch
from torch import nn


def _config(model: nn.Module):
    for m in model.modules():
        if getattr(m, "config", None) is not None and hasattr(m.config, "num_hidden_layers"):
            return m.config
    raise ValueError("no transformers config with num_hidden_layers found in the model")


def train_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Useful training FLOPs per token of `model` (extension included) at sequence length `seq_len`."""
    cfg = _config(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    n = sum(m.weight.numel() for m in linears)  # a tied head counts: it is a matmul
    trained = sum(m.weight.numel() for m in linears if m.weight.requires_grad)
    heads = cfg.num_attention_heads
    width = heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    attn = 4 * seq_len * width * cfg.num_hidden_layers
    return 4 * n + 2 * trained + 3 * attn


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Theoretical peak FLOP/s of one device at the run's precision, or None when unknown (CPU)."""
    from lightning.fabric.utilities.throughput import get_available_flops

    p = str(precision)
    dtype = torch.bfloat16 if p.startswith("bf16") else torch.float16 if p.startswith("16") else torch.float32
    if device.type == "cpu":
        return None
    try:
        flops = get_available_flops(device, dtype)
    except Exception:  # noqa: BLE001 - an unknown chip must not stop training
        return None
    return float(flops) if flops else None


def mfu(tokens_per_s_per_device: float, flops_per_token: float, peak: float) -> float:
    return tokens_per_s_per_device * flops_per_token / peak

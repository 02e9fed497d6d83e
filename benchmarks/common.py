"""Shared by every benchmark section: the settings (``Bench``), device sync and peak memory, the machine
description, the backbone and its shapes, the FLOP model (docs/performance.md, "The FLOP-based limit"),
median timing rows, and one configuration run alone in a fresh process (``suite.py --worker``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO / "nr_lightning" / "evaluation" / "data" / "text"  # the shipped text fixtures
SUITE = Path(__file__).resolve().with_name("suite.py")  # the CLI; `--worker METHOD` runs one configuration


# --------------------------------------------------------------------------------------------- settings


@dataclass
class Bench:
    backbone: str = "smollm2-135m"
    device: str = "cpu"
    dtype: str = "fp32"  # fp32 (no autocast) | bf16 (autocast, fp32 master weights)
    threads: int = 2
    batch: int = 4
    seq: int = 256
    steps: int = 10
    warmup: int = 2
    repeats: int = 2
    budget: float = 0.2
    eval_docs: int = 30
    eval_length: int = 512
    eval_batch: int = 8
    eval_rounds: int = 3
    seqlens: list[int] = field(default_factory=lambda: [256, 1024, 4096])
    seqlen_tokens: int = 4096  # tokens per step in the seqlen section (batch = tokens // T)
    quick: bool = False

    @property
    def autocast(self):
        dt = torch.bfloat16 if self.dtype == "bf16" else None
        return torch.autocast(self.device_type, dtype=dt, enabled=dt is not None)

    @property
    def device_type(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"


def sync(b: Bench) -> None:
    if b.device_type == "cuda":
        torch.cuda.synchronize()


def peak_memory_bytes(b: Bench) -> int:
    """Peak of this process: max allocated on GPU, peak RSS on CPU. On Linux VmHWM (the address space's own
    high-water mark), not ru_maxrss: a fork+exec'd worker inherits its parent's ru_maxrss, so a worker
    started while the parent held five models reported the parent's 8.7 GiB for every configuration."""
    if b.device_type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB elsewhere


def machine(b: Bench) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": b.device, "dtype": b.dtype, "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
        info["cpu_flags"] = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2") if f" {f}" in flags)
    except (OSError, StopIteration):
        pass
    info["cores"] = os.cpu_count()
    if b.device_type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


# ------------------------------------------------------------------------------------------- the model


def load(b: Bench):
    from nr_lightning.backbone import load_backbone

    model, tok = load_backbone(b.backbone)
    return model.to(b.device), tok


def shapes(model) -> dict:
    """The numbers the FLOP counts need: matmul parameters of the backbone (every Linear, head included;
    a tied head counts: it is a matmul), width, layers, attention width."""
    cfg = model.config
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {"d": cfg.hidden_size, "ffn": cfg.intermediate_size, "layers": cfg.num_hidden_layers,
            "attn_width": heads * head_dim, "kv_width": getattr(cfg, "num_key_value_heads", heads) * head_dim,
            "vocab": cfg.vocab_size, "matmul_params": n_matmul}


def flops_per_token(s: dict, trainable_matmul: int, seq: int, mode: str) -> float:
    """Useful FLOPs per token (no recomputation, no causal skipping, as in docs/performance.md).

    Attention scores + mixing: 4*T*attn_width per layer forward. Frozen weights cost forward (2N) plus
    the activation gradients (2N); trained weights add their weight gradients (2N): 6N in all.
    """
    attn = 4 * seq * s["attn_width"] * s["layers"]
    n = s["matmul_params"]
    if mode == "eval":
        return 2 * n + attn
    if mode == "finetune":
        return 6 * n + 3 * attn
    return 4 * n + 6 * trainable_matmul + 3 * attn


# ---------------------------------------------------------------------------------------------- timing


def summarize(times: list[float], tokens: int) -> dict:
    """Median (and range) of step times as a row: seconds and tokens/s."""
    med = statistics.median(times)
    return {"median_s": round(med, 4), "tok_s": round(tokens / med, 1), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "steps": len(times)}


# --------------------------------------------------------------------------------- subprocess workers


def run_worker(b: Bench, method: str, **over: Any) -> dict:
    """One configuration alone in a fresh process (``suite.py --worker``): its peak memory and rough tokens/s."""
    args = [sys.executable, str(SUITE), "--worker", method, "--backbone", b.backbone,
            "--device", b.device, "--dtype", b.dtype, "--threads", str(b.threads), "--budget", str(b.budget),
            "--batch", str(over.get("batch", b.batch)), "--seq", str(over.get("seq", b.seq)),
            "--steps", str(over.get("steps", 3)), "--warmup", str(over.get("warmup", 1))]
    res = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])

"""`make bench`: training and evaluation speed, side by side, against PEFT, full finetuning and lm-eval.

A benchmark, not a test: it measures, it does not assert. One run, one process for the paired timings
(A and B alternate step by step, so machine noise hits both alike; on a shared 2-core CPU absolute
seconds drift 25-40% between runs, paired ratios do not), and one subprocess per peak-memory reading.

Sections (all on the real default backbone unless --backbone says otherwise):

  matmul    measured GFLOP/s of the machine at the model's GEMM shapes -> the FLOP-based limit
  train     tokens/s of one optimizer step (loss incl. local losses + backward + AdamW) for neutral
            residues, vanilla adapters, our LoRA-on-FFN, a plain PEFT LoRA loop (the reference a user
            would write by hand) and full finetuning, same batch/precision/threads; FLOPs per trained
            token of each and its fraction of the limit; key ratios repeated
  memory    peak memory of each of those steps (RSS on CPU, max allocated on GPU), one subprocess each
  compile   neutral eager vs torch.compile (compile time reported separately)
  ckpt      neutral with vs without activation checkpointing
  data      the DataModule alone (tokens/s) against the training step
  eval      bits-per-byte throughput: ours (head-only chunked scoring) vs our full-logits path vs
            lm-evaluation-harness, same texts; fraction of the eval FLOP limit
  seqlen    neutral step tokens/s and peak memory at 256, 1024, 4096 context

    make bench                                           # CPU: ~20 min on 2 cores, fp32
    python benchmarks/suite.py --device cuda             # the same on a GPU (bf16 autocast)
    python benchmarks/suite.py --quick                   # tiny random model, seconds (the test suite runs it)
    python benchmarks/suite.py --only train,eval --steps 12

Writes bench/results.json (every measurement, the machine, the command) and bench/results.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO / "nr_lightning" / "evaluation" / "data" / "text"  # the shipped text fixtures
SECTIONS = ("matmul", "train", "memory", "compile", "ckpt", "data", "eval", "seqlen")
TRAIN_METHODS = ("neutral", "adapters", "lora", "peft_loop", "finetune")
KEY_METHODS = ("neutral", "peft_loop", "finetune")  # the ratios of the targets: measured in every repeat
LABELS = {"neutral": "neutral residues", "adapters": "vanilla adapters", "lora": "our LoRA (FFN)",
          "peft_loop": "PEFT LoRA, hand loop", "finetune": "full finetuning"}


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


# --------------------------------------------------------------------------------------------- matmul


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


# ---------------------------------------------------------------------------------------------- train


class Stepper:
    """One training configuration: ``step()`` runs loss + backward + optimizer step + zero_grad."""

    def __init__(self, name: str, b: Bench, model, step_fn: Callable[[], None], trainable: int,
                 trainable_matmul: int, report: dict | None = None) -> None:
        self.name, self.b, self.model, self.step_fn = name, b, model, step_fn
        self.trainable, self.trainable_matmul, self.report = trainable, trainable_matmul, report or {}

    def step(self) -> float:
        sync(self.b)
        t0 = time.perf_counter()
        self.step_fn()
        sync(self.b)
        return time.perf_counter() - t0


def batch_for(b: Bench, vocab: int, batch: int | None = None, seq: int | None = None) -> dict:
    g = torch.Generator().manual_seed(0)
    bs, T = batch or b.batch, seq or b.seq
    ids = torch.randint(0, vocab, (bs, T), generator=g).to(b.device)
    domain = torch.tensor([i % 4 != 0 for i in range(bs)], dtype=torch.long, device=b.device)  # 1 in 4 English
    return {"input_ids": ids, "domain": domain, "lang": domain}


def _trainable_matmul(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad and p.dim() == 2)


def make_stepper(name: str, b: Bench, *, compile_model: bool = False, checkpointing: bool = False,
                 batch: dict | None = None) -> Stepper:
    """Our methods through ExtensionModule.compute_loss + its configure_optimizers (the framework's exact
    loss and optimizer); ``peft_loop`` is plain PEFT + AdamW + the HF loss, the loop a user would write."""
    import nr_lightning as nrl

    model, _ = load(b)
    batch = batch or batch_for(b, model.config.vocab_size)
    if name == "peft_loop":
        from peft import LoraConfig, get_peft_model

        ours = nrl.extend(load(b)[0], method="lora", budget=b.budget)  # same rank as our LoRA at this budget
        r, rank_value = nrl.parameter_report(ours), ours.nrl_config.rank
        del ours
        model = get_peft_model(model, LoraConfig(r=rank_value, lora_alpha=2 * rank_value, lora_dropout=0.0,
                                                 target_modules=["gate_proj", "up_proj", "down_proj"]))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        ids = batch["input_ids"]

        def step() -> None:
            with b.autocast:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        trainable = sum(p.numel() for p in params)
        return Stepper(name, b, model, step, trainable, _trainable_matmul(model), r)

    from nr_lightning.config import compose
    from nr_lightning.scale.plan import enable_activation_checkpointing
    from nr_lightning.training.module import ExtensionModule

    method = "lora" if name == "lora" else name
    cfg = compose([f"method={method}", f"method.budget={b.budget}", "optim.lr_multiplier=1",
                   f"trainer.activation_checkpointing={str(checkpointing).lower()}"])
    model = nrl.extend(model, method=method, budget=b.budget)
    module = ExtensionModule(model, cfg, languages=["fr", "en"])
    enable_activation_checkpointing(module.model, cfg)
    if compile_model:
        module.compile_model()  # what trainer.compile=true does
    opt = module.configure_optimizers()["optimizer"]

    def step() -> None:
        with b.autocast:
            loss = module.compute_loss(batch)[0]
        if not torch.isfinite(loss):  # the framework's guard: part of what a step costs
            raise FloatingPointError("non-finite loss in the benchmark")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    report = nrl.parameter_report(model)
    return Stepper(name, b, model, step, report["trainable"], _trainable_matmul(model), report)


def paired(steppers: list[Stepper], steps: int, warmup: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """Round-robin: every round runs one step of each, rotating who goes first."""
    for _ in range(warmup):
        for s in steppers:
            s.step()
    times: dict[str, list[float]] = {s.name: [] for s in steppers}
    for i in range(steps):
        k = i % len(steppers)
        for s in steppers[k:] + steppers[:k]:
            times[s.name].append(s.step())
        log(f"  round {i + 1}/{steps}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
    return times


def summarize(times: list[float], tokens: int) -> dict:
    med = statistics.median(times)
    return {"median_s": round(med, 4), "tok_s": round(tokens / med, 1), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "steps": len(times)}


def bench_train(b: Bench, s: dict, peak: float, log) -> dict:
    tokens = b.batch * b.seq
    out: dict[str, Any] = {"tokens_per_step": tokens, "methods": {}, "repeats": []}
    steppers = []
    for name in TRAIN_METHODS:
        log(f"  building {name}")
        steppers.append(make_stepper(name, b))
    for rep in range(b.repeats):
        group = steppers if rep == 0 else [st for st in steppers if st.name in KEY_METHODS]
        log(f"train repeat {rep + 1}/{b.repeats}: {', '.join(st.name for st in group)}")
        times = paired(group, b.steps, b.warmup if rep == 0 else 1, log)
        rows = {n: summarize(t, tokens) for n, t in times.items()}
        out["repeats"].append({"rows": rows, "ratios": ratios(rows)})
    for st in steppers:
        all_rows = [r["rows"][st.name] for r in out["repeats"] if st.name in r["rows"]]
        best = max(all_rows, key=lambda r: r["tok_s"])
        mode = "finetune" if st.name == "finetune" else "frozen"
        fpt = flops_per_token(s, st.trainable_matmul, b.seq, mode)
        limit = peak * 1e9 / fpt
        out["methods"][st.name] = {
            "label": LABELS[st.name], "trainable": st.trainable, "trainable_matmul": st.trainable_matmul,
            "budget": st.report.get("budget"), "tok_s": best["tok_s"], "tok_s_per_repeat": [r["tok_s"] for r in all_rows],
            "gflop_per_token": round(fpt / 1e9, 4), "limit_tok_s": round(limit, 1),
            "fraction_of_limit": round(best["tok_s"] / limit, 3)}
    out["ratios"] = [r["ratios"] for r in out["repeats"]]
    del steppers
    gc.collect()
    return out


def ratios(rows: dict) -> dict:
    r = {}
    if "neutral" in rows and "peft_loop" in rows:
        r["neutral/peft_loop"] = round(rows["neutral"]["tok_s"] / rows["peft_loop"]["tok_s"], 3)
    if "neutral" in rows and "finetune" in rows:
        r["neutral/finetune"] = round(rows["neutral"]["tok_s"] / rows["finetune"]["tok_s"], 3)
    if "lora" in rows and "peft_loop" in rows:
        r["lora/peft_loop"] = round(rows["lora"]["tok_s"] / rows["peft_loop"]["tok_s"], 3)
    return r


def bench_variant(b: Bench, s: dict, peak: float, log, variant: str) -> dict:
    """Neutral eager vs compiled, or without vs with activation checkpointing, paired."""
    tokens = b.batch * b.seq
    base = make_stepper("neutral", b)
    if variant == "compile":
        other = make_stepper("neutral", b, compile_model=True)
        other.name = "neutral_compiled"
        t0 = time.perf_counter()
        other.step()  # compiles
        first = time.perf_counter() - t0
    else:
        other = make_stepper("neutral", b, checkpointing=True)
        other.name = "neutral_ckpt"
        first = None
    base.name = "neutral_eager"
    log(f"{variant}: paired {base.name} vs {other.name}")
    times = paired([base, other], b.steps, b.warmup, log)
    rows = {n: summarize(t, tokens) for n, t in times.items()}
    fpt = flops_per_token(s, base.trainable_matmul, b.seq, "frozen")
    limit = peak * 1e9 / fpt
    for row in rows.values():
        row["fraction_of_limit"] = round(row["tok_s"] / limit, 3)
    out = {"rows": rows, "ratio": round(rows[other.name]["tok_s"] / rows[base.name]["tok_s"], 3),
           "limit_tok_s": round(limit, 1)}
    if first is not None:
        out["compile_plus_first_step_s"] = round(first, 1)
        out["compile_s"] = round(first - rows[other.name]["median_s"], 1)
    del base, other
    gc.collect()
    return out


# --------------------------------------------------------------------------------- subprocess workers


def worker_train(b: Bench, method: str) -> dict:
    """Peak memory (and a rough tokens/s) of one configuration alone in this process."""
    tokens = b.batch * b.seq
    st = make_stepper(method, b)
    if b.device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loaded = peak_memory_bytes(b)
    times = [st.step() for _ in range(b.warmup + b.steps)][b.warmup:]
    return {"method": method, "batch": b.batch, "seq": b.seq, "tok_s": summarize(times, tokens)["tok_s"],
            "trainable_matmul": st.trainable_matmul,
            "peak_bytes": peak_memory_bytes(b), "after_load_bytes": loaded}


def run_worker(b: Bench, method: str, **over: Any) -> dict:
    args = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--backbone", b.backbone,
            "--device", b.device, "--dtype", b.dtype, "--threads", str(b.threads), "--budget", str(b.budget),
            "--batch", str(over.get("batch", b.batch)), "--seq", str(over.get("seq", b.seq)),
            "--steps", str(over.get("steps", 3)), "--warmup", str(over.get("warmup", 1))]
    res = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_memory(b: Bench, log) -> dict:
    out = {}
    for name in TRAIN_METHODS:
        r = run_worker(b, name)
        out[name] = r
        log(f"  memory {name}: peak {r['peak_bytes'] / 2**30:.2f} GiB")
    return out


def bench_seqlen(b: Bench, s: dict, peak: float, log) -> dict:
    out = {}
    for T in b.seqlens:
        bs = max(1, b.seqlen_tokens // T)
        r = run_worker(b, "neutral", batch=bs, seq=T, steps=3, warmup=1)
        fpt = flops_per_token(s, r["trainable_matmul"], T, "frozen")
        r["gflop_per_token"] = round(fpt / 1e9, 4)
        r["fraction_of_limit"] = round(r["tok_s"] / (peak * 1e9 / fpt), 3)
        out[str(T)] = r
        log(f"  seqlen {T} (batch {bs}): {r['tok_s']} tok/s, peak {r['peak_bytes'] / 2**30:.2f} GiB")
    return out


# ------------------------------------------------------------------------------------------------ data


def bench_data(b: Bench, train_tok_s: float | None, log) -> dict:
    """Tokens/s of the training DataModule alone (tokenise + pack + mix), against the training step."""
    from nr_lightning.backbone import load_tokenizer
    from nr_lightning.data import MixedLanguageDataModule

    tok = load_tokenizer("smollm2-135m")
    over: dict[str, Any] = {"seq_len": b.seq, "batch_size": b.batch}
    corpora = REPO / ".cache" / "corpora"
    if b.quick or not (corpora / "fr").exists():
        t = TEXT
        over.update({"new": {"path": str(t / "sentences_fr_dev.jsonl")}, "en": {"path": str(t / "sentences_en_dev.jsonl")}})
    dm = MixedLanguageDataModule(over, tok)
    it = iter(dm.train_dataloader(rank=0, world_size=1))
    next(it)  # opening the sources
    n = 20 if b.quick else 200
    t0 = time.perf_counter()
    for _ in range(n):
        batch = next(it)
    dt = time.perf_counter() - t0
    tok_s = n * batch["input_ids"].numel() / dt
    out = {"batches": n, "tok_s": round(tok_s, 1)}
    if train_tok_s:
        out["times_training_step"] = round(tok_s / train_tok_s, 1)
    log(f"  data: {tok_s:,.0f} tok/s")
    return out


# ------------------------------------------------------------------------------------------------ eval


def bench_eval(b: Bench, s: dict, peak: float, log) -> dict:
    """bpb tokens/s: ours (head-only chunked scoring), ours forced to full logits, lm-eval; interleaved."""
    from nr_lightning.evaluation import bits_per_byte_detail

    model, tok = load(b)
    model.eval()
    src = TEXT / "pubmed_en_dev.jsonl"
    with open(src, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][: b.eval_docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)

    def ours(head_only: bool | None):
        def run():
            with b.autocast:
                d = bits_per_byte_detail(model, tok, texts, max_length=b.eval_length, batch_size=b.eval_batch,
                                         head_only=head_only)
            return d.bits_per_byte, d.tokens
        return run

    impls: dict[str, Callable[[], tuple[float, int]]] = {"ours": ours(None), "ours_full_logits": ours(False)}
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=b.eval_batch, max_length=b.eval_length,
                  device=b.device, dtype="bfloat16" if b.dtype == "bf16" else "float32")

        def theirs():
            reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
            lls = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
            return -sum(lls) / (math.log(2) * n_bytes), None

        impls["lm_eval"] = theirs
    except ImportError:
        log("  lm_eval not installed (pip install -e .[dev]): comparing our two paths only")
    times: dict[str, list[float]] = {k: [] for k in impls}
    bpb: dict[str, float] = {}
    n_tokens = 0
    names = list(impls)
    for r in range(b.eval_rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(b)
            t0 = time.perf_counter()
            value, ntok = impls[name]()
            sync(b)
            times[name].append(time.perf_counter() - t0)
            bpb[name] = value
            n_tokens = ntok or n_tokens
            log(f"  eval round {r + 1} {name}: {times[name][-1]:.2f} s, bpb {value:.6f}")
    fpt = flops_per_token(s, 0, b.eval_length, "eval")
    limit = peak * 1e9 / fpt
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = {"median_s": round(med, 3), "tok_s": round(n_tokens / med, 1), "bpb": bpb[name],
                      "fraction_of_limit": round(n_tokens / med / limit, 3)}
    out = {"docs": len(texts), "tokens": n_tokens, "bytes": n_bytes, "max_length": b.eval_length,
           "batch_size": b.eval_batch, "rows": rows, "limit_tok_s": round(limit, 1),
           "gflop_per_token": round(fpt / 1e9, 4)}
    if "lm_eval" in rows:
        out["ours/lm_eval"] = round(rows["ours"]["tok_s"] / rows["lm_eval"]["tok_s"], 3)
        out["bpb_abs_diff"] = abs(bpb["ours"] - bpb["lm_eval"])
    out["ours/ours_full_logits"] = round(rows["ours"]["tok_s"] / rows["ours_full_logits"]["tok_s"], 3)
    return out


# ---------------------------------------------------------------------------------------------- report


TARGETS = [  # (what, value getter, comparison, threshold) -- from the performance issue
    ("neutral ≥ 1.0× PEFT LoRA loop tokens/s", lambda r: _min_ratio(r, "neutral/peft_loop"), 1.0),
    ("neutral ≥ 1.5× full finetuning tokens/s", lambda r: _min_ratio(r, "neutral/finetune"), 1.5),
    ("neutral peak memory ≤ PEFT LoRA loop", lambda r: _mem_ratio(r), None),
    ("compiled training step ≥ 85% of the FLOP limit", lambda r: _get(r, "compile", "rows", "neutral_compiled",
                                                                        "fraction_of_limit"), 0.85),
    ("bpb evaluation ≥ 80% of its FLOP limit", lambda r: _get(r, "eval", "rows", "ours", "fraction_of_limit"), 0.80),
    ("bpb evaluation ≥ 1.3× lm-evaluation-harness", lambda r: _get(r, "eval", "ours/lm_eval"), 1.3),
]


def _get(r: dict, *keys):
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def _min_ratio(r: dict, key: str):
    vals = [x[key] for x in _get(r, "train", "ratios") or [] if key in x]
    return min(vals) if vals else None


def _mem_ratio(r: dict):
    m = r.get("memory")
    if not m:
        return None
    return m["neutral"]["peak_bytes"] / m["peft_loop"]["peak_bytes"]


def targets(r: dict) -> list[dict]:
    out = []
    for what, get, threshold in TARGETS:
        v = get(r)
        if v is None:
            out.append({"target": what, "value": None, "met": None})
        elif threshold is None:  # memory: ratio <= 1 (2% tolerance for allocator noise)
            out.append({"target": what, "value": round(v, 3), "met": v <= 1.02})
        else:
            out.append({"target": what, "value": round(v, 3), "met": v >= threshold})
    return out


def gib(x: float) -> str:
    return f"{x / 2**30:.2f}"


def markdown(r: dict) -> str:
    b, m = r["settings"], r["machine"]
    lines = [f"# nr-lightning benchmark ({r['date']})", "",
             f"Machine: {m.get('gpu') or m.get('cpu', '?')} ({m.get('cores')} cores visible, {m['threads']} threads), "
             f"torch {m['torch']}; {b['device']} {b['dtype']}; backbone {b['backbone']}; "
             f"batch {b['batch']}×{b['seq']}; median of {b['steps']} steps after {b['warmup']} warm-up.",
             f"Command: `{r['command']}`", ""]
    if "matmul" in r:
        mm = r["matmul"]
        lines += [f"Matmul at the model's shapes ({mm['rows']} rows): " + ", ".join(f"{k} {v}" for k, v in mm["gflops"].items())
                  + f" GFLOP/s; effective (FLOP-weighted) **{mm['effective_gflops']} GFLOP/s** = the limit below.", ""]
    if "train" in r:
        t = r["train"]
        mem = r.get("memory", {})
        lines += ["| training step | trainable | tok/s (per repeat) | GFLOP/token | limit tok/s | % of limit | peak mem GiB |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in t["methods"].items():
            pm = gib(mem[name]["peak_bytes"]) if name in mem else "–"
            lines.append(f"| {row['label']} | {row['trainable'] / 1e6:.2f} M | {row['tok_s']} "
                         f"({', '.join(str(x) for x in row['tok_s_per_repeat'])}) | {row['gflop_per_token']} | "
                         f"{row['limit_tok_s']} | {100 * row['fraction_of_limit']:.0f}% | {pm} |")
        lines += ["", "Paired ratios per repeat: " + "; ".join(", ".join(f"{k} {v}" for k, v in x.items())
                                                             for x in t["ratios"]), ""]
    for key, title in (("compile", "torch.compile"), ("ckpt", "activation checkpointing")):
        if key in r:
            v = r[key]
            rows = ", ".join(f"{n} {x['tok_s']} tok/s ({100 * x['fraction_of_limit']:.0f}% of limit)" for n, x in v["rows"].items())
            extra = f"; compile + first step {v['compile_plus_first_step_s']} s" if "compile_plus_first_step_s" in v else ""
            lines += [f"{title}: {rows}; ratio {v['ratio']}{extra}.", ""]
    if "data" in r:
        d = r["data"]
        lines += [f"DataModule alone: {d['tok_s']:,} tok/s" + (f" = {d['times_training_step']}× the neutral training step." if
                                                                "times_training_step" in d else "."), ""]
    if "eval" in r:
        e = r["eval"]
        lines += [f"| bpb evaluation ({e['docs']} docs, {e['tokens']} tokens, window {e['max_length']}, batch {e['batch_size']}) "
                  "| tok/s | % of limit | bpb |", "|---|---|---|---|"]
        for name, row in e["rows"].items():
            lines.append(f"| {name} | {row['tok_s']} | {100 * row['fraction_of_limit']:.0f}% | {row['bpb']:.6f} |")
        lines += ["", f"Eval limit {e['limit_tok_s']} tok/s ({e['gflop_per_token']} GFLOP/token); ours/lm-eval "
                  f"{e.get('ours/lm_eval', '–')}; head-only/full-logits {e['ours/ours_full_logits']}.", ""]
    if "seqlen" in r:
        lines += ["| context | batch | neutral tok/s | GFLOP/token | % of limit | peak mem GiB |", "|---|---|---|---|---|---|"]
        for T, row in r["seqlen"].items():
            lines.append(f"| {T} | {row['batch']} | {row['tok_s']} | {row['gflop_per_token']} | "
                         f"{100 * row['fraction_of_limit']:.0f}% | {gib(row['peak_bytes'])} |")
        lines.append("")
    lines += ["| target | value | met |", "|---|---|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '–'} | "
                     f"{'yes' if t['met'] else ('–' if t['met'] is None else 'no')} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main


def parse(argv: list[str] | None = None) -> tuple[Bench, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="preset (smollm2-135m, tiny) or a local HF directory")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: fp32 on CPU, bf16 on GPU")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median) per configuration")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="repeats of the key training ratios")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--out", default=str(REPO / "bench"), help="directory for results.json / results.md")
    ap.add_argument("--quick", action="store_true", help="tiny random model, 2 steps: checks the script, measures nothing")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = a.dtype if a.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    b = Bench(backbone=a.backbone or ("tiny" if a.quick else "smollm2-135m"), device=device, dtype=dtype,
              threads=a.threads, batch=a.batch, seq=a.seq, steps=a.steps, warmup=a.warmup, repeats=a.repeats,
              budget=a.budget, quick=a.quick)
    if a.quick:
        b.steps, b.warmup, b.repeats, b.eval_docs, b.eval_rounds = 2, 1, 2, 3, 1
        b.seqlens, b.seqlen_tokens = [64, 128], 256
    return b, a


def main(argv: list[str] | None = None) -> dict:
    b, a = parse(argv)
    torch.set_num_threads(b.threads)
    torch.manual_seed(0)
    if a.worker:
        print(json.dumps(worker_train(b, a.worker)))
        return {}
    bad = [x for x in (a.only + "," + a.skip).split(",") if x and x not in SECTIONS]
    if bad:
        raise SystemExit(f"unknown section(s) {bad}; valid: {', '.join(SECTIONS)}")
    run = [x for x in SECTIONS if (not a.only or x in a.only.split(",")) and x not in a.skip.split(",")]
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    model, _ = load(b)
    s = shapes(model)
    del model
    r: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(b),
                         "settings": b.__dict__ | {"sections": run}, "shapes": s,
                         "command": " ".join([Path(sys.argv[0]).name if argv is None else "suite.py", *(sys.argv[1:] if argv is None else argv)])}
    log(f"machine: {r['machine']}; sections: {', '.join(run)}")
    mm = bench_matmul(b, s)
    r["matmul"] = mm
    peak = mm["effective_gflops"]
    log(f"matmul: {mm}")
    if "train" in run:
        r["train"] = bench_train(b, s, peak, log)
    if "memory" in run:
        r["memory"] = bench_memory(b, log)
    if "compile" in run:
        r["compile"] = bench_variant(b, s, peak, log, "compile")
    if "ckpt" in run:
        r["ckpt"] = bench_variant(b, s, peak, log, "ckpt")
    if "data" in run:
        train_tok_s = _get(r, "train", "methods", "neutral", "tok_s")
        r["data"] = bench_data(b, train_tok_s, log)
    if "eval" in run:
        r["eval"] = bench_eval(b, s, peak, log)
    if "seqlen" in run:
        r["seqlen"] = bench_seqlen(b, s, peak, log)
    r["targets"] = targets(r)
    r["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(r, indent=1))
    md = markdown(r)
    (out / "results.md").write_text(md)
    print(md)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return r


if __name__ == "__main__":
    main()

"""Sections ``train``, ``memory``, ``compile``, ``ckpt`` and ``seqlen``: one optimizer step of each method,
paired round-robin in one process; peak memory and context length one subprocess per configuration."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from ..common import Bench, flops_per_token, load, peak_memory_bytes, run_worker, summarize, sync

TRAIN_METHODS = ("neutral", "adapters", "lora", "peft_loop", "finetune")
KEY_METHODS = ("neutral", "peft_loop", "finetune")  # the ratios of the targets: measured in every repeat
LABELS = {"neutral": "neutral residues", "adapters": "vanilla adapters", "lora": "our LoRA (FFN)",
          "peft_loop": "PEFT LoRA, hand loop", "finetune": "full finetuning"}


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

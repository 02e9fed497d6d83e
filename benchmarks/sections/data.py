"""Section ``data``: the training DataModule alone (tokenise, pack, mix), against the training step."""

from __future__ import annotations

import time
from typing import Any

from ..common import REPO, TEXT, Bench


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

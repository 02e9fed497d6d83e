"""Held-out bpb sharded across 2 gloo processes equals the single-process value."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.multiprocessing as mp

TEXTS = ["Le chat dort sur le canapé.", "The cat sleeps.", "Ein kurzer deutscher Satz über das Wetter heute.",
         "x" * 300, "Encore une phrase, plus longue que la première, pour varier les longueurs."]


def _worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from helpers import toy_model
    from nr_lightning.backbone import load_tokenizer
    from nr_lightning.evaluation import sharded_bits_per_byte

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        tok = load_tokenizer("tiny")
        model = toy_model("llama", vocab_size=len(tok))
        bpb = sharded_bits_per_byte(model, tok, TEXTS, max_length=16, batch_size=2)
        Path(out, f"rank{rank}.json").write_text(json.dumps(bpb))
    finally:
        dist.destroy_process_group()


def test_sharded_bpb_equals_single_process(tmp_path, smollm2_tokenizer):
    from helpers import toy_model
    from nr_lightning.evaluation import bits_per_byte

    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    model = toy_model("llama", vocab_size=len(smollm2_tokenizer))
    single = bits_per_byte(model, smollm2_tokenizer, TEXTS, max_length=16, batch_size=2)
    assert got[0] == got[1]  # every rank gets the reduced value
    assert abs(got[0] - single) < 1e-9 * single, (got, single)

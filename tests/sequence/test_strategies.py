"""Every sequence strategy end to end: 2 stages x 2 steps on the tiny backbone, then the result is reloaded
from disk and its logits / held-out bpb checked against what the run measured."""

from __future__ import annotations

import json

import pytest
import torch

from nr_lightning.backbone import load_backbone
from nr_lightning.continual.sequence import Sequence, load_sequence, main, parse_args

IDS = torch.tensor([[1, 5, 9, 42, 7, 3, 100, 11]])
TINY = ["backbone=tiny", "trainer.max_steps=2", "eval.max_docs=2", "eval.max_length=64", "eval.at_start=false",
        "eval.gate_stats=false", "method.lr=0.01", "optim.lr_multiplier=1"]


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("strategy, method, extra", [
    ("stack", "neutral", []), ("continue", "neutral", []), ("olora", "lora", []), ("merge", "lora", []),
    ("moe", "neutral", ["router=learned", "router_steps=2"]), ("joint", "neutral", []),
])
def test_strategy_trains_and_reloads(tmp_path, corpora, strategy, method, extra):
    run = tmp_path / "seq"
    args = ["stages=[fr,de]", f"strategy={strategy}", f"method={method}", *extra, *TINY,
            f"data.corpora_dir={corpora}", f"run_dir={run}"]
    result = main(args)
    model, tok = load_sequence(run)
    # the reloaded model is the one the run measured: same held-out bpb in every column
    measured = dict(zip(result["matrix"]["columns"], result["matrix"]["bpb"][-1]))
    again = Sequence(*parse_args(args)).evaluate(model, tok, list(measured))
    assert again == pytest.approx(measured, rel=1e-6, abs=1e-7)
    # ... and stage 2 changed it: differs from the backbone and from the model after stage 1
    after = _logits(model)
    assert not torch.allclose(after, _logits(load_backbone("tiny")[0].eval()))
    assert not torch.allclose(after, _logits(load_sequence(run, after_stage=1)[0]))
    meta = json.loads((run / "sequence.json").read_text())
    assert meta["completed"] == 2 and meta["router"] == (strategy == "moe")
    if strategy in ("stack", "moe"):  # docs/sequence.md: these run directories reload with load_stack
        from nr_lightning.extension import load_stack

        torch.testing.assert_close(_logits(load_stack(load_backbone("tiny")[0], run).eval()), after)

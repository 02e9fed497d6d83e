"""The head-only scoring path (LM head on scored positions, never full logits) equals the logits path."""

from __future__ import annotations

import random

import pytest
import torch

import nr_lightning as nrl
from helpers import toy_model
from nr_lightning.evaluation.scoring import hidden_and_head, score_requests


def _requests(seed: int = 0) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(11):
        seq = [rng.randrange(256) for _ in range(rng.randint(3, 70))]
        out.append((seq, rng.randint(1, len(seq) - 1)))
    return out


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen2"])
@pytest.mark.parametrize("method", [None, "lora", "neutral"])
def test_head_only_equals_full_logits(arch, method):
    model = toy_model(arch)
    if method:
        model = nrl.extend(model, method=method, budget=0.2)
        if method == "neutral":  # non-zero adapters, so the hooks change the hidden states
            for name, p in model.named_parameters():
                if "w_out" in name:
                    torch.nn.init.normal_(p, std=0.05)
    assert hidden_and_head(model) is not None
    reqs = _requests()
    fast = score_requests(model, reqs, batch_size=4, head_only=True, chunk_rows=7)
    greedy = score_requests(model, reqs, batch_size=4, greedy=True, head_only=True, chunk_rows=7)
    ref = score_requests(model, reqs, batch_size=4, greedy=True, head_only=False)
    for a, g, b in zip(fast, greedy, ref):  # blocked log-sum-exp path, and the greedy (full-chunk) path
        assert a.n_tokens == b.n_tokens == g.n_tokens and g.is_greedy == b.is_greedy
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
        assert g.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_head_only_applies_gemma2_softcap():
    model = toy_model("gemma2")
    with torch.no_grad():  # large logits, so the soft-capping at 30 changes them visibly
        model.get_output_embeddings().weight.mul_(400.0)
    reqs = _requests(1)
    capped = score_requests(model, reqs, head_only=True)
    ref = score_requests(model, reqs, head_only=False)
    assert [s.logprob for s in capped] == pytest.approx([s.logprob for s in ref], abs=1e-4)
    model.config.final_logit_softcapping = None
    uncapped = score_requests(model, reqs, head_only=True)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(uncapped, ref)) > 1.0


def test_blocked_logprob_matches_log_softmax():
    from nr_lightning.evaluation.scoring import _blocked_logprob

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 1000, bias=True)
    h, t = torch.randn(9, 16) * 3, torch.randint(0, 1000, (9,))
    for cap in (None, 5.0):
        z = head(h)
        z = torch.tanh(z / cap) * cap if cap else z
        ref = torch.log_softmax(z, -1).gather(-1, t[:, None])[:, 0]
        got = _blocked_logprob(h, t, head, cap, vocab_block=128)  # 1000 = 7 full blocks + a partial one
        assert torch.allclose(got, ref, atol=1e-5)


def test_unknown_model_falls_back(uniform_lm):
    lm = uniform_lm(16)
    assert hidden_and_head(lm) is None
    assert score_requests(lm, [([1, 2, 3], 1)])[0].n_tokens == 1  # the logits path
    with pytest.raises(ValueError, match="head_only"):
        score_requests(lm, [([1, 2, 3], 1)], head_only=True)

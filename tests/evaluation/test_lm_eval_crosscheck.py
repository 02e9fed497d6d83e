"""Cross-check against lm-evaluation-harness (the reference implementation), where it is installed.

Nothing is installed at test time: without ``lm_eval`` these tests are skipped. Both sides run the
same model object: ours directly, lm-eval through ``HFLM(pretrained=model, tokenizer=tok)`` and its
``loglikelihood_rolling`` / ``loglikelihood`` on ``Instance`` objects (its task registry needs the
hub). Bits per byte must agree to 1e-4 and per-item predictions exactly, for every normalisation.

The default run uses a toy random Llama (``toy_model``) with SmolLM2's real tokenizer (seconds); ``-m slow`` runs
the same checks on the real SmolLM2-135M backbone over every benchmark fixture.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import toy_model
from nr_lightning.evaluation import bits_per_byte_detail, multiple_choice
from nr_lightning.evaluation.tasks import UNCONDITIONAL_PROMPT

pytest.importorskip("lm_eval")


def _hflm(model, tok, max_length: int, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length)


def _texts(fixtures_dir, name: str, n: int) -> list[str]:
    with open(fixtures_dir / "text" / name, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def lm_eval_bpb(lm, texts: list[str]) -> float:
    from lm_eval.api.instance import Instance

    reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    lls = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    return -sum(lls) / (math.log(2) * sum(len(t.encode("utf-8")) for t in texts))


def lm_eval_predictions(lm, items: list[dict]) -> tuple[list[dict], list[list[float]]]:
    """Per-item argmax for each normalisation, from lm-eval log-likelihoods of our prompts."""
    from lm_eval.api.instance import Instance

    pairs = []
    for it in items:
        pairs += [(it["context"], " " + c) for c in it["choices"]]
        pairs += [(UNCONDITIONAL_PROMPT, " " + c) for c in it["choices"]]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    res = [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    preds, all_lls, pos = [], [], 0
    for it in items:
        k = len(it["choices"])
        lls = np.array(res[pos:pos + k])
        unc = np.array(res[pos + k:pos + 2 * k])
        ntok = np.array([len(lm._encode_pair(it["context"], " " + c)[1]) for c in it["choices"]], dtype=float)
        nchar = np.array([float(len(c)) for c in it["choices"]])
        pos += 2 * k
        preds.append({"none": int(np.argmax(lls)), "per_token": int(np.argmax(lls / ntok)),
                      "per_char": int(np.argmax(lls / nchar)), "pmi": int(np.argmax(lls - unc))})
        all_lls.append(lls.tolist())
    return preds, all_lls


def _check_bpb(model, tok, texts, max_length, batch_size):
    ours = bits_per_byte_detail(model, tok, texts, max_length=max_length, batch_size=batch_size)
    ref = lm_eval_bpb(_hflm(model, tok, max_length, batch_size), texts)
    assert ours.windows > len(texts)  # the sliding window is exercised
    assert abs(ours.bits_per_byte - ref) < 1e-4, (ours.bits_per_byte, ref)
    return ours.bits_per_byte, ref


def _check_mc(model, tok, task, limit, max_length, batch_size):
    r = multiple_choice(model, tok, task, limit=limit, normalization="pmi", max_length=max_length,
                        batch_size=batch_size, return_items=True)
    from nr_lightning.evaluation import load_task

    items = load_task(task, limit=limit).items
    recs = [dict(rec, choices=it["choices"]) for rec, it in zip(r["items"], items)]
    preds, lls = lm_eval_predictions(_hflm(model, tok, max_length, batch_size), recs)
    for rec, p, ll in zip(recs, preds, lls):
        assert rec["logprobs"] == pytest.approx(ll, abs=1e-3), rec["id"]
        assert rec["preds"] == p, rec["id"]
    return r


def test_crosscheck_toy_model(smollm2_tokenizer, fixtures_dir):
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))  # max_position_embeddings 512
    texts = _texts(fixtures_dir, "pubmed_en_dev.jsonl", 2) + _texts(fixtures_dir, "sentences_fr_dev.jsonl", 4)
    _check_bpb(model, tok, texts, max_length=96, batch_size=4)
    # 5-shot prompts left-truncated to 256 tokens, a long passage, 5 choices
    for task, max_length in (("mmlu_de", 256), ("belebele_en", 512), ("csqa_en", 512)):
        _check_mc(model, tok, task, limit=2, max_length=max_length, batch_size=8)


@pytest.mark.slow
def test_crosscheck_smollm2(fixtures_dir):
    from nr_lightning.backbone import load_backbone

    model, tok = load_backbone("smollm2-135m")
    texts = _texts(fixtures_dir, "pubmed_en_dev.jsonl", 6) + _texts(fixtures_dir, "sentences_de_dev.jsonl", 6)
    ours, ref = _check_bpb(model, tok, texts, max_length=128, batch_size=4)
    print(f"bpb ours {ours:.6f} lm-eval {ref:.6f}")
    # one task per family/language kind, kept small for the 2-core CI machine
    for task in ("arc_challenge_fr", "mmlu_en", "csqa_en", "belebele_en"):
        r = _check_mc(model, tok, task, limit=3, max_length=2048, batch_size=8)
        print(task, {k: v for k, v in r.items() if k.startswith("acc")})


def test_wrapper_model_runs_in_lm_eval(smollm2_tokenizer):
    """A plain nn.Module wrapper (like our extended models) goes through HFLM via make_hflm."""
    import torch

    from nr_lightning.evaluation.lm_eval_adapter import make_hflm

    class Wrapper(torch.nn.Module):
        def __init__(self, hf):
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask=None):
            return self.hf(input_ids=input_ids, attention_mask=attention_mask)

    tok = smollm2_tokenizer
    model = Wrapper(toy_model("llama", vocab_size=len(tok)))
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "Le renard brun saute."]
    ref = lm_eval_bpb(make_hflm(model, tok, batch_size=2, max_length=32), texts)
    ours = bits_per_byte_detail(model, tok, texts, max_length=32, batch_size=2).bits_per_byte
    assert abs(ours - ref) < 1e-4

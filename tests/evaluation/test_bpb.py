"""Bits per byte: exact values on a uniform model, window coverage, equivalence with full context."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import toy_model
from nr_lightning.evaluation import bits_per_byte, bits_per_byte_detail, rolling_windows


def _texts(fixtures_dir, name: str, n: int) -> list[str]:
    with open(fixtures_dir / "text" / name, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def test_uniform_logits_exact(fixtures_dir, smollm2_tokenizer, uniform_lm):
    tok = smollm2_tokenizer
    texts = _texts(fixtures_dir, "sentences_fr_dev.jsonl", 20) + _texts(fixtures_dir, "pubmed_en_dev.jsonl", 3)
    vocab = len(tok)
    bpb, d = bits_per_byte(uniform_lm(vocab), tok, texts, max_length=64, batch_size=4, return_detail=True)
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert d.tokens == n_tokens and d.bytes == n_bytes and d.documents == len(texts)
    assert bpb == pytest.approx(n_tokens * math.log2(vocab) / n_bytes, rel=1e-12)


@pytest.mark.parametrize("n,L", [(1, 4), (4, 4), (5, 4), (9, 4), (12, 4), (13, 5), (100, 7), (3, 1), (7, 1)])
def test_rolling_windows_cover_each_token_once(n, L):
    tokens = list(range(10, 10 + n))
    windows = list(rolling_windows(tokens, prefix_token=0, max_length=L))
    scored = [t for _, cont in windows for t in cont]
    assert scored == tokens  # every token exactly once, in order
    for i, (ctx, cont) in enumerate(windows):
        seq = ctx + cont
        assert 1 <= len(cont) <= L and len(seq) <= L + 1
        # the context is exactly the tokens preceding the continuation (prefix for the first window)
        full = [0] + tokens
        start = full.index(cont[0])
        assert full[start - len(ctx):start] == ctx
        if i == 0:
            assert ctx == [0]


@pytest.mark.parametrize("n,L", [(1, 4), (5, 4), (13, 5), (100, 7), (7, 1), (64, 16)])
def test_rolling_windows_match_lm_eval(n, L):
    utils = pytest.importorskip("lm_eval.utils")
    tokens = list(range(10, 10 + n))
    ref = list(map(utils.make_disjoint_window, utils.get_rolling_token_windows(tokens, 0, L, 1)))
    assert [tuple(map(list, w)) for w in ref] == list(rolling_windows(tokens, 0, L))


def test_long_document_every_token_scored_once(smollm2_tokenizer, uniform_lm, fixtures_dir):
    tok = smollm2_tokenizer
    text = " ".join(_texts(fixtures_dir, "pubmed_en_dev.jsonl", 2))
    n = len(tok.encode(text))
    model = uniform_lm(len(tok))
    d = bits_per_byte_detail(model, tok, [text], max_length=32, batch_size=3)
    assert d.tokens == n and d.windows == math.ceil(n / 32)
    # the model never sees more than max_length tokens at once, and scored positions add up to n
    assert all(ids.shape[1] <= 32 for ids, _ in model.calls)
    assert sum(int(mask.sum()) for _, mask in model.calls) >= n


def test_windowed_equals_full_context_for_short_docs(fixtures_dir, smollm2_tokenizer):
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    texts = _texts(fixtures_dir, "sentences_de_dev.jsonl", 6)
    d = bits_per_byte_detail(model, tok, texts, max_length=256, batch_size=4)
    nll = 0.0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[tok.bos_token_id] + tok.encode(t)])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            nll -= logp.gather(-1, ids[0, 1:, None]).sum().item()
    assert d.windows == len(texts)
    assert d.nll_nats == pytest.approx(nll, rel=1e-5)


def test_window_size_changes_only_context(fixtures_dir, smollm2_tokenizer):
    """Same tokens counted at any window size; batch size does not change the value."""
    tok = smollm2_tokenizer
    model = toy_model("llama", vocab_size=len(tok))
    texts = _texts(fixtures_dir, "pubmed_en_dev.jsonl", 1)
    a = bits_per_byte_detail(model, tok, texts, max_length=48, batch_size=1)
    b = bits_per_byte_detail(model, tok, texts, max_length=48, batch_size=7)
    c = bits_per_byte_detail(model, tok, texts, max_length=200, batch_size=4)
    assert a.tokens == b.tokens == c.tokens
    assert a.nll_nats == pytest.approx(b.nll_nats, rel=1e-5)
    assert a.windows > c.windows


def test_empty_and_unicode_documents(smollm2_tokenizer, uniform_lm):
    tok = smollm2_tokenizer
    texts = ["", "é", "l\u0092auteur — ü"]
    d = bits_per_byte_detail(uniform_lm(len(tok)), tok, texts, max_length=8)
    assert d.bytes == sum(len(t.encode("utf-8")) for t in texts)
    assert d.tokens == sum(len(tok.encode(t)) for t in texts)


@pytest.mark.parametrize("bs", [1, 3, 8])
def test_least_padding_batches_partition(bs):
    from nr_lightning.evaluation.scoring import least_padding_batches

    lengths = sorted([511, 500, 480, 300, 299, 298, 200, 160, 156, 20, 19, 3], reverse=True)
    batches = least_padding_batches(lengths, bs)
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(batches, batches[1:]))
    assert all(0 < e - s <= bs for s, e in batches)
    padded = sum((e - s) * lengths[s] for s, e in batches)
    fixed = sum(max(lengths[i:i + bs]) * len(lengths[i:i + bs]) for i in range(0, len(lengths), bs))
    assert padded <= fixed + 64 * len(batches)

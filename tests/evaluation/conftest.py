"""Helpers for evaluation tests: fake models with controlled logits and a character tokenizer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch


class UniformLM(torch.nn.Module):
    """Every position predicts a uniform distribution over ``vocab`` tokens; records its inputs.

    Logits are float64 so that "exact" comparisons hold to ~1e-12 (the scorer keeps float64).
    """

    def __init__(self, vocab: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.vocab = vocab
        self.dtype = dtype
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, input_ids, attention_mask=None):
        self.calls.append((input_ids.clone(), attention_mask.clone()))
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab, dtype=self.dtype))


class CharTokenizer:
    """One token per character (id = code point < 128); BOS = 1. Enough for hand-computed tests."""

    bos_token_id = 1
    bos_token = "\x01"
    eos_token_id = 2
    pad_token_id = 0
    vocab_size = 128

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [ord(c) for c in text]
        assert all(i < self.vocab_size for i in ids), text
        return ids

    def __len__(self) -> int:
        return self.vocab_size


class FirstTokenBigramLM(torch.nn.Module):
    """``p(next | first token of the row, previous token)`` from a table; uniform where unspecified.

    Conditional prompts start with "Question" (first token ``Q``) and the PMI unconditional prompt
    with "Answer:" (``A``), so the two contexts get different distributions for the same choice.
    """

    def __init__(self, table: dict[tuple[str, str], dict[str, float]], vocab: int = 128):
        super().__init__()
        self.vocab = vocab
        self.rows: dict[tuple[int, int], torch.Tensor] = {}
        for (first, prev), probs in table.items():
            p = torch.full((vocab,), (1.0 - sum(probs.values())) / (vocab - len(probs)), dtype=torch.float64)
            for tok, q in probs.items():
                p[ord(tok)] = q
            self.rows[(ord(first), ord(prev))] = p.log().float()

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        logits = torch.zeros(b, t, self.vocab)
        for i in range(b):
            first = int(input_ids[i, 0])
            for j in range(t):
                row = self.rows.get((first, int(input_ids[i, j])))
                if row is not None:
                    logits[i, j] = row
        return SimpleNamespace(logits=logits)


# Two-choice toy: context "Question: Q?\nAnswer:", choices "aa" (A) and "b" (B).
TOY_TABLE = {
    ("Q", ":"): {" ": 0.5}, ("Q", " "): {"a": 0.12, "b": 0.3}, ("Q", "a"): {"a": 0.9},
    ("A", ":"): {" ": 0.5}, ("A", " "): {"a": 0.3, "b": 0.1}, ("A", "a"): {"a": 0.9},
}
L_A = math.log(0.5) + math.log(0.12) + math.log(0.9)
L_B = math.log(0.5) + math.log(0.3)
U_A = math.log(0.5) + math.log(0.3) + math.log(0.9)
U_B = math.log(0.5) + math.log(0.1)


@pytest.fixture
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture
def toy_model() -> FirstTokenBigramLM:
    return FirstTokenBigramLM(TOY_TABLE)


@pytest.fixture
def toy_expected() -> dict[str, float]:
    """Hand-computed log-probabilities of the toy's choices (conditional L_*, unconditional U_*)."""
    return {"L_A": L_A, "L_B": L_B, "U_A": U_A, "U_B": U_B}


@pytest.fixture
def uniform_lm():
    """Factory: ``uniform_lm(vocab)`` -> a UniformLM."""
    return UniformLM

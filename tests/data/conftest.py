"""Helpers for the data tests: tiny synthetic corpora whose tokens reveal their language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Token-id ranges per language: a token's value tells which corpus it came from.
LANG_BASE = {"fr": 1000, "de": 2000, "en": 3000}
EOS = 0


class DigitTokenizer:
    """Whitespace tokenizer over integer words ("1003 1010" -> [1003, 1010]); EOS = 0."""

    eos_token_id = EOS

    def __len__(self) -> int:
        return 10_000

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [[int(w) for w in t.split()] for t in texts]}


def make_docs(lang: str, n: int, seed: int = 0) -> list[str]:
    """n documents of varying length (1..40 tokens) drawn from the language's id range."""
    base = LANG_BASE[lang]
    docs = []
    for i in range(n):
        length = 1 + (i * 7 + seed) % 40
        docs.append(" ".join(str(base + (i * 31 + j * 17 + seed) % 997 + 1) for j in range(length)))
    return docs


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"doc{i}", "text": t}) + "\n")
    return path


def expected_stream(docs: list[str], n_tokens: int) -> list[int]:
    """The packed token stream of a corpus (docs + EOS, cycling over epochs), first n_tokens."""
    out: list[int] = []
    while len(out) < n_tokens:
        for d in docs:
            out += [int(w) for w in d.split()] + [EOS]
    return out[:n_tokens]


@pytest.fixture
def digit_tokenizer() -> DigitTokenizer:
    return DigitTokenizer()


@pytest.fixture
def corpora(tmp_path: Path) -> Path:
    """A corpora dir laid out like `make data` output: <lang>/{train,heldout}.jsonl and en_pubmed/heldout.jsonl."""
    root = tmp_path / "corpora"
    for lang, n in (("fr", 60), ("de", 45), ("en", 50)):
        write_jsonl(root / lang / "train.jsonl", make_docs(lang, n))
        write_jsonl(root / lang / "heldout.jsonl", [f"{lang} heldout {i}" for i in range(5)])
    write_jsonl(root / "en_pubmed" / "heldout.jsonl", [f"pubmed abstract {i}" for i in range(7)])
    return root


@pytest.fixture
def make_dm(corpora: Path, digit_tokenizer: DigitTokenizer):
    """Factory: a MixedLanguageDataModule over the synthetic corpora with small defaults (token shards in the
    test's own folder)."""
    from nr_lightning.data import MixedLanguageDataModule

    def _make(**overrides):
        kw = {"corpora_dir": str(corpora), "seq_len": 16, "batch_size": 4,
              "tokens_dir": str(corpora.parent / "tokens")}
        kw.update(overrides)
        return MixedLanguageDataModule(tokenizer=digit_tokenizer, **kw)

    return _make


@pytest.fixture
def data_helpers():
    """The helper functions above (tests can't import conftest under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(write_jsonl=write_jsonl, make_docs=make_docs, expected_stream=expected_stream,
                           LANG_BASE=LANG_BASE, EOS=EOS)

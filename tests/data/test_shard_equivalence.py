"""The shard-backed stream yields exactly the sequences of the packing it replaced (tokenise on the fly, skip
by reading), kept as an oracle in tests/data/reference_packing.py: same config and corpora, random and
stratified mixing, weighted languages, 1 and 2 ranks, dataloader workers, resumed starts."""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from nr_lightning.data import MixedLanguageDataModule, open_source
from nr_lightning.data import packing as live

_spec = importlib.util.spec_from_file_location("reference_packing", Path(__file__).with_name("reference_packing.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def _reference_stream(dm, rank: int, world_size: int, start: int):
    c, tok = dm.config, dm.tokenizer
    sources = [open_source(dm.train_source(lang), c.text_field) for lang in dm.languages]
    return ref.MixedLanguageStream(sources, tok, int(tok.eos_token_id), len(c.learn), c.p, c.seq_len, c.seed,
                                   c.batch_size, start=start, rank=rank, world_size=world_size, names=dm.languages,
                                   weights=dm.language_weights(), stratified=c.mixing == "stratified")


def _rows(stream, n: int) -> list[tuple]:
    return [(tuple(x["input_ids"].tolist()), x["domain"], x["lang"]) for x in itertools.islice(iter(stream), n)]


def _assert_same(dm, n: int, world_size: int = 1, start: int = 0, workers: int = 1, monkeypatch=None) -> None:
    for rank in range(world_size):
        for worker in range(workers):
            if workers > 1:  # each worker's share, as a DataLoader worker process would compute it
                info = SimpleNamespace(num_workers=workers, id=worker)
                monkeypatch.setattr(live, "get_worker_info", lambda info=info: info)
                monkeypatch.setattr(ref, "get_worker_info", lambda info=info: info)
            want = _rows(_reference_stream(dm, rank, world_size, start), n)
            got = _rows(dm.train_dataset(rank=rank, world_size=world_size, start=start), n)
            assert got == want, f"rank {rank}/{world_size}, worker {worker}/{workers}, start {start}"


CASES = {
    "random-weighted": dict(p=0.3, learn=["fr", "de"], retain=["en"], weights={"fr": 3.0}, seq_len=13, batch_size=5),
    "stratified": dict(p=0.25, learn=["fr", "de"], retain=["en"], mixing="stratified", seq_len=16, batch_size=4),
    "learn-only": dict(p=0.0, learn=["de"], retain=["en"], seq_len=7, batch_size=3),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("world_size", [1, 2])
def test_same_sequences_as_the_old_packing(make_dm, case, world_size):
    dm = make_dm(**CASES[case])
    n = 300 * dm.config.batch_size // world_size  # the first 300 global batches, many epochs of every corpus
    _assert_same(dm, n, world_size)
    _assert_same(dm, 40, world_size, start=1237)  # a resumed start mid-epoch


def test_same_sequences_with_workers(make_dm, monkeypatch):
    dm = make_dm(**CASES["random-weighted"])
    _assert_same(dm, 60, world_size=2, workers=2, start=30, monkeypatch=monkeypatch)


def test_same_sequences_real_tokenizer(tmp_path, smollm2_tokenizer, fixtures_dir, data_helpers):
    """A real BPE tokenizer through datatrove's DocumentTokenizer gives the ids the old per-batch call gave."""
    import json

    for lang in ("fr", "en"):
        lines = (fixtures_dir / "text" / f"sentences_{lang}_dev.jsonl").read_text().splitlines()[:60]
        data_helpers.write_jsonl(tmp_path / "c" / lang / "train.jsonl", [json.loads(x)["text"] for x in lines])
    dm = MixedLanguageDataModule(tokenizer=smollm2_tokenizer, corpora_dir=str(tmp_path / "c"), p=0.5, seq_len=64,
                                 batch_size=4, tokens_dir=str(tmp_path / "tokens"))
    _assert_same(dm, 200)


@pytest.mark.slow
def test_same_sequences_on_the_default_corpora():
    """The default corpora (``make data``) and tokenizer, stratified and random, 1 and 2 ranks: first 300
    batches of the default config."""
    from nr_lightning.backbone import cache_dir

    corpora = cache_dir() / "corpora"
    assert (corpora / "fr" / ".done").exists(), f"run `make data` first: {corpora} is not prepared"
    for mixing in ("random", "stratified"):
        dm = MixedLanguageDataModule(mixing=mixing, p=0.1, batch_size=10, seq_len=256,
                                     tokens_dir=os.environ.get("NRL_TEST_TOKENS", ""))
        for world_size in (1, 2):
            _assert_same(dm, 300 * 10 // world_size, world_size)

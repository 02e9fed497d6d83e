"""Token shards: tokenised once (cache keyed by content and tokenizer), read only where a reader yields,
resumed without reading what is skipped, damaged shards refused with the rebuild command."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from nr_lightning.data.shards import TokenShards, prepare_shards
from nr_lightning.data.sources import DataSourceError


class CountingTokenizer:
    """The tests' digit tokenizer, counting the documents it tokenises."""

    eos_token_id = 0

    def __init__(self) -> None:
        self.docs = 0

    def __len__(self) -> int:
        return 10_000

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        ids = [[int(w) for w in t.split()] for t in texts]  # (the tokenizer-identity probe fails here: not counted)
        self.docs += len(texts)
        return {"input_ids": ids}


@pytest.fixture
def counting():
    return CountingTokenizer()


def _dm(corpora, tok, **kw):
    from nr_lightning.data import MixedLanguageDataModule

    return MixedLanguageDataModule(tokenizer=tok, corpora_dir=str(corpora), tokens_dir=str(corpora.parent / "tokens"),
                                   seq_len=16, batch_size=4, **{"p": 0.3, "learn": ["fr", "de"], **kw})


def test_tokenised_once_and_resume_reads_nothing_it_skips(corpora, counting):
    dm = _dm(corpora, counting)
    ref = list(itertools.islice(iter(dm.train_dataset(start=0)), 400))
    assert counting.docs == 60 + 45 + 50  # fr, de, en: every document exactly once
    counting.docs = 0
    dm2 = _dm(corpora, counting)  # a new process would see the same: the cache is on disk
    ds = dm2.train_dataset(start=350)
    got = list(itertools.islice(iter(ds), 50))
    assert counting.docs == 0  # nothing tokenised again
    assert ds.tokens_read() == 50 * 16  # only the yielded sequences' tokens were read, not the 350 skipped
    assert all(a["input_ids"].tolist() == b["input_ids"].tolist() for a, b in zip(ref[350:], got))


@pytest.mark.parametrize("world_size,workers", [(1, 1), (3, 2)])
def test_readers_read_only_their_share(corpora, counting, world_size, workers):
    n_batches = 6  # per worker
    total = 0
    for r in range(world_size):
        ds = _dm(corpora, counting).train_dataset(rank=r, world_size=world_size, start=40)
        for w in range(workers):
            list(itertools.islice(ds.iter_worker(w, workers), n_batches * 4))
        total += ds.tokens_read()
    assert total == world_size * workers * n_batches * 4 * 16  # read == trained, across all readers


def test_changed_corpus_is_tokenised_again(corpora, counting, data_helpers):
    a = prepare_shards(str(corpora / "fr" / "train.jsonl"), counting, corpora.parent / "tokens")
    data_helpers.write_jsonl(corpora / "fr" / "train.jsonl", data_helpers.make_docs("fr", 10, seed=3))
    b = prepare_shards(str(corpora / "fr" / "train.jsonl"), counting, corpora.parent / "tokens")
    assert a.path != b.path and b.n_docs == 10 and a.n_docs == 60


def test_tasks_split_files_in_order(tmp_path, counting, data_helpers):
    for i in range(3):
        data_helpers.write_jsonl(tmp_path / "src" / f"part{i}.jsonl", data_helpers.make_docs("de", 7 + i, seed=i))
    one = prepare_shards(str(tmp_path / "src"), counting, tmp_path / "t1", tasks=1)
    two = prepare_shards(str(tmp_path / "src"), counting, tmp_path / "t2", tasks=2, workers=1)  # one process: fast
    assert len(two.files) == 2 and two.n_tokens == one.n_tokens
    assert np.array_equal(two.read(0, two.n_tokens), one.read(0, one.n_tokens))
    assert np.array_equal(one.read(one.n_tokens - 3, 6), np.r_[one.read(one.n_tokens - 3, 3), one.read(0, 3)])


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_damaged_shard_names_file_and_rebuild_command(corpora, counting, damage):
    dm = _dm(corpora, counting)
    dm.setup("fit")
    shards = dm._shards[0]
    ds = shards.path / shards.files[0]["name"]
    if damage == "truncate":
        ds.write_bytes(ds.read_bytes()[:-2])
    elif damage == "flip":
        data = bytearray(ds.read_bytes())
        data[5] ^= 0xFF
        ds.write_bytes(bytes(data))
    else:
        (shards.path / "manifest.json").unlink()
    with pytest.raises(DataSourceError, match=r"'fr'.*token shard.*(\.ds|manifest).*python -m nr_lightning.data.shards "
                                              r".*--rebuild") as e:
        _dm(corpora, counting).setup("fit")
    assert "\n" not in str(e.value)
    prepare_shards(str(corpora / "fr" / "train.jsonl"), counting, corpora.parent / "tokens", rebuild=True).check()


def test_manifest_and_datatrove_files(corpora, counting):
    s = prepare_shards(str(corpora / "de" / "train.jsonl"), counting, corpora.parent / "tokens")
    man = json.loads((s.path / "manifest.json").read_text())
    assert man["docs"] == 45 and man["token_size"] == 2 and s.files[0]["name"].endswith(".ds")
    ends = np.fromfile(s.path / (s.files[0]["name"] + ".index"), dtype="<u8")
    assert len(ends) == 45 and ends[-1] == s.n_tokens and int(s.read(int(ends[0]) - 1, 1)[0]) == 0  # EOS ends a doc
    assert isinstance(TokenShards(s.path), TokenShards)


def test_resume_on_a_changed_corpus_is_refused(corpora, counting, data_helpers):
    dm = _dm(corpora, counting)
    dm.setup("fit")
    state = dm.state_dict()
    assert set(state["corpora"]) == {"fr", "de", "en"}
    _dm(corpora, counting).load_state_dict(state)  # same corpora: accepted
    data_helpers.write_jsonl(corpora / "fr" / "train.jsonl", data_helpers.make_docs("fr", 12, seed=5))
    with pytest.raises(DataSourceError, match=r"training corpus changed since the checkpoint for fr .*"
                                              r"overwrite=true or a new run dir"):
        dm2 = _dm(corpora, counting)
        dm2.load_state_dict(state)
        dm2.setup("fit")


def test_checkpoint_carries_the_languages_positions(corpora, counting, monkeypatch):
    """A resume takes each language's position from the checkpoint: it neither reads nor counts from 0."""
    from nr_lightning.data.packing import MixedLanguageStream

    dm = _dm(corpora, counting)
    it = iter(dm.train_dataloader())
    for _ in range(30):
        next(it)
    state = dm.state_dict()
    expected = [next(it)["input_ids"].tolist() for _ in range(3)]
    assert sum(state["positions"]["language_counts"]) == 120
    monkeypatch.setattr(MixedLanguageStream, "counts_before", lambda *a, **k: pytest.fail("counted from 0"))
    dm2 = _dm(corpora, counting)
    dm2.load_state_dict(json.loads(json.dumps(state)))
    got = [b["input_ids"].tolist() for b in itertools.islice(iter(dm2.train_dataloader()), 3)]
    assert got == expected


def test_one_task_prints_one_line_of_its_own(corpora, counting, capfd):
    """`make data` (quiet=False, one task) says what it tokenises once: ours, not also datatrove's INFO line."""
    prepare_shards(str(corpora / "de" / "train.jsonl"), counting, corpora.parent / "tokens", quiet=False)
    err = capfd.readouterr().err
    assert err.count("data: tokenising") == 1 and "Tokenizing in" not in err

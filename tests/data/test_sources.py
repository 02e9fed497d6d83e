"""Streaming text sources: formats, directories/globs, sharding and error messages."""

from __future__ import annotations

import gzip
import json

import pytest

from nr_lightning.data.sources import DataSourceError, TextSource, open_source, worker_shard


@pytest.fixture
def shards(tmp_path):
    """Three shard files of different formats in one directory (as data_prep might write them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "shards"
    d.mkdir()
    with gzip.open(d / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps({"text": f"gz doc {i}", "url": "x"}) + "\n")
    pq.write_table(pa.table({"text": [f"pq doc {i}" for i in range(4)], "id": list(range(4))}), d / "b.parquet")
    sub = d / "sub"
    sub.mkdir()
    (sub / "c.jsonl").write_text("".join(json.dumps({"text": f"jl doc {i}"}) + "\n" for i in range(3)))
    (d / "README.md").write_text("ignored: not a data file")
    return d


def test_directory_is_sorted_and_recursive(shards):
    texts = list(TextSource(str(shards)))
    assert texts == [f"gz doc {i}" for i in range(5)] + [f"pq doc {i}" for i in range(4)] + \
        [f"jl doc {i}" for i in range(3)]


def test_glob(shards):
    assert list(open_source(str(shards / "*.jsonl.gz"))) == [f"gz doc {i}" for i in range(5)]
    assert len(list(open_source(str(shards / "**" / "*.jsonl")))) == 3


def test_txt_one_doc_per_line(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("first doc\n\n  \nsecond doc\n")
    assert list(open_source(p)) == ["first doc", "second doc"]


def test_text_field(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"content": "hello"}) + "\n")
    assert list(open_source(p, text_field="content")) == ["hello"]
    with pytest.raises(DataSourceError, match=r"a.jsonl:1: expected a JSON object with a 'text' field"):
        list(open_source(p))


def test_sharding_is_disjoint_and_complete(shards):
    src = TextSource(str(shards))
    full = list(src)
    parts = [list(src.iter_texts(i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(full)
    assert parts[1] == full[1::3]
    assert worker_shard(rank=1, world_size=4) == (1, 4)  # outside a dataloader worker


def test_missing_path_message(tmp_path):
    missing = tmp_path / "nope" / "train.jsonl"
    with pytest.raises(DataSourceError, match=r"nope/train.jsonl' does not exist.*make data.*fix the path"):
        list(open_source(missing))


def test_empty_file_and_dir_messages(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataSourceError, match=r"empty.jsonl' holds no documents"):
        open_source(tmp_path / "empty.jsonl").validate()
    with pytest.raises(DataSourceError, match="holds no documents"):
        list(open_source(tmp_path / "empty.jsonl"))
    (tmp_path / "d").mkdir()
    with pytest.raises(DataSourceError, match=r"directory .*d' holds no .*jsonl.*no documents"):
        list(open_source(tmp_path / "d"))
    with pytest.raises(DataSourceError, match="glob matches no"):
        list(open_source(str(tmp_path / "d" / "*.jsonl")))


def test_corrupt_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"text": "ok"}) + "\n\n" + '{"text": "trunc\n')
    it = iter(open_source(p))
    assert next(it) == "ok"
    with pytest.raises(DataSourceError, match=r"bad.jsonl:3: corrupt JSON line"):
        next(it)


def test_unsupported_and_bad_parquet(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataSourceError, match="unsupported file type"):
        list(open_source(tmp_path / "x.csv"))
    (tmp_path / "y.parquet").write_text("not parquet")
    with pytest.raises(DataSourceError, match="not a readable parquet"):
        list(open_source(tmp_path / "y.parquet"))


def test_hf_spec_parsing_and_streaming(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        return iter([{"text": "a"}, {"text": " "}, {"text": "b"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(open_source("hf:wikimedia/wikipedia:20231101.fr@train")) == ["a", "b"]
    assert list(open_source("hf:some/ds")) == ["a", "b"]
    assert calls == [("wikimedia/wikipedia", "20231101.fr", "train", True), ("some/ds", None, "train", True)]
    with pytest.raises(DataSourceError, match="rows have no 'content' field"):
        list(open_source("hf:some/ds", text_field="content"))


def test_corrupt_json_message_reads_cleanly(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "unterminated')  # json's message ends in "at": it once read "at at column"
    with pytest.raises(DataSourceError, match=r"bad.jsonl:1: corrupt JSON line \(Unterminated string starting at: "
                                              r"column 10\); fix or remove the line"):
        open_source(p).validate()


def test_non_utf8_bytes_name_the_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataSourceError, match=r"latin1.jsonl:2: not UTF-8 text"):
        open_source(p).validate()
    assert open_source(p).validate(full=False) == 1

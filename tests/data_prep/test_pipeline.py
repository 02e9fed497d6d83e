"""The whole pipeline on a tiny real WARC: target language only, no duplicated paragraph,
bad input counted, parallel tasks == one task, resumable, deterministic, early errors."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from data_prep.config import ConfigError, PrepConfig, parse_cli
from data_prep.pipeline import run
from data_prep.warc import DE_PAGES, EN_PAGES, FR_PAGES, build_test_warc, page_url, write_warc


def _cfg(inputs: list[Path], out: Path, lid: Path, **kw) -> PrepConfig:
    args = [f"input={','.join(map(str, inputs))}", "lang=fr", f"output={out}", f"lid.model={lid}",
            "quality.model=none", "progress=false", "tokenizer=none"] + [f"{k}={v}" for k, v in kw.items()]
    return parse_cli(PrepConfig, args, list_keys=("input",))


@pytest.fixture(scope="module")
def two_warcs(html_pages: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two WARC files; the second holds a mirror of a page of the first (cross-file duplicate paragraphs)."""
    d = tmp_path_factory.mktemp("warcs")
    a = write_warc(d / "a.warc.gz", [(page_url(n), (html_pages / n).read_bytes(), "text/html")
                                     for n in FR_PAGES[:4] + DE_PAGES[:2] + EN_PAGES[:2]])
    b = build_test_warc(html_pages, d / "b.warc.gz", names=FR_PAGES[4:] + DE_PAGES[2:] + EN_PAGES[2:], mirror=False)
    mirror = write_warc(d / "c.warc.gz", [("https://mirror.example.fr/", (html_pages / FR_PAGES[1]).read_bytes(),
                                           "text/html")])
    return [a, b, mirror]


def _paragraphs(recs: list[dict]) -> Counter:
    return Counter(p for r in recs for p in r["text"].split("\n"))


def test_pipeline_on_test_warc(test_warc: Path, lid_model: Path, tmp_path: Path, helpers) -> None:
    stats = run(_cfg([test_warc], tmp_path / "out", lid_model, tokenizer="tiny", tokens_dir=tmp_path / "tok"))
    recs = helpers.shards(tmp_path / "out")
    tok = stats["token_shards"]  # the pipeline ends with token shards that training reads
    assert tok["docs"] == len(recs) and tok["tokens"] > len(recs) and tok["path"].startswith(str(tmp_path / "tok"))
    assert recs and all(r["lang"] == "fr" and r["lang_score"] >= 0.65 for r in recs)
    assert set(recs[0]) >= {"text", "url", "lang", "lang_score", "quality_score"}
    assert max(_paragraphs(recs).values()) == 1  # no duplicated paragraph
    assert not any(r["url"].startswith("https://mirror.") for r in recs)  # the mirror is all duplicates
    bad = stats["bad_input"]
    assert bad["truncated_record"] + bad["corrupt_record"] >= 1
    assert bad["empty_page"] == 1 and bad["no_paragraphs"] == 1 and bad["non_html"] == 1 and bad["non_utf8"] >= 1
    assert any(r["url"] == "https://latin1.example.fr/" for r in recs)
    assert stats["paragraphs"]["removed"] > 0 and stats["output_docs"] == len(recs)
    assert (tmp_path / "out" / "stats.json").is_file() and stats["throughput"]["records_per_s"] > 0
    lid_step = next(s for s in stats["steps"] if "LID" in s["step"])
    assert lid_step["dropped_lang_de"] >= 1 and lid_step["dropped_lang_en"] >= 1


def test_two_parallel_tasks_equal_one_task(two_warcs: list[Path], lid_model: Path, tmp_path: Path, helpers) -> None:
    run(_cfg(two_warcs, tmp_path / "one", lid_model, tasks=1))
    run(_cfg(two_warcs, tmp_path / "two", lid_model, tasks=2, workers=2, **{"dedup.buckets": 3}))
    one, two = helpers.shards(tmp_path / "one"), helpers.shards(tmp_path / "two")
    assert len(list((tmp_path / "two").glob("*.jsonl.gz"))) == 2
    assert _paragraphs(one) == _paragraphs(two)
    assert max(_paragraphs(two).values()) == 1
    assert sorted((r["url"], r["text"]) for r in one) == sorted((r["url"], r["text"]) for r in two)


def test_resume_and_determinism(two_warcs: list[Path], lid_model: Path, tmp_path: Path, helpers) -> None:
    out = tmp_path / "out"
    run(_cfg(two_warcs, out, lid_model, tasks=2, workers=1))
    first = {p.name: gzip.decompress(p.read_bytes()) for p in out.glob("*.jsonl.gz")}
    log = out / "_logs" / "1_extract" / "completions"
    mtimes = {p.name: p.stat().st_mtime_ns for p in log.iterdir()}
    run(_cfg(two_warcs, out, lid_model, tasks=2, workers=1))  # resumes: nothing left to do
    assert {p.name: p.stat().st_mtime_ns for p in log.iterdir()} == mtimes
    # a fresh run gives the same bytes
    run(_cfg(two_warcs, tmp_path / "again", lid_model, tasks=2, workers=1))
    again = {p.name: gzip.decompress(p.read_bytes()) for p in (tmp_path / "again").glob("*.jsonl.gz")}
    assert first == again
    with pytest.raises(ConfigError, match="different options"):
        run(_cfg(two_warcs, out, lid_model, tasks=2, **{"lid.threshold": 0.9}))


def test_parquet_output_with_quality_model(test_warc: Path, lid_model: Path, tmp_path: Path, helpers, capfd) -> None:
    from data_prep.quality import TrainConfig, train

    pos = helpers.jsonl(tmp_path / "pos.jsonl.gz", [{"text": t} for t in helpers.fr * 20])
    train(TrainConfig(positives=[str(pos)], negatives=[str(test_warc)], out=str(tmp_path / "q.bin"), epoch=3,
                      holdout=0.0, balance=False, bucket=10000, dim=8))
    cfg = _cfg([test_warc], tmp_path / "out", lid_model, format="parquet", **{"quality.model": tmp_path / "q.bin",
                                                                            "quality.threshold": 0.0})
    capfd.readouterr()
    stats = run(cfg)
    recs = helpers.shards(tmp_path / "out")
    assert recs and all(isinstance(r["quality_score"], float) for r in recs)
    assert stats["output_docs"] == len(recs)
    # the libraries' banners and per-task lines go to each stage's terminal.log; the terminal gets one line a stage
    out, err = capfd.readouterr()
    stages = sorted((tmp_path / "out" / "_logs").glob("*/terminal.log"))
    assert len(stages) >= 2 and all("Launching pipeline" in p.read_text() for p in stages), stages
    assert out.startswith("data_prep run:") and "| INFO" not in out, out  # stdout: our summary only
    assert [ln.split(":")[0] for ln in err.splitlines()] == ["[data_prep] " + p.parent.name for p in stages], err


def test_errors_before_any_work(test_warc: Path, lid_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="matches no file"):
        run(_cfg([tmp_path / "missing.warc.gz"], out, lid_model))
    with pytest.raises(ConfigError, match="language-ID model .* not found"):
        run(_cfg([test_warc], out, tmp_path / "nope.ftz"))
    with pytest.raises(ConfigError, match="quality model .* not found"):
        run(_cfg([test_warc], out, lid_model, **{"quality.model": tmp_path / "q.bin"}))
    with pytest.raises(ConfigError, match="Valid: .*fr"):
        run(_cfg([test_warc], out, lid_model, lang="xx"))
    assert not out.exists()
    with pytest.raises(ConfigError, match="unknown key 'qualty'. Valid keys: .*quality.model"):
        parse_cli(PrepConfig, ["input=a", "lang=fr", "output=o", "qualty.model=x"])
    with pytest.raises(ConfigError, match=r"expected one of \[jsonl, parquet\]"):
        parse_cli(PrepConfig, ["input=a", "lang=fr", "output=o", "format=csv"])


def test_default_pipeline_sets_itself_up(test_warc: Path, lid_model: Path, tmp_path: Path, monkeypatch,
                                         capsys) -> None:
    """No lid.model / quality.model given: the LID model is fetched on first use (here: the fetch is the
    fixture's), a missing quality model skips the filter with one line, and NRL_CACHE picks the cache."""
    import data_prep
    import data_prep.models
    from data_prep.pipeline import resolve

    monkeypatch.delenv("DATA_PREP_CACHE", raising=False)
    monkeypatch.setenv("NRL_CACHE", str(tmp_path / "cache"))
    assert data_prep.cache_dir() == tmp_path / "cache"
    fetched = []
    monkeypatch.setattr(data_prep.models, "ensure_lid_model", lambda: fetched.append(1) or lid_model)
    cfg = parse_cli(PrepConfig, [f"input={test_warc}", "lang=fr", f"output={tmp_path / 'out'}", "progress=false"],
                    list_keys=("input",))
    r = resolve(cfg)
    err = capsys.readouterr().err
    assert fetched and r.lid.model == str(lid_model) and "fetching the language-ID model" in err
    assert r.quality.model == "none"
    skip = [ln for ln in err.splitlines() if "quality filter skipped" in ln]
    assert len(skip) == 1 and str(tmp_path / "cache" / "models" / "quality_fr.bin") in skip[0]
    assert "python -m data_prep.quality train" in skip[0]

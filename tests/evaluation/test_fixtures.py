"""The evaluation fixtures ship inside the package: every file is packaged, documented and found by path."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from nr_lightning.evaluation import FIXTURES, fixture_path

REPO = Path(__file__).resolve().parents[2]


def _shipped() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file())


def test_every_fixture_is_package_data_and_listed_in_sources():
    files = _shipped()
    assert "text/pubmed_en_more.jsonl" in files and "benchmarks/arc_easy_fr.jsonl" in files
    # the line of [tool.setuptools.package-data] (tomllib is not in Python 3.10)
    line = re.search(r'^"nr_lightning\.evaluation" = (\[.*\])$', (REPO / "pyproject.toml").read_text(), re.M)
    globs = [g.removeprefix("data/") for g in json.loads(line[1])]
    unpackaged = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not unpackaged, f"not in pyproject package-data: {unpackaged}"
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    assert [f for f in files if f.endswith(".jsonl") and f"| {f} |" not in sources] == []


def test_fixture_path_finds_the_forgetting_set_and_fails_clearly():
    path = fixture_path("text/pubmed_en_more.jsonl")
    assert path.is_file() and sum(1 for line in path.open(encoding="utf-8") if line.strip()) == 450
    with pytest.raises(FileNotFoundError, match=r"error: fixture 'text/nope.jsonl' not found.*pubmed_en_more"):
        fixture_path("text/nope.jsonl")


OUTSIDE = "/".join(("..", "shared"))  # the sibling folder a clone does not have (spelled so this file does not name it)


def test_nothing_reads_outside_the_repository():
    roots = [REPO / d for d in ("nr_lightning", "tests", "benchmarks", "data_prep", "experiments", ".ci")]
    files = [p for r in roots for p in r.rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".sh", ""}]
    files += [REPO / "Makefile"]
    offenders = [str(p.relative_to(REPO)) for p in files if p != Path(__file__)
                 and any(s in p.read_text(encoding="utf-8", errors="ignore") for s in (OUTSIDE, '"shared" /'))]
    assert offenders == []

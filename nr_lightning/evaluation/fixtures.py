"""The small real evaluation files shipped inside the package (``nr_lightning/evaluation/data``).

``benchmarks/`` holds the offline multiple-choice task files, ``text/`` the held-out text (PubMed
abstracts, web sentences in en/fr/de); ``data/SOURCES.md`` gives the source, selection rule and
licence of every file (the Okapi fr/de files are CC BY-NC 4.0).
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "data"
BENCHMARKS = FIXTURES / "benchmarks"
TEXT = FIXTURES / "text"


def fixture_path(relative: str) -> Path:
    """Path of a shipped fixture, e.g. ``fixture_path("text/pubmed_en_more.jsonl")``.

    Raises FileNotFoundError naming the file and what ships when it is missing (a broken install),
    so a caller never silently falls back to another source.
    """
    path = FIXTURES / relative
    if not path.is_file():
        shipped = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.jsonl"))
        raise FileNotFoundError(f"error: fixture {relative!r} not found at {path}; shipped: {', '.join(shipped) or 'none'}"
                                " (reinstall the package: its package-data includes evaluation/data)")
    return path

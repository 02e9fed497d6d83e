"""The committed results are what the archived runs give: `make repro-report` regenerates the report byte for
byte from docs/results/repro/runs, and docs/reproduction.md quotes the report's tables verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "results" / "repro"
# the plots are left out: matplotlib's PNG bytes vary with its version; they are drawn from the same numbers
REPORT_FILES = ("table.md", "frontier.md", "gates.md", "base_curve.md", "runs.json", "frontier.json")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run(["make", "-s", "repro-report", f"PYBIN={sys.executable}", f"REPORT_OUT={out}"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.parametrize("name", REPORT_FILES)
def test_the_committed_report_is_what_the_archived_runs_give(regenerated: Path, name: str) -> None:
    assert (regenerated / name).read_text() == (REPORT / name).read_text(), (
        f"docs/results/repro/{name} differs from what the archived runs give: run `make repro-report`")


def _tables(text: str) -> list[list[str]]:
    """Every markdown table in `text`, as its lines (a table: consecutive lines starting with '|')."""
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_the_docs_quote_the_report_tables_verbatim() -> None:
    by_header: dict[str, list[list[str]]] = {}
    for name in REPORT_FILES:
        if name.endswith(".md"):
            for table in _tables((REPORT / name).read_text()):
                by_header.setdefault(table[0], []).append(table)
    quoted = [t for t in _tables((REPO / "docs" / "reproduction.md").read_text()) if t[0] in by_header]
    # the results, gates and matched-forgetting tables: a test that matched nothing would prove nothing
    assert len(quoted) >= 3, [t[0][:40] for t in quoted]
    for table in quoted:
        assert table in by_header[table[0]], (
            f"docs/reproduction.md quotes a stale report table ({table[0][:60]}...): copy it from docs/results/repro")

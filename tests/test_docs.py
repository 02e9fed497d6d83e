"""The README's copy of `make help` lists every Makefile target."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_lists_every_make_target():
    targets = re.findall(r"^([a-zA-Z_-]+):.*## ", (REPO / "Makefile").read_text(), re.M)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("`make help` lists every target:", 1)[1].split("```", 2)[1]
    listed = re.findall(r"^([a-zA-Z_-]+) ", block, re.M)
    assert targets and listed == targets, f"README make-help copy {listed} vs Makefile {targets}"

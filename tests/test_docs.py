"""The docs follow the code: the README's copy of `make help` lists every Makefile target; every path
and module the docs name exists."""

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


def test_docs_name_only_files_and_modules_that_exist():
    """Every repository path (`nr_lightning/...`, `experiments/...`, `benchmarks/...`) and every
    `python -m` module the README and docs/ name exists, so the docs follow the code."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "experiments" / "paper" / "README.md"]
    missing = []
    outside = {"tests/cache"}  # a folder of the resiliparse sdist that docs/data_prep.md describes, not ours
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        paths = re.findall(r"(?<![\w/.])((?:nr_lightning|experiments|benchmarks|data_prep|tests)/[\w./-]*\w)(?!<)", text)
        for path in set(paths):
            if path not in outside and "*" not in path and not (REPO / path).exists():
                missing.append(f"{doc.name}: {path}")
        for module in set(re.findall(r"python -m ((?:nr_lightning|benchmarks|data_prep)(?:\.\w+)*)(?![.\w<])", text)):
            p = REPO / module.replace(".", "/")
            if not (p.with_suffix(".py").is_file() or (p / "__main__.py").is_file()):
                missing.append(f"{doc.name}: python -m {module}")
    assert not missing, "docs name paths or modules that do not exist:\n" + "\n".join(sorted(missing))

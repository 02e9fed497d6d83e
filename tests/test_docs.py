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


def _comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    import ast
    import io
    import tokenize

    source = path.read_text(encoding="utf-8")
    out = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
           if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((node.body[0].lineno, doc))
    return out


def _module_exists(dotted: str) -> bool:
    """``a.b.c`` names a module of the checkout, or a name defined at the top of the longest module it starts with."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:i])
        file = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not file.is_file():
            continue
        if i == len(parts):
            return True
        name = re.escape(parts[i])
        return bool(re.search(rf"^\s*(def|class)\s+{name}\b|^\s*{name}\s*[:=]|^\s*(from|import)\s.*\b{name}\b|"
                              rf"[\"']{name}[\"']|^\s+{name},?$", file.read_text(encoding="utf-8"), re.M))
    return False


def test_comments_and_docstrings_name_only_paths_and_modules_that_exist():
    """A comment or docstring that sends the reader to a module after it moved is a dead end: every path and
    dotted module they name exists."""
    outside = {"tests/cache"}  # the resiliparse/trafilatura sdist's folder that data_prep unpacks, not ours
    path_re = re.compile(r"(?<![\w/.])((?:nr_lightning|experiments|benchmarks|data_prep|tests)/[\w./-]*\w|"
                         r"docs/[\w/-]+\.\w+)(?!<)")
    module_re = re.compile(r"(?<![\w/.])((?:nr_lightning|data_prep)(?:\.\w+)+)")
    missing = []
    for root in ("nr_lightning", "data_prep", "tests", "benchmarks", "experiments"):
        for file in sorted((REPO / root).rglob("*.py")):
            for line, text in _comments_and_docstrings(file):
                where = f"{file.relative_to(REPO)}:{line}"
                missing += [f"{where}: {p}" for p in set(path_re.findall(text))
                            if p not in outside and "*" not in p and not (REPO / p).exists()]
                missing += [f"{where}: {m}" for m in set(module_re.findall(text)) if not _module_exists(m)]
    assert not missing, "comments/docstrings name paths or modules that do not exist:\n" + "\n".join(sorted(missing))


def test_the_scan_catches_a_moved_module():
    assert not _module_exists("nr_lightning.merging") and _module_exists("nr_lightning.extension.merging")
    assert _module_exists("nr_lightning.extension.export.load_exported") and not _module_exists("nr_lightning.module")

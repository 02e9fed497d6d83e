"""nr_lightning.io: JSON written atomically, nothing left behind on failure."""

import json
from pathlib import Path

import pytest

from nr_lightning.io import write_json_atomic


def test_write_json_atomic_round_trip_and_overwrite(tmp_path: Path):
    f = tmp_path / "a.json"
    write_json_atomic(f, {"x": 1, "é": "ü"})
    assert json.loads(f.read_text(encoding="utf-8")) == {"x": 1, "é": "ü"}
    assert "é" in f.read_text(encoding="utf-8")  # ensure_ascii off: readable non-English text
    write_json_atomic(f, {"x": 2}, indent=None)
    assert f.read_text(encoding="utf-8") == '{"x": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_json_atomic_failure_keeps_old_file_and_no_temp(tmp_path: Path):
    f = tmp_path / "a.json"
    write_json_atomic(f, {"x": 1})
    with pytest.raises(TypeError):
        write_json_atomic(f, {"x": object()})
    assert json.loads(f.read_text(encoding="utf-8")) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_json_atomic(f, {"x": Path("p")}, default=str)
    assert json.loads(f.read_text(encoding="utf-8")) == {"x": "p"}


# ------------------------------------------------------------------ text files are UTF-8 whatever the locale
# write_json_atomic writes UTF-8 (non-English labels stay readable); a reader that used the locale's encoding
# would fail on them under a POSIX/ASCII locale, common on cluster nodes. Every text open names its encoding.
# Scanned by hand: ruff's PLW1514 (preview) only sees calls on a visible Path(...)/open and missed 41 of the
# 47 sites this scan found.

_ROOT = Path(__file__).resolve().parents[1]
_NOT_TEXT = {"os", "tarfile", "zipfile", "io"}  # their .open takes flags or a binary archive
_COMPRESSED = {"gzip", "bz2", "lzma"}  # binary unless the mode has "t"


def _unspecified_encoding(source: str) -> list[int]:
    """Lines of read_text / write_text / text-mode open calls that do not name an encoding."""
    import ast

    out = []
    for n in ast.walk(ast.parse(source)):
        if not isinstance(n, ast.Call) or any(k.arg == "encoding" for k in n.keywords):
            continue
        f = n.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in ("read_text", "write_text"):
            out.append(n.lineno)
        elif name == "open":
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
            if owner in _NOT_TEXT:
                continue
            idx = 1 if isinstance(f, ast.Name) or owner in _COMPRESSED else 0  # open(p, mode) vs path.open(mode)
            mode = next((k.value for k in n.keywords if k.arg == "mode"), n.args[idx] if len(n.args) > idx else None)
            text = mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None
            if owner in _COMPRESSED:
                if text is not None and "t" in text:
                    out.append(n.lineno)
            elif text is None or "b" not in text:
                out.append(n.lineno)
    return out


def test_scanner_flags_locale_dependent_opens():
    src = ("from pathlib import Path\nimport gzip, os\n"
           "Path('a').read_text()\n"                       # 3: flagged
           "Path('a').read_text(encoding='utf-8')\n"
           "open('a')\n"                                   # 5: flagged
           "open('a', 'rb')\n"
           "gzip.open('a', 'rt')\n"                        # 7: flagged
           "gzip.open('a')\n"
           "os.open('a', os.O_RDONLY)\n"
           "Path('a').open('w')\n")                        # 10: flagged
    assert _unspecified_encoding(src) == [3, 5, 7, 10]


def test_package_text_io_names_its_encoding():
    bad = [f"{p.relative_to(_ROOT)}:{line}" for d in ("nr_lightning", "data_prep") for p in sorted((_ROOT / d).rglob("*.py"))
           for line in _unspecified_encoding(p.read_text(encoding="utf-8"))]
    assert not bad, "text I/O without encoding='utf-8' (reads back wrong under a non-UTF-8 locale): " + ", ".join(bad)


def test_json_with_non_ascii_reads_back_under_an_ascii_locale(tmp_path: Path):
    """The reproduction report reads what the sweep archive wrote, in a process whose locale is ASCII."""
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    write_json_atomic(run / "eval.json", {"label": "neutre, α = 0", "bpb": {"en": 1.0}})
    code = ("import locale, sys; from pathlib import Path; from nr_lightning.evaluation.reproduction import load_eval; "
            "assert locale.getpreferredencoding(False) != 'UTF-8', locale.getpreferredencoding(False); "
            "print(ascii(load_eval(Path(sys.argv[1]))['label']))")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    r = subprocess.run([sys.executable, "-c", code, str(run / "eval.json")], env=env, capture_output=True, text=True,
                       encoding="utf-8", cwd=_ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ascii("neutre, α = 0")

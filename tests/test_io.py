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
    assert f.read_text() == '{"x": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_json_atomic_failure_keeps_old_file_and_no_temp(tmp_path: Path):
    f = tmp_path / "a.json"
    write_json_atomic(f, {"x": 1})
    with pytest.raises(TypeError):
        write_json_atomic(f, {"x": object()})
    assert json.loads(f.read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_json_atomic(f, {"x": Path("p")}, default=str)
    assert json.loads(f.read_text()) == {"x": "p"}

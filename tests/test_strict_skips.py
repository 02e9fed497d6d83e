"""`.ci/run` fails when the default suite skips anything but tests that need missing GPU/FSDP hardware."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import unexpected_skips


def test_only_hardware_skips_are_expected():
    assert unexpected_skips(["a: FSDP is not available on CPU", "b: needs a CUDA GPU"]) == []
    assert unexpected_skips(["c: fixture file missing", "d: PyPI unreachable"]) == ["c: fixture file missing",
                                                                                 "d: PyPI unreachable"]


@pytest.mark.parametrize("reason, strict, rc", [("no GPU here", "1", 0), ("data file missing", "1", 1),
                                                ("data file missing", "", 0)])
def test_strict_mode_fails_the_run_on_other_skips(tmp_path: Path, reason, strict, rc):
    for name in ("conftest.py", "helpers.py"):  # the conftest imports helpers (found beside it there)
        shutil.copy(Path(__file__).with_name(name), tmp_path / name)
    (tmp_path / "test_x.py").write_text(f"import pytest\n\ndef test_a():\n    pytest.skip({reason!r})\n")
    env = {**os.environ, "NRL_STRICT_SKIPS": strict}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    assert ("error: skips other than GPU/FSDP" in proc.stdout) == (rc == 1)

"""Helpers for the scale-out / fault-tolerance tests: tiny runs on the shipped text fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fixture_data_args as data_args

REPO = Path(__file__).resolve().parents[2]


def run_args(run_dir: Path, fixtures: Path, steps: int, *extra: str) -> list[str]:
    """A tiny neutral run whose loss moves visibly every step (high constant lr, no warm-up), with the
    held-out evaluations off (they would dominate the runtime)."""
    return ["method=neutral", "lang=fr", "backbone=tiny", f"trainer.max_steps={steps}", "data.p=0.5",
            "method.lr=3e-2", "optim.lr_multiplier=1", "optim.warmup_steps=0", "optim.schedule=constant", "eval.every_n_steps=0",
            "eval.at_start=false", "eval.max_docs=2", "eval.gate_stats=false", f"run_dir={run_dir}",
            *data_args(fixtures), *extra]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    env.pop("NRL_RUN_DIR", None)
    return env


def run_cli(args: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nr_lightning.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=cli_env(**env))


def flip_tensor_bytes(path: Path) -> None:
    """Flip bytes in the middle of the largest tensor record (what a bad disk or copy does)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + 4):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


class Helpers:
    """The helpers above, as a fixture (tests can't import conftest under --import-mode=importlib)."""

    repo = REPO
    data_args = staticmethod(data_args)
    run_args = staticmethod(run_args)
    cli_env = staticmethod(cli_env)
    run_cli = staticmethod(run_cli)
    flip_tensor_bytes = staticmethod(flip_tensor_bytes)


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers

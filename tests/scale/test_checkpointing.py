"""Atomic checkpoint writes and newest-valid checkpoint resolution (unit level, no training)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from nr_lightning.config import ConfigError
from nr_lightning.training.checkpointing import (
    AtomicCheckpointIO,
    checkpoint_problem,
    read_losses,
    resolve_checkpoint,
)


def _save(path: Path, step: int, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    AtomicCheckpointIO().save_checkpoint({"global_step": step, "w": torch.arange(1000.0)}, path)
    os.utime(path, (mtime, mtime))
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_atomic_save_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "ckpt" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, target)
    assert torch.load(target, weights_only=False)["global_step"] == 1
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]

    def dies_mid_write(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"global_step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False)["global_step"] == 1, "the previous checkpoint must survive"
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"], "temp file cleaned up"


def test_checkpoint_problem_detects_damage(tmp_path):
    good = _save(tmp_path / "a.ckpt", 1, 1e9)
    assert checkpoint_problem(good) is None and checkpoint_problem(good, deep=True) is None
    for keep in (0.99, 0.5, 0.01):
        bad = tmp_path / f"t{keep}.ckpt"
        bad.write_bytes(good.read_bytes()[: int(good.stat().st_size * keep)])
        assert checkpoint_problem(bad), keep
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert checkpoint_problem(tmp_path / "empty.ckpt") == "empty file"
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    assert "truncated or corrupt" in checkpoint_problem(tmp_path / "text.ckpt")


def test_last_resolves_to_newest_valid_with_warning(tmp_path):
    run = tmp_path / "run"
    _save(run / "checkpoints" / "step000002.ckpt", 2, 1_000_000)
    _save(run / "checkpoints" / "step000004.ckpt", 4, 1_000_100)
    last = _save(run / "checkpoints" / "last.ckpt", 4, 1_000_100)
    _save(run / "hpc_ckpt_1.ckpt", 5, 1_000_200)
    assert resolve_checkpoint(run, "last").name == "hpc_ckpt_1.ckpt"  # Lightning's SLURM checkpoints count too
    (run / "hpc_ckpt_1.ckpt").unlink()
    assert resolve_checkpoint(run, "last") == last  # equal mtimes: last.ckpt first
    _truncate(last)
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) last.ckpt \(truncated"):
        assert resolve_checkpoint(run, "last").name == "step000004.ckpt"
    _truncate(run / "checkpoints" / "step000004.ckpt", 0.9)
    with pytest.warns(UserWarning, match="step000004.ckpt"):
        p = resolve_checkpoint(run, "last")
    assert p.name == "step000002.ckpt" and torch.load(p, weights_only=False)["global_step"] == 2
    _truncate(p, 0.3)
    with pytest.raises(ConfigError, match="no readable checkpoint"):
        resolve_checkpoint(run, "last")


def test_resolve_fresh_explicit_and_stale_temp_files(tmp_path):
    run = tmp_path / "run"
    assert resolve_checkpoint(run, None) is None
    with pytest.warns(UserWarning, match="no checkpoint yet; starting from scratch"):
        assert resolve_checkpoint(run, "last") is None
    good = _save(run / "checkpoints" / "step000001.ckpt", 1, 1e9)
    assert resolve_checkpoint(run, str(good)) == good
    bad = run / "checkpoints" / "other.ckpt"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ConfigError, match="not a usable checkpoint"):
        resolve_checkpoint(run, str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_checkpoint(run, str(run / "nope.ckpt"))
    bad.unlink()
    host = socket.gethostname().split(".")[0]
    dead = run / "checkpoints" / f".last.ckpt.tmp-{host}-999999999"  # a writer killed by -9
    alive = run / "checkpoints" / f".last.ckpt.tmp-{host}-{os.getpid()}"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    assert resolve_checkpoint(run, "last") == good
    assert not dead.exists() and alive.exists()


def test_read_losses_last_record_wins(tmp_path):
    f = tmp_path / "losses.jsonl"
    f.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 2, "loss": 1.25}\n')
    assert read_losses(f) == {1: 2.0, 2: 1.25}

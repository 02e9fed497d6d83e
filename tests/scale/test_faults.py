"""Fault injection on the tiny backbone, through the CLI users call: a requeue signal in the first moments,
kill -9 while a checkpoint is being replaced, a damaged newest checkpoint, a corrupt record mid-file.
Each guarantee is listed in docs/reliability.md."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)


def _catches_sigusr1(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & SIGUSR1_BIT)
    return False


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _popen(h, args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nr_lightning.train", *args], cwd=h.repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=h.cli_env(**env))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads signal masks from /proc (Linux)")
def test_sigusr1_at_start_checkpoints_instead_of_dying(tmp_path, fixtures_dir, h):
    run = tmp_path / "run"
    proc = _popen(h, h.run_args(run, fixtures_dir, 3))
    try:
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline and not _catches_sigusr1(proc.pid):
            time.sleep(0.002)
        early = not _torch_loaded(proc.pid)
        proc.send_signal(signal.SIGUSR1)  # the moment the handler exists: before the config is even read
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert early, "the SIGUSR1 handler must be installed before torch is imported"
    assert proc.returncode == 3, err[-3000:]
    assert (run / "checkpoints" / "preempt-step000001.ckpt").is_file()
    from nr_lightning.train import main

    assert main([*h.run_args(run, fixtures_dir, 3), "ckpt_path=last"])["global_step"] == 3


def test_kill_while_replacing_a_checkpoint_then_damaged_newest(tmp_path, fixtures_dir, h):
    """kill -9 while last.ckpt is being replaced leaves the old last.ckpt intact; flipping bits in the newest
    checkpoint makes the resume fall back to the previous one; the forgetting curve survives both."""
    import torch

    from nr_lightning.train import main
    from nr_lightning.training.checkpointing import checkpoint_problem

    steps = 6
    args = [*h.run_args(tmp_path / "run", fixtures_dir, steps), "trainer.checkpoint_every_n_steps=2",
            "eval.every_n_steps=2", "eval.at_start=true", "eval.max_length=64"]
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    proc = _popen(h, args, NRL_TEST_SAVE_DELAY="60")  # only saves that replace a file wait: last.ckpt at step 4
    try:
        deadline = time.time() + 120
        # last.ckpt must exist before the temp file counts: the first write of last.ckpt (step 2) also has a
        # temp file, but it replaces nothing, so it is not delayed and would be gone before the kill
        while proc.poll() is None and time.time() < deadline and not (
                (ckpts / "last.ckpt").exists() and list(ckpts.glob(".last.ckpt.tmp-*"))):
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(ckpts.glob(".last.ckpt.tmp-*")), "the kill must land during the write"
    assert checkpoint_problem(ckpts / "last.ckpt", deep=True) is None
    assert torch.load(ckpts / "last.ckpt", weights_only=True, mmap=True)["global_step"] == 2
    newest = ckpts / "step000004.ckpt"
    h.flip_tensor_bytes(newest)
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) step000004.ckpt \(corrupt record"):
        result = main([*args, "ckpt_path=last"])
    assert result["global_step"] == steps and result["resumed_from"].endswith("last.ckpt")
    assert not list(ckpts.glob(".last.ckpt.tmp-*")), "the killed writer's temp file is removed on resume"
    curves = json.loads((run / "curves.json").read_text())
    assert [c["step"] for c in curves] == [0, 2, 4, 6]


def test_corrupt_record_mid_file_is_one_error_line_before_any_work(tmp_path, fixtures_dir, h):
    good = (fixtures_dir / "text" / "sentences_fr_dev.jsonl").read_bytes().splitlines(keepends=True)
    bad = tmp_path / "fr.jsonl"
    bad.write_bytes(b"".join(good[:60]) + b'{"text": "\xff\xfe broken"}\n' + b"".join(good[60:]))
    run = tmp_path / "run"
    proc = h.run_cli([*h.run_args(run, fixtures_dir, 3), f"data.new.path={bad}"], timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fr.jsonl:61: not UTF-8" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not run.exists() or not any(p for p in run.iterdir() if not p.name.startswith("."))

"""Exact resume: kill -9 mid-run, restart with ckpt_path=last, same losses as an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from nr_lightning.training.checkpointing import read_losses


def test_kill_and_resume_matches_uninterrupted(tmp_path, fixtures_dir, h):
    from nr_lightning.training.train import main

    steps, every = 8, 2
    extra = [f"trainer.checkpoint_every_n_steps={every}"]
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    main(h.run_args(ref_dir, fixtures_dir, steps, *extra))
    ref = read_losses(ref_dir / "losses.jsonl")
    assert sorted(ref) == list(range(1, steps + 1))
    assert abs(ref[steps] - ref[1]) > 1e-2, "the loss must move, or the comparison proves nothing"

    proc = subprocess.Popen([sys.executable, "-m", "nr_lightning.train", *h.run_args(run, fixtures_dir, steps, *extra)],
                            cwd=h.repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=h.cli_env(NRL_TEST_STEP_DELAY="0.4"))
    losses = run / "losses.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if losses.is_file() and any(json.loads(x)["step"] == 5 for x in losses.read_text().splitlines()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read()[-3000:]}"
        proc.send_signal(signal.SIGKILL)  # mid-interval: checkpoints exist for steps 2 and 4, not 5
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = read_losses(losses)
    assert 5 in killed and steps not in killed and proc.returncode == -signal.SIGKILL
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt", "step000002.ckpt", "step000004.ckpt"], ckpts
    # a damaged newest checkpoint (e.g. a half-finished copy) must be skipped in favour of the previous one
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])

    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) last.ckpt"):
        result = main([*h.run_args(run, fixtures_dir, steps, *extra), "ckpt_path=last"])
    assert result["global_step"] == steps and result["resumed_from"].endswith("step000004.ckpt")
    resumed = read_losses(losses)  # steps 5.. were recomputed after the restart (the last record wins)
    assert sorted(resumed) == list(range(1, steps + 1))
    for s in range(1, steps + 1):
        assert resumed[s] == pytest.approx(ref[s], abs=1e-4), (s, resumed[s], ref[s])


@pytest.mark.slow
def test_sigusr1_to_one_ddp_rank_checkpoints_all_and_resumes(tmp_path, fixtures_dir, h):
    """Outside SLURM: SIGUSR1 to rank 0 only; both ranks agree at the next step, checkpoint, exit 3; resume."""
    steps, run = 8, tmp_path / "run"
    args = [*h.run_args(run, fixtures_dir, steps), "method.alpha=0", "data.batch_size=2", "trainer.strategy=ddp",
            "trainer.devices=2", "trainer.checkpoint_every_n_steps=100"]
    proc = subprocess.Popen([sys.executable, "-m", "nr_lightning.train", *args], cwd=h.repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=h.cli_env(NRL_TEST_STEP_DELAY="0.4"))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (run / "losses.jsonl").is_file() and 3 in read_losses(run / "losses.jsonl"):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err[-4000:]
    preempt = sorted((run / "checkpoints").glob("preempt-step*.ckpt"))
    assert len(preempt) == 1 and "resume with ckpt_path=last" in err
    done = h.run_cli([*args, "ckpt_path=last"])
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Restored all states from the checkpoint at {preempt[0]}" in done.stderr
    assert sorted(read_losses(run / "losses.jsonl")) == list(range(1, steps + 1))

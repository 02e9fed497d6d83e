"""The real SLURM path on a local single-node cluster (.ci/slurm-up.sh): sbatch + srun with 2 CPU ranks
(gloo), SIGUSR1 -> checkpoint -> requeue -> resume, and sweeps as job arrays.

Run: bash .ci/slurm-up.sh && .venv/bin/python -m pytest -m slurm -q -rs tests/scale
Without a running SLURM every test here skips and says why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nr_lightning.training.checkpointing import read_losses

pytestmark = pytest.mark.slurm
SBATCH = "experiments/slurm/train.sbatch"


@pytest.fixture(scope="module")
def slurm() -> None:
    missing = [c for c in ("sbatch", "sinfo", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found): run `bash .ci/slurm-up.sh` as root")
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T %c"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM is installed but sinfo timed out: slurmctld is not running (bash .ci/slurm-up.sh)")
    states = out.stdout.split()
    if out.returncode != 0 or not states or states[0] not in ("idle", "mixed", "allocated"):
        pytest.skip(f"SLURM is installed but no node is up (sinfo rc {out.returncode}: "
                    f"{(out.stdout + out.stderr).strip()[:300]!r}); start it with `bash .ci/slurm-up.sh`")
    if int(states[1]) < 2:
        pytest.skip(f"the SLURM node has {states[1]} CPU(s); these tests need 2 tasks")


def _submit(h, tmp_path: Path, args: list[str], sbatch_opts: list[str], **env: str) -> str:
    cmd = ["sbatch", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=00:10:00",
           f"--output={tmp_path}/slurm-%j.out", *sbatch_opts, SBATCH, *args]
    proc = subprocess.run(cmd, cwd=h.repo, capture_output=True, text=True, timeout=60,
                          env=h.cli_env(NRL_PYTHON=sys.executable, **env))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _job(jid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(jid: str, out_file: Path, timeout: float = 420) -> dict[str, str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = _job(jid)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        time.sleep(1)
    subprocess.run(["scancel", jid], timeout=30)
    tail = out_file.read_text()[-4000:] if out_file.is_file() else "(no output)"
    pytest.fail(f"job {jid} did not finish in {timeout} s: {_job(jid).get('JobState')}\n{tail}")


def _args(h, fixtures: Path, root: Path, steps: int, *extra: str) -> list[str]:
    """run_args without run_dir: the sbatch script's run directory comes from the job id under runs_root."""
    args = [a for a in h.run_args(root / "unused", fixtures, steps) if not a.startswith("run_dir=")]
    # alpha=0: the loss decomposes over ranks (see test_distributed), so 2 ranks x 2 == 1 process x 4
    return [*args, "method.alpha=0", "data.batch_size=2", f"runs_root={root}", *extra]


def _reference(h, fixtures: Path, tmp_path: Path, steps: int) -> dict[int, float]:
    from nr_lightning.training.train import main

    main([*h.run_args(tmp_path / "reference", fixtures, steps), "method.alpha=0", "data.batch_size=4"])
    return read_losses(tmp_path / "reference" / "losses.jsonl")


def test_sbatch_two_ranks_match_single_process(slurm, tmp_path, fixtures_dir, h):
    steps = 4
    jid = _submit(h, tmp_path, _args(h, fixtures_dir, tmp_path, steps), [])
    info = _wait(jid, tmp_path / f"slurm-{jid}.out")
    out = (tmp_path / f"slurm-{jid}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-4000:]
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out, "both ranks must run"
    run = tmp_path / f"neutral-fr-{jid}"  # named from the job id: stable across requeues
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    got, ref = read_losses(run / "losses.jsonl"), _reference(h, fixtures_dir, tmp_path, steps)
    assert sorted(got) == list(range(1, steps + 1))
    for s in ref:
        assert got[s] == pytest.approx(ref[s], abs=1e-4), (s, got[s], ref[s])


def test_sigusr1_checkpoints_requeues_and_resumes(slurm, tmp_path, fixtures_dir, h):
    steps = 10
    jid = _submit(h, tmp_path, _args(h, fixtures_dir, tmp_path, steps, "trainer.checkpoint_every_n_steps=4"), [],
                  NRL_TEST_STEP_DELAY="0.5")  # slow steps: the signal lands mid-run, between checkpoints
    run, out_file = tmp_path / f"neutral-fr-{jid}", tmp_path / f"slurm-{jid}.out"
    deadline = time.time() + 240
    while time.time() < deadline:
        if (run / "losses.jsonl").is_file() and 5 in read_losses(run / "losses.jsonl"):
            break
        time.sleep(0.2)
    else:
        subprocess.run(["scancel", jid], timeout=30)
        pytest.fail(f"job {jid} never reached step 5:\n{out_file.read_text()[-4000:] if out_file.is_file() else ''}")
    subprocess.run(["scancel", "--signal=USR1", jid], check=True, timeout=30)
    info = _wait(jid, out_file)
    out = out_file.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, out[-4000:])
    preempt = sorted((run / "checkpoints").glob("preempt-step*.ckpt"))
    assert len(preempt) == 1, out[-4000:]
    step = int(preempt[0].stem.removeprefix("preempt-step"))
    assert 5 <= step < steps
    assert f"scontrol requeue {jid} -> rc 0" in out
    assert "restart 1:" in out and f"Restored all states from the checkpoint at {preempt[0]}" in out
    # reference: the same 2-rank gloo DDP run, uninterrupted (outside SLURM). Not the 1-process run: over 10
    # steps Adam amplifies the last-bit differences of the two reduction orders past 1e-4 (both are right).
    ref_dir = tmp_path / "reference-ddp"
    proc = h.run_cli([*h.run_args(ref_dir, fixtures_dir, steps), "method.alpha=0", "data.batch_size=2",
                      "trainer.strategy=ddp", "trainer.devices=2"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    got, ref = read_losses(run / "losses.jsonl"), read_losses(ref_dir / "losses.jsonl")
    assert sorted(got) == sorted(ref) == list(range(1, steps + 1))
    for s in ref:
        assert got[s] == pytest.approx(ref[s], abs=1e-4), (s, got[s], ref[s])


def test_sweep_as_job_array(slurm, tmp_path, fixtures_dir, h):
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("# budgets\nmethod.budget=0.1 name=b10\n\nmethod.budget=0.3 name=b30\n")
    jid = _submit(h, tmp_path, _args(h, fixtures_dir, tmp_path, 1), ["--array=0-1", "--ntasks-per-node=1"],
                  NRL_SWEEP=str(sweep))
    for task in (0, 1):
        info = _wait(f"{jid}_{task}", tmp_path / f"slurm-{jid}.out")
        assert info["JobState"] == "COMPLETED", info
    import json

    budgets = {name: json.loads((tmp_path / name / "metrics.json").read_text())["config"]["method"]["budget"]
               for name in ("b10", "b30")}
    assert budgets == {"b10": 0.1, "b30": 0.3}

"""Readable logs: plain progress lines when stdout is a file, third-party noise filtered, real warnings kept."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from helpers import fixture_data_args
from nr_lightning.training.progress import (
    PlainProgress,
    StepProgressBar,
    progress_callback,
    quiet_third_party,
)

REPO = Path(__file__).resolve().parents[2]


def test_train_cli_with_stdout_to_a_file_prints_plain_progress(tmp_path, fixtures_dir):
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    args = ["method=neutral", "lang=fr", "backbone=tiny", "trainer.max_steps=4", "eval.every_n_steps=2",
            "eval.max_docs=2", "eval.gate_stats=false", f"run_dir={tmp_path / 'run'}", *fixture_data_args(fixtures_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with out.open("w") as fo, err.open("w") as fe:
        rc = subprocess.run([sys.executable, "-m", "nr_lightning.train", *args], stdout=fo, stderr=fe, env=env,
                            cwd=REPO, timeout=600).returncode
    stdout, stderr = out.read_text(), err.read_text()
    assert rc == 0, stderr[-3000:]
    lines = [ln for ln in stdout.splitlines() if ln.startswith("[nr-lightning] step ")]
    # 4 steps: ~2% of the run rounds to every step
    assert [re.search(r"step (\d+)/4", ln).group(1) for ln in lines] == ["1", "2", "3", "4"], stdout
    last = lines[-1]
    for field in ("lm_loss ", "sparsity ", "gate_bce ", "lr ", "tok/s ", "elapsed ", "eta 0:00:00", "bpb "):
        assert field in last, (field, last)
    assert re.search(r"bpb (en|fr)=\d\.\d{4} .*\(step 4\)", last), last
    assert "Epoch" not in stdout + stderr and "\x1b[" not in stdout  # no epoch arithmetic, no terminal codes
    assert "litlogger" not in stderr and "LeafSpec" not in stderr, stderr


def test_plain_progress_reports_every_fraction_and_on_time():
    class FakeTrainer:
        max_steps, global_step, is_global_zero, callbacks = 200, 0, True, []
        callback_metrics: dict = {}

    lines: list[str] = []
    cb = PlainProgress(max_interval_s=3600)
    cb._write = lines.append
    t = FakeTrainer()
    cb.on_train_start(t, None)
    for step in range(1, 201):
        t.global_step = step
        cb.on_train_batch_end(t, None, None, None, 0)
    assert len(lines) == 50 and "step 4/200" in lines[0]  # 2% of 200 = every 4 steps
    cb2 = PlainProgress(every_n_steps=1000, max_interval_s=0.0)
    cb2._write = lines.append
    cb2.on_train_start(t, None)
    t.global_step = 201
    cb2.on_train_batch_end(t, None, None, None, 0)
    assert "step 201/200" in lines[-1] and len(lines) == 51  # time-based report despite the step interval


def test_quiet_third_party_keeps_real_warnings(caplog):
    quiet_third_party()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_third_party()  # re-applied after simplefilter, as the CLI does at start
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("your learning rate is very high", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["your learning rate is very high"]
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("💡 Tip: For seamless cloud logging ... litlogger")
        log.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_progress_callback_follows_stdout(tmp_path):
    with (tmp_path / "f").open("w") as f:
        assert isinstance(progress_callback(f), PlainProgress)

    class Tty:
        def isatty(self) -> bool:
            return True

    bar = progress_callback(Tty())
    assert isinstance(bar, StepProgressBar)

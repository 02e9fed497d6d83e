"""NaN/inf guard (stop with a last-good checkpoint, or skip) and the run-directory guards."""

from __future__ import annotations

import pytest
import torch

from nr_lightning.config import ConfigError
from nr_lightning.training.checkpointing import checkpoint_problem, resolve_checkpoint
from nr_lightning.training.module import NonFiniteLossError


def test_nan_loss_stops_with_step_source_and_last_good_checkpoint(tmp_path, fixtures_dir, h):
    from nr_lightning.training.train import main

    run = tmp_path / "run"
    # lr 1e20: the first updates leave finite but huge adapter weights; the forward then overflows to NaN
    with pytest.raises(NonFiniteLossError) as e:
        main(h.run_args(run, fixtures_dir, 6, "method.lr=1e20"))
    msg = str(e.value)
    assert "non-finite loss nan at step 2" in msg
    assert "global sequences [4, 5]" in msg and "sentences_fr_dev.jsonl" in msg  # which data it was
    assert "trainer.nan_policy=skip" in msg
    ckpt = run / "checkpoints" / "nonfinite-step000002.ckpt"
    assert f"Last good state saved to {ckpt}" in msg
    assert checkpoint_problem(ckpt) is None
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    assert state["MixedLanguageDataModule"]["sequences_consumed"] == 4  # resumes at the failing batch
    assert resolve_checkpoint(run, "last") == ckpt
    assert not (run / "metrics.json").exists()


def test_nan_policy_skip_finishes_the_run(tmp_path, fixtures_dir, h, capsys):
    from nr_lightning.training.train import main

    result = main(h.run_args(tmp_path / "run", fixtures_dir, 4, "method.lr=1e20", "trainer.nan_policy=skip"))
    assert result["global_step"] == 4
    assert "skipping batch: non-finite loss" in capsys.readouterr().out


def test_full_disk_fails_before_training(tmp_path, fixtures_dir, h):
    from nr_lightning.training.train import main

    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"GiB free under .*run: checkpoints need at least 1000000000.0 GiB"):
        main(h.run_args(run, fixtures_dir, 2, "trainer.min_free_gb=1e9"))
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()


def test_unwritable_run_dir_fails_before_training(tmp_path, fixtures_dir, h):
    from nr_lightning.training.train import main

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")  # root ignores permissions, but not a file in the way
    with pytest.raises(ConfigError, match="is not writable"):
        main(h.run_args(blocker / "run", fixtures_dir, 2))

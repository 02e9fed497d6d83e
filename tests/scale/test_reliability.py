"""Reliability guarantees of a training run (docs/reliability.md): nothing lost across resumes, damaged
inputs caught before work starts, one clear line per user error."""

from __future__ import annotations

import json

import pytest


def _curves(run_dir) -> list[dict]:
    return json.loads((run_dir / "curves.json").read_text())


def test_curves_survive_resume(tmp_path, fixtures_dir, h):
    """The forgetting curve (step-0 baseline included) is in the checkpoint: after a resume curves.json and
    metrics.json hold every point of the uninterrupted run."""
    from nr_lightning.train import main

    extra = ["eval.every_n_steps=2", "eval.at_start=true", "eval.max_length=64", "trainer.checkpoint_every_n_steps=2"]
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    ref = main(h.run_args(ref_dir, fixtures_dir, 6, *extra))
    assert [c["step"] for c in _curves(ref_dir)] == [0, 2, 4, 6]
    main(h.run_args(run, fixtures_dir, 4, *extra))  # stops at step 4, as a requeued job would
    resumed = main([*h.run_args(run, fixtures_dir, 6, *extra), "ckpt_path=last"])
    assert resumed["resumed_from"].endswith(".ckpt")
    got, want = _curves(run), _curves(ref_dir)
    assert [c["step"] for c in got] == [0, 2, 4, 6]
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k] == pytest.approx(w[k], abs=1e-4), (g["step"], k)
    assert json.loads((run / "metrics.json").read_text())["curves"] == got
    assert resumed["curves"] == got and ref["curves"] == want


def test_bit_flipped_newest_checkpoint_falls_back_with_warning(tmp_path, h):
    import os

    import torch

    from nr_lightning.config import ConfigError
    from nr_lightning.training.checkpointing import resolve_checkpoint

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    old, new = ckpts / "step000002.ckpt", ckpts / "last.ckpt"
    torch.save({"state_dict": {"w": torch.randn(4096)}, "global_step": 2}, old)
    torch.save({"state_dict": {"w": torch.randn(4096)}, "global_step": 4}, new)
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    assert resolve_checkpoint(tmp_path, "last") == new
    h.flip_tensor_bytes(new)
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) last.ckpt \(corrupt record"):
        assert resolve_checkpoint(tmp_path, "last") == old
    with pytest.raises(ConfigError, match="not a usable checkpoint: corrupt record"):
        resolve_checkpoint(tmp_path, str(new))


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this creates a file: proof that code ran


def test_checkpoint_loading_is_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    import torch

    from nr_lightning.config import ConfigError
    from nr_lightning.training.checkpointing import AtomicCheckpointIO

    marker = tmp_path / "code-ran"
    planted = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "payload": _Planted(str(marker))}, planted)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ConfigError, match="not plain weights"):
        AtomicCheckpointIO().load_checkpoint(planted)
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3, "name": "x"}, good)
    assert AtomicCheckpointIO().load_checkpoint(good)["global_step"] == 3


@pytest.mark.parametrize("arg", ["method.lr=inf", "optim.grad_clip=nan", "data.p=-inf", "method.alpha=.inf"])
def test_non_finite_config_numbers_are_refused(arg):
    from nr_lightning.config import ConfigError, compose

    with pytest.raises(ConfigError, match=rf"bad value {arg.split('=')[0]}=.*must be finite"):
        compose([arg])


def test_directory_of_a_finished_run_is_refused_unless_overwrite(tmp_path, fixtures_dir, h):
    """A finished run whose checkpoints were pruned is not silently reused (config/metrics overwritten,
    losses appended); overwrite=true replaces it cleanly."""
    import shutil

    from nr_lightning.config import ConfigError
    from nr_lightning.train import main

    run = tmp_path / "run"
    main(h.run_args(run, fixtures_dir, 2))
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    before = {p: (run / p).read_bytes() for p in ("config.yaml", "metrics.json", "plan.txt", "losses.jsonl")}
    with pytest.raises(ConfigError, match=r"already holds an earlier run's outputs \(config.yaml.*overwrite=true"):
        main([*h.run_args(run, fixtures_dir, 2), "method.lr=1e-2"])
    with pytest.raises(ConfigError, match="holds a finished run .* no checkpoint"):
        main([*h.run_args(run, fixtures_dir, 2), "ckpt_path=last"])
    assert before == {p: (run / p).read_bytes() for p in before}
    main([*h.run_args(run, fixtures_dir, 2), "method.lr=1e-2", "overwrite=true"])
    assert len((run / "losses.jsonl").read_text().splitlines()) == 2  # replaced, not appended
    assert "lr: 0.01" in (run / "config.yaml").read_text()


def test_nothing_written_before_the_data_check_passes(tmp_path, fixtures_dir, h):
    from nr_lightning.data import DataSourceError
    from nr_lightning.training.train import earlier_outputs, main

    bad = tmp_path / "bad.jsonl"
    good = (fixtures_dir / "text" / "sentences_fr_dev.jsonl").read_text().splitlines(keepends=True)
    bad.write_text("".join(good[:50]) + '{"text": "cut\n' + "".join(good[50:]))
    fresh = tmp_path / "fresh"
    with pytest.raises(DataSourceError, match=r"bad.jsonl:51: corrupt JSON line"):
        main([*h.run_args(fresh, fixtures_dir, 2), f"data.new.path={bad}"])
    assert earlier_outputs(fresh) == []
    run = tmp_path / "run"
    main([*h.run_args(run, fixtures_dir, 2), "trainer.checkpoint_every_n_steps=2"])
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(DataSourceError, match=r"bad.jsonl:51"):  # a resume with broken data keeps the run's config
        main([*h.run_args(run, fixtures_dir, 4), f"data.new.path={bad}", "ckpt_path=last"])
    assert (run / "config.yaml").read_bytes() == config


def test_checkpoint_of_another_method_is_one_clear_error(tmp_path, fixtures_dir, h):
    from nr_lightning.config import ConfigError
    from nr_lightning.training.train import earlier_outputs, main

    lora = tmp_path / "lora"
    main([*h.run_args(lora, fixtures_dir, 2), "method=lora", "trainer.checkpoint_every_n_steps=2"])
    other = tmp_path / "neutral"
    with pytest.raises(ConfigError, match=r"cannot resume this run: it was written by a method=lora run"):
        main([*h.run_args(other, fixtures_dir, 2), f"ckpt_path={lora / 'checkpoints' / 'last.ckpt'}"])
    assert earlier_outputs(other) == []

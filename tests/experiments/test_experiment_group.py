"""experiment=<name>: a file of experiments/experiment/ names group choices and pins keys of its own; the
command line's group choices and dotted keys still win."""

from __future__ import annotations

import pytest

from nr_lightning.config import EXPERIMENTS, ConfigError, compose, group_choices


def test_every_experiment_file_composes():
    names = group_choices("experiment")
    assert {"repro_neutral_fr", "smoke_tiny"} <= set(names)
    for name in names:
        assert compose([f"experiment={name}"]).experiment == name


def test_experiment_picks_groups_and_pins_keys():
    cfg = compose(["experiment=repro_neutral_fr"])
    assert cfg.method.name == "neutral" and cfg.method.alpha == 0.01  # method group from its defaults
    assert cfg.trainer.max_steps == 240 and cfg.backbone.name == "smollm2-135m-en"  # trainer=repro
    assert cfg.name == "repro-neutral-fr"  # its own key
    smoke = compose(["experiment=smoke_tiny"])
    assert smoke.backbone.name == "tiny" and smoke.trainer.max_steps == 20 and smoke.data.p == 0.5


def test_command_line_wins_over_the_experiment():
    cfg = compose(["experiment=repro_neutral_fr", "method=lora", "trainer.max_steps=7", "name=x"])
    assert cfg.method.name == "lora" and cfg.method.alpha == 0.0  # the lora group, not neutral's alpha
    assert cfg.trainer.max_steps == 7 and cfg.name == "x"
    assert cfg.backbone.name == "smollm2-135m-en"  # the experiment's trainer choice is kept
    # the experiment's own keys win over a group the command line picks
    assert compose(["experiment=smoke_tiny", "trainer=cpu"]).trainer.max_steps == 20


def test_unknown_experiment_and_bad_defaults_are_one_clear_error(tmp_path, monkeypatch):
    import shutil

    import nr_lightning.config as config

    with pytest.raises(ConfigError, match="unknown experiment 'nope'; valid choices: .*repro_neutral_fr"):
        compose(["experiment=nope"])
    shutil.copytree(EXPERIMENTS, tmp_path / "experiments")
    (tmp_path / "experiments" / "experiment" / "bad.yaml").write_text("defaults:\n  - optimizer: adam\n")
    monkeypatch.setattr(config, "EXPERIMENTS", tmp_path / "experiments")
    with pytest.raises(ConfigError, match="defaults may pick method, lang, backbone, trainer, not 'optimizer'"):
        compose(["experiment=bad"])


def test_make_train_runs_quickstart_with_english_in_every_step():
    """The default `make train` (experiment=quickstart): every batch holds at least one English sequence, at
    about the tokens per step of the CPU default, and the run's last line points to `make repro`."""
    import re

    from nr_lightning.data import mixing_decisions

    make = (EXPERIMENTS.parent / "Makefile").read_text()
    recipe = make.split("\ntrain:", 1)[1].split("\n\n", 1)[0]
    assert "experiment=quickstart" in recipe and "make repro" in recipe.strip().splitlines()[-1]
    cfg = compose(["experiment=quickstart", "method=neutral", "lang=fr"])
    default = compose(["method=neutral", "lang=fr"])
    assert cfg.data.mixing == "stratified" and cfg.data.p == default.data.p
    assert abs(cfg.data.batch_size * cfg.data.seq_len / (default.data.batch_size * default.data.seq_len) - 1) < 0.05
    assert cfg.trainer.max_steps == default.trainer.max_steps
    langs = mixing_decisions(0, cfg.data.p, 1, 1, 0, 150 * cfg.data.batch_size, stratify=cfg.data.batch_size)
    english_per_batch = (langs.reshape(150, cfg.data.batch_size) == 1).sum(axis=1)
    assert english_per_batch.min() >= 1
    assert re.search(r"train: data ## .*\n", make)

"""The training framework end to end on a tiny backbone, through the same CLI users call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import fixture_data_args as data_args
from nr_lightning.config import ConfigError, compose
from nr_lightning.training.module import lr_lambda

REPO = Path(__file__).resolve().parents[2]


def tiny_args(tmp_path: Path, fixtures: Path, steps: int = 3, method: str = "neutral") -> list[str]:
    return [f"method={method}", "lang=fr", "backbone=tiny", f"trainer.max_steps={steps}",
            "trainer.checkpoint_every_n_steps=2", "eval.every_n_steps=2", "eval.max_docs=4",
            f"run_dir={tmp_path / 'run'}", *data_args(fixtures)]


def test_compose_groups_and_overrides():
    cfg = compose(["method=sigmoid", "lang=de", "trainer.max_steps=7", "data.p=0.5"])
    assert (cfg.method.name, cfg.method.beta, cfg.method.lr) == ("sigmoid", 1.0, 2e-4)
    assert cfg.data.learn == ["de"] and cfg.data.retain == ["en"] and cfg.data.p == 0.5
    assert cfg.trainer.max_steps == 7
    neutral = compose([])
    assert (neutral.method.name, neutral.method.alpha, neutral.lang) == ("neutral", 0.01, "fr")
    assert compose(["method=finetune"]).method.lr == 5e-5


@pytest.mark.parametrize("args, match", [
    (["method=prefix"], "valid choices: adapters, finetune, lora, neutral, sigmoid"),
    (["trainer.max_stepz=3"], "unknown config key 'trainer.max_stepz'.*max_steps"),
    (["optimiser.lr=1"], "unknown config key 'optimiser'"),
    (["data.p=1.5"], r"data.p"),
    (["method.gate=tanh"], "valid choices: None, elu, relu, sigmoid, none"),
    (["trainer.max_steps=abc"], "trainer.max_steps"),
    (["lang=xx"], "valid choices: de, fr"),
    (["trainer.max_steps"], "key=value"),
])
def test_bad_config_fails_naming_key(args, match):
    with pytest.raises(ConfigError, match=match):
        compose(args)


def test_lr_schedule():
    assert lr_lambda(0, 10, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_lambda(50, 10, 100, "constant", 0.1) == 1.0


def test_tiny_training_run_writes_curves_checkpoints_extension(tmp_path, fixtures_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nr_lightning.training.train import main

    result = main(tiny_args(tmp_path, fixtures_dir, steps=3))
    run = tmp_path / "run"
    assert result["global_step"] == 3
    assert (run / "config.yaml").is_file() and (run / "extension" / "extension.safetensors").is_file()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and "step000002.ckpt" in ckpts
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["state_dict"] and all(".nrl_adapter." in k for k in ckpt["state_dict"]), "adapter-only checkpoint"
    events = list((run / "tb").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/lm_loss", "train/sparsity", "train/gate_bce", "train/lr", "eval/bpb_en",
                "eval/bpb_fr", "eval/bpb_sum", "gates/en_gate_mean", "gates/fr_gate_mean"):
        assert tag in tags, (tag, sorted(tags))
    hists = set(acc.Tags()["histograms"])
    assert {"spectra/adapter_w_gate_layer00", "spectra/backbone_gate_proj_layer01", "gate_values/en_layer00",
            "gate_values/fr_layer01"} <= hists, sorted(hists)
    assert "spectra/normalised" in acc.Tags()["images"]
    bpb_steps = [e.step for e in acc.Scalars("eval/bpb_fr")]
    assert bpb_steps[0] == 0 and bpb_steps[-1] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["final_bpb"]) == {"fr", "en"}
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["extension"]


def test_resume_from_last(tmp_path, fixtures_dir):
    from nr_lightning.training.train import main

    constant = "optim.schedule=constant"  # a run may be extended when its lr schedule does not depend on max_steps
    main([*tiny_args(tmp_path, fixtures_dir, steps=2), constant])
    with pytest.raises(ConfigError, match="ckpt_path=last"):
        main([*tiny_args(tmp_path, fixtures_dir, steps=4), constant])
    result = main([*tiny_args(tmp_path, fixtures_dir, steps=4), constant, "ckpt_path=last"])
    assert result["global_step"] == 4


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nr_lightning.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_cli_bad_key_exits_cleanly():
    proc = _cli(["method=neutral", "trainer.max_stepz=3"])
    assert proc.returncode == 2
    assert "unknown config key 'trainer.max_stepz'" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_path_is_clear(tmp_path, fixtures_dir):
    args = [a for a in tiny_args(tmp_path, fixtures_dir) if not a.startswith("data.new.path")]
    proc = _cli([*args, f"data.new.path={tmp_path / 'nope.jsonl'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "nope.jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_data_file_is_clear(tmp_path, fixtures_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args = [a for a in tiny_args(tmp_path, fixtures_dir) if not a.startswith("data.new.path")]
    proc = _cli([*args, f"data.new.path={empty}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "empty.jsonl" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("method", ["finetune", "lora", "adapters", "sigmoid"])
def test_every_method_trains(tmp_path, fixtures_dir, method):
    from nr_lightning.training.train import main

    result = main([*tiny_args(tmp_path, fixtures_dir, steps=2, method=method), "eval.at_start=false",
                   "eval.every_n_steps=0"])
    assert result["global_step"] == 2
    assert (tmp_path / "run" / "extension" / "extension.json").is_file()


def test_optimizer_lr_is_method_lr_times_multiplier():
    from helpers import toy_model
    from nr_lightning import extend
    from nr_lightning.training.module import ExtensionModule

    for args, expected in ((["method=lora"], 5e-4), (["method=neutral", "trainer=paper"], 2e-4),
                           (["method=adapters", "optim.lr_multiplier=1", "method.lr=3e-4"], 3e-4)):
        cfg = compose(args)
        module = ExtensionModule(extend(toy_model(), method=cfg.method.name), cfg)
        opt = module.configure_optimizers()["optimizer"]
        assert opt.defaults["lr"] == pytest.approx(expected)
        trainable = {id(p) for p in module.model.parameters() if p.requires_grad}
        assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable

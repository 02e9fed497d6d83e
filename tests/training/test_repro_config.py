"""Config rules of the reproduction protocol: the ELU gate under a BCE, stratified mixing, the English base."""

from __future__ import annotations

import pytest

from nr_lightning.config import ConfigError, compose


def test_elu_gate_with_bce_is_refused():
    with pytest.raises(ConfigError, match="ELU"):
        compose(["method=neutral", "method.beta=1"])
    with pytest.raises(ConfigError, match="ELU"):
        compose(["method=sigmoid", "method.gate=elu"])  # sigmoid preset has beta = 1
    assert compose(["method=sigmoid"]).method.beta == 1.0  # sigmoid gate + BCE: fine
    assert compose(["method=neutral", "method.gate=relu", "method.beta=1"]).method.gate == "relu"


def test_gate_init_choices_are_validated():
    assert compose(["method=neutral"]).method.gate_init == "he"
    with pytest.raises(ConfigError, match="he, low_variance"):
        compose(["method.gate_init=zeros"])


def test_stratified_mixing_needs_a_batch_that_holds_english():
    with pytest.raises(ConfigError, match="raise data.batch_size"):
        compose(["data.mixing=stratified", "data.p=0.1", "data.batch_size=4"])  # round(0.4) = 0 English
    with pytest.raises(ConfigError, match="random, stratified"):
        compose(["data.mixing=blocks"])
    assert compose(["data.mixing=stratified", "data.p=0.1", "data.batch_size=10"]).data.mixing == "stratified"


def test_repro_preset_composes_the_protocol():
    cfg = compose(["trainer=repro", "method=neutral"])
    assert cfg.backbone.name == "smollm2-135m-en"
    assert cfg.data.mixing == "stratified" and round(cfg.data.p * cfg.data.batch_size) >= 1
    assert cfg.data.heldout_en.endswith("pubmed_en_more.jsonl")


def test_unbuilt_english_base_names_the_make_target(tmp_path, monkeypatch):
    from nr_lightning.backbone import load_backbone

    monkeypatch.setenv("NRL_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make backbone-en"):
        load_backbone("smollm2-135m-en")


def test_repro_forgetting_set_resolves_inside_the_package(tmp_path, monkeypatch):
    from nr_lightning.data import MixedLanguageDataModule

    monkeypatch.chdir(tmp_path)  # the preset's relative path must not depend on the working directory
    cfg = compose(["trainer=repro"])
    dm = MixedLanguageDataModule(cfg.data, tokenizer=None)
    texts = dm.heldout_texts("en")
    assert len(texts) == 450 and "patients" in " ".join(texts[:20])


def test_english_base_keeps_the_best_evaluation_and_stops_when_flat(tmp_path):
    from types import SimpleNamespace

    from helpers import toy_model
    from nr_lightning.training.english_base import KeepBest

    curves = SimpleNamespace(history=[])
    model = toy_model()
    trainer = SimpleNamespace(is_global_zero=True, should_stop=False)
    module = SimpleNamespace(model=model)
    keep = KeepBest(curves, tmp_path / "best", patience=2, min_delta=0.01)
    for step, (en, ind) in enumerate([(1.0, 1.0), (0.9, 0.9), (0.895, 0.9), (0.91, 0.9)]):
        curves.history.append({"step": step * 25, "eval/bpb_en": en, "eval/bpb_en_indomain": ind})
        keep.on_train_batch_end(trainer, module, None, None, 0)
        keep.on_train_batch_end(trainer, module, None, None, 0)  # the same evaluation is counted once
    assert keep.best_step == 25 and keep.best == pytest.approx(1.8)  # 1.795 is not better by min_delta
    assert trainer.should_stop and (tmp_path / "best" / "model.safetensors").is_file()
    restored = KeepBest(curves, tmp_path / "best")
    restored.load_state_dict(keep.state_dict())
    assert restored.state_dict() == keep.state_dict()


def test_extra_curve_and_stratified_run_end_to_end(tmp_path, fixtures_dir):
    """A tiny run with stratified mixing and an extra held-out curve: the extra set is curved at every
    evaluation but stays out of eval/bpb_sum (it is for decisions, not the comparison)."""
    import json

    from helpers import fixture_data_args
    from nr_lightning.train import main

    args = ["method=neutral", "lang=fr", "backbone=tiny", "trainer.max_steps=2", "eval.every_n_steps=2",
            "eval.max_docs=3", "data.mixing=stratified", "data.p=0.5", f"run_dir={tmp_path / 'run'}",
            "eval.extra.en_dev=nr_lightning/evaluation/data/text/pubmed_en_dev.jsonl", *fixture_data_args(fixtures_dir)]
    result = main(args)
    last = json.loads((tmp_path / "run" / "curves.json").read_text())[-1]
    assert {"eval/bpb_en", "eval/bpb_fr", "eval/bpb_en_dev"} <= set(last)
    assert last["eval/bpb_sum"] == pytest.approx(last["eval/bpb_en"] + last["eval/bpb_fr"])
    assert result["final_bpb"]["en_dev"] == last["eval/bpb_en_dev"]
    gates = json.loads((tmp_path / "run" / "gates.json").read_text())  # per-domain gate statistics over steps
    assert [g["step"] for g in gates] == [0, 2]
    assert {"en", "fr"} <= set(gates[-1]) and len(gates[-1]["en"]["gate_mean_per_layer"]) == 2
    assert gates[0]["en"]["residual_l1"] == 0.0  # W_out = 0 at step 0: no residual yet


@pytest.mark.parametrize("left", ["logs", "checkpoint", "nothing"])
def test_english_base_build_resumes_or_restarts(tmp_path, monkeypatch, left):
    """A build killed before its first checkpoint left only logs: it starts again (overwrite=true) instead of
    stopping on the run-dir guard; a build with a checkpoint resumes it."""
    from nr_lightning.training import english_base, train

    seen: list[list[str]] = []

    def fake_main(args, extra_callbacks=None):
        seen.append(list(args))
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(english_base, "is_built", lambda: False)
    monkeypatch.setattr(train, "main", fake_main)
    run = tmp_path / "backbone-en"
    if left == "logs":
        run.mkdir()
        (run / "losses.jsonl").write_text("{}\n")
    elif left == "checkpoint":
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt):
        english_base.build(tmp_path)
    args = seen[0]
    assert ("overwrite=true" in args) == (left == "logs")
    assert args[:len(english_base.train_args(run))] == english_base.train_args(run)  # the recorded command
    assert ("ckpt_path=last" in args) == (left == "checkpoint")


def test_english_base_build_stopped_by_a_signal_is_not_a_base(tmp_path, monkeypatch):
    """A preempted build (SIGTERM from scancel, the time limit) exits 3 with its checkpoint: it never turns the
    best evaluation so far into the English base."""
    from nr_lightning.training import english_base, train

    monkeypatch.setattr(english_base, "is_built", lambda: False)
    monkeypatch.setattr(train, "main", lambda args, extra_callbacks=None: {
        "preempted": True, "signal": "SIGTERM", "global_step": 30, "checkpoint": "ckpt"})
    monkeypatch.setattr(english_base, "base_dir", lambda: tmp_path / "base")
    with pytest.raises(SystemExit) as e:
        english_base.build(tmp_path)
    assert e.value.code == 3 and not (tmp_path / "base").exists()

"""The sequence CLI: options, replay mixtures, the forgetting matrix, and a 2-stage tiny run end to end."""

from __future__ import annotations

import json

import pytest
import torch

from nr_lightning.config import ConfigError, compose
from nr_lightning.continual.sequence import forgetting_matrix, matrix_markdown, parse_args, stage_data


def test_forgetting_matrix_shape_and_labels():
    rows = [{"fr": 1.2, "en": 2.0}, {"fr": 1.5, "de": 1.1, "en": 2.1}, {"fr": 1.6, "de": 1.3, "it": 0.9, "en": 2.2}]
    m = forgetting_matrix(["fr", "de", "it"], rows, baseline={"fr": 3.0, "de": 3.0, "it": 3.0, "en": 1.9})
    assert m["columns"] == ["fr", "de", "it", "en"]
    assert m["rows"] == ["after 1: fr", "after 2: de", "after 3: it"]
    assert [len(r) for r in m["bpb"]] == [4, 4, 4]
    assert m["bpb"][0] == [1.2, None, None, 2.0] and m["bpb"][2] == [1.6, 1.3, 0.9, 2.2]
    assert m["forgetting"] == pytest.approx({"fr": 0.4, "de": 0.2, "it": 0.0})
    assert m["en_drift"] == pytest.approx(0.3)
    md = matrix_markdown(m)
    assert "| after stage | fr | de | it | en |" in md and "| backbone | 3.0000" in md
    assert "| after 1: fr | 1.2000 | — | — | 2.0000 |" in md


def test_parse_args_splits_sequence_and_training_keys():
    seq, rest = parse_args(["stages=[fr,de]", "strategy=olora", "olora_lambda=0.5", "method=lora",
                            "trainer.max_steps=3", "run_dir=/tmp/x"])
    assert (seq.stages, seq.strategy, seq.olora_lambda, seq.run_dir) == (["fr", "de"], "olora", 0.5, "/tmp/x")
    assert rest == ["method=lora", "trainer.max_steps=3"]
    for bad, match in [(["strategy=rehearse"], "valid choices: stack, olora"), (["stages=[fr,fr]"], "distinct"),
                       (["merge=svd"], "valid choices: linear"), (["data.new.path=x"], "corpora_dir"),
                       (["lang=de"], "corpora_dir")]:
        with pytest.raises(ConfigError, match=match):
            parse_args(bad)


def test_replay_mixtures():
    cfg = compose(["method=neutral", "data.p=0.1"])
    seq, _ = parse_args(["stages=[fr,de,it]", "replay=0.2"])
    assert stage_data(seq, cfg, 0) == {"learn": ["fr"], "retain": ["en"], "p": 0.1, "weights": {}}
    # stacked adapters: earlier languages join the original domain (the new stage must stay neutral on them)
    d = stage_data(seq, cfg, 2)
    assert d["learn"] == ["it"] and d["retain"] == ["en", "fr", "de"] and d["p"] == pytest.approx(0.3)
    assert d["weights"] == pytest.approx({"en": 0.1, "fr": 0.1, "de": 0.1})
    seq_c, _ = parse_args(["stages=[fr,de]", "replay=0.2", "strategy=continue"])
    d = stage_data(seq_c, cfg, 1)  # one extension holds every language: earlier ones stay "new" (1)
    assert d["learn"] == ["de", "fr"] and d["weights"] == pytest.approx({"de": 0.7, "fr": 0.2})
    joint, _ = parse_args(["stages=[fr,de]", "strategy=joint"])
    assert stage_data(joint, cfg, 1)["learn"] == ["fr", "de"]


def test_two_stage_stack_run_end_to_end(tmp_path, corpora):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nr_lightning.continual.sequence import main
    from nr_lightning.extension import load_stack, n_stages

    run = tmp_path / "seq"
    result = main(["stages=[fr,de]", "strategy=stack", "method=neutral", "backbone=tiny", "trainer.max_steps=2",
                   "eval.max_docs=2", "eval.max_length=64", "eval.at_start=false", "eval.gate_stats=false",
                   "method.lr=0.01", "optim.lr_multiplier=1", f"data.corpora_dir={corpora}",
                   f"run_dir={run}"])
    m = json.loads((run / "forgetting.json").read_text())
    assert m == result["matrix"]
    assert m["columns"] == ["fr", "de", "en"] and m["rows"] == ["after 1: fr", "after 2: de"]
    assert m["bpb"][0][1] is None and all(v is not None for v in m["bpb"][1])
    assert set(m["baseline"]) == {"fr", "de", "en"} and set(m["forgetting"]) == {"fr", "de"}
    assert "| after 2: de |" in (run / "forgetting.md").read_text()
    meta = json.loads((run / "sequence.json").read_text())
    assert meta["extensions"] == ["stage_0/extension", "stage_1/extension"] and meta["completed"] == 2
    # stage 1 trained only its own stage: its checkpoint holds the newest adapter, not the frozen stage 0
    ckpt = torch.load(run / "stage_1" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["state_dict"] and all(".nrl_adapter." in k for k in ckpt["state_dict"])
    # the stacked model loads from the sequence dir; stage 0 is bit-identical to what stage 0 saved
    from safetensors.torch import load_file

    from nr_lightning.backbone import load_backbone

    model = load_stack(load_backbone("tiny")[0], run)
    assert n_stages(model) == 2
    saved0 = load_file(str(run / "stage_0" / "extension" / "extension.safetensors"))
    state = model.state_dict()
    for k, v in saved0.items():
        assert torch.equal(state[k.replace(".nrl_adapter.", ".nrl_stages.0.")], v)
    assert any(v.abs().sum() > 0 for k, v in saved0.items() if "w_out" in k), "stage 0 trained"
    acc = EventAccumulator(str(next((run / "tb").glob("events.out.tfevents.*"))))
    acc.Reload()
    assert {"sequence/bpb_fr", "sequence/bpb_de", "sequence/bpb_en"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("sequence/bpb_fr")) == 3  # backbone, after 1, after 2


def test_baseline_row_is_cached_between_sequences(tmp_path, corpora, monkeypatch):
    from nr_lightning.backbone import load_backbone
    from nr_lightning.continual.sequence import Sequence

    common = ["method=neutral", "backbone=tiny", "eval.max_docs=2", "eval.max_length=32", f"data.corpora_dir={corpora}"]
    backbone, tok = load_backbone("tiny")
    first = Sequence(*parse_args(["stages=[fr,de]", f"run_dir={tmp_path / 'a'}", *common]))
    row = first.baseline(backbone.eval(), tok)
    assert set(row) == {"fr", "de", "en"} and len(list((tmp_path / ".nrl-cache").glob("baseline-*.json"))) == 3

    def no_eval(*a, **k):
        raise AssertionError("the cached backbone row must not be evaluated again")

    # another strategy, another stage order: same backbone and texts -> every column comes from the cache
    second = Sequence(*parse_args(["stages=[de,fr]", "strategy=joint", f"run_dir={tmp_path / 'b'}", *common]))
    monkeypatch.setattr(second, "evaluate", no_eval)
    assert second.baseline(backbone, tok) == row
    # a different window length is a different measurement: evaluated, not read from the cache
    third = Sequence(*parse_args(["stages=[fr,de]", f"run_dir={tmp_path / 'c'}", *common, "eval.max_length=48"]))
    assert set(third.baseline(backbone, tok)) == {"fr", "de", "en"}
    assert len(list((tmp_path / ".nrl-cache").glob("baseline-*.json"))) == 6
    off = Sequence(*parse_args(["stages=[fr,de]", "baseline_cache=false", f"run_dir={tmp_path / 'd'}", *common]))
    monkeypatch.setattr(off, "evaluate", lambda m, t, cols: dict.fromkeys(cols, 9.0))
    assert off.baseline(backbone, tok) == {"fr": 9.0, "de": 9.0, "en": 9.0}

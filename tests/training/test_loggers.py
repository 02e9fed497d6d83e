"""trainer.loggers: TensorBoard (default), CSV and Weights & Biases (offline) at once, with the same metric names."""

from __future__ import annotations

import csv
import json

import pytest

from helpers import fixture_data_args
from nr_lightning.config import ConfigError, compose


def test_unknown_or_missing_logger_is_one_clear_error():
    assert compose([]).trainer.loggers == ["tensorboard"]
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'; valid choices: tensorboard, csv, wandb"):
        compose(["trainer.loggers=[tensorboard,mlflow]"])


def test_tensorboard_csv_and_wandb_offline_hold_the_same_curves(tmp_path, fixtures_dir, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nr_lightning.training.train import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # wandb's own cache/config, not the home directory
    run = tmp_path / "run"
    main(["method=neutral", "backbone=tiny", "trainer.max_steps=2", "eval.every_n_steps=1", "eval.max_docs=2",
          "eval.gate_stats=false", "trainer.checkpoint_every_n_steps=2", f"run_dir={run}",
          "trainer.loggers=[tensorboard,csv,wandb]", *fixture_data_args(fixtures_dir)])
    want = {"eval/bpb_en", "eval/bpb_fr", "eval/bpb_sum", "eval/delta_bpb_fr", "train/lm_loss", "train/tokens_per_s"}
    acc = EventAccumulator(str(next((run / "tb").glob("events.out.tfevents.*"))))
    acc.Reload()
    assert want <= set(acc.Tags()["scalars"])
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert want <= set(rows[0]) and [float(r["eval/bpb_fr"]) for r in rows if r["eval/bpb_fr"]][0] > 0
    # W&B offline: one run directory under <run>/wandb whose record file holds every metric name and the final
    # value (wandb-core writes a binary log of protobuf records, no Python reader ships: its strings are searched)
    (offline,) = list((run / "wandb").glob("offline-run-*"))
    (records,) = list(offline.glob("run-*.wandb"))
    data = records.read_bytes()
    assert all(k.encode() in data for k in want), [k for k in want if k.encode() not in data]
    final = json.loads((run / "metrics.json").read_text())["final_bpb"]["fr"]
    assert repr(final).encode() in data
    deltas = [e.value for e in acc.Scalars("eval/delta_bpb_fr")]
    bpb = [e.value for e in acc.Scalars("eval/bpb_fr")]
    assert deltas[0] == 0 and deltas[-1] == pytest.approx(bpb[-1] - bpb[0], abs=1e-6)

"""`python -m nr_lightning.evaluate` and `python -m nr_lightning.report` on two tiny runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import fixture_data_args
from nr_lightning.config import ConfigError


def _args(tmp_path: Path, fixtures: Path, name: str, method: str) -> list[str]:
    return [f"method={method}", "lang=fr", "backbone=tiny", "trainer.max_steps=2", "eval.every_n_steps=0",
            "eval.max_docs=3", f"run_dir={tmp_path / name}", *fixture_data_args(fixtures)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, fixtures_dir):
    from nr_lightning.training.train import main

    tmp = tmp_path_factory.mktemp("runs")
    for name, method in (("neutral-fr", "neutral"), ("lora-fr", "lora")):
        main(_args(tmp, fixtures_dir, name, method))
    return tmp


def test_evaluate_run_writes_json(two_runs):
    from nr_lightning.evaluation.cli import main

    result = main([f"run={two_runs / 'neutral-fr'}", "tasks=[arc_challenge_fr,mmlu_en]", "limit=2", "max_docs=3",
                   "max_length=128"])
    saved = json.loads((two_runs / "neutral-fr" / "eval.json").read_text())
    assert set(saved["bpb"]) == {"fr", "en"} and all(v > 0 for v in saved["bpb"].values())
    assert saved["tasks"]["arc_challenge_fr"]["n"] == 2 and saved["config"]["method"]["name"] == "neutral"
    assert saved["task_average"].keys() == {"fr", "en"}
    # the evaluated extension is the trained one: its bpb equals the run's own final measurement
    final = json.loads((two_runs / "neutral-fr" / "metrics.json").read_text())["final_bpb"]
    assert result["bpb"]["fr"] == pytest.approx(final["fr"], abs=1e-6)
    assert result["bpb"]["en"] == pytest.approx(final["en"], abs=1e-6)
    import torch

    assert torch.is_grad_enabled()  # evaluating must not switch autograd off for the caller's next training


def test_max_docs_zero_is_a_downstream_only_evaluation(two_runs):
    from nr_lightning.evaluation.cli import main

    run = two_runs / "lora-fr"
    out = run / "eval_tasks.json"
    result = main([f"run={run}", "tasks=[arc_easy_fr]", "limit=2", "max_docs=0", "baseline=false", f"out={out}"])
    saved = json.loads(out.read_text())
    assert result["bpb"] == {} and saved["bpb"] == {} and saved["tasks"]["arc_easy_fr"]["n"] == 2
    assert not (run / "eval.json").exists()  # a full eval.json beside it would be left alone


def test_evaluate_a_training_checkpoint(two_runs):
    """ckpt= scores one step's weights: the last checkpoint of a finished run is its final extension, so its bpb
    is the run's own final measurement; the run's eval.json is not overwritten."""
    from nr_lightning.evaluation.cli import main

    run = two_runs / "neutral-fr"
    ckpt = run / "checkpoints" / "last.ckpt"
    before = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    result = main([f"run={run}", f"ckpt=checkpoints/{ckpt.name}", "tasks=[]", "max_docs=3", "max_length=128",
                   "baseline=false"])
    final = json.loads((run / "metrics.json").read_text())["final_bpb"]
    assert result["bpb"]["fr"] == pytest.approx(final["fr"], abs=1e-6)
    saved = json.loads((run / f"eval_{ckpt.stem}.json").read_text())
    assert saved["ckpt"] == str(run / "checkpoints" / ckpt.name) and saved["bpb"] == result["bpb"]
    assert ((run / "eval.json").read_bytes() if before is not None else None) == before


def test_evaluate_checkpoint_refuses_bad_input(two_runs, tmp_path):
    from nr_lightning.evaluation.cli import main

    neutral, lora = two_runs / "neutral-fr", two_runs / "lora-fr"
    with pytest.raises(ConfigError, match="give run="):
        main(["ckpt=x.ckpt"])
    with pytest.raises(FileNotFoundError, match="the run's checkpoints: last.ckpt"):
        main([f"run={neutral}", "ckpt=checkpoints/step999999.ckpt"])
    other = lora / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="method=lora run"):
        main([f"run={neutral}", f"ckpt={other}", "tasks=[]", "max_docs=3"])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a checkpoint written by nr_lightning.train"):
        main([f"run={neutral}", f"ckpt={junk}", "tasks=[]", "max_docs=3"])


def test_evaluate_needs_run_or_backbone():
    from nr_lightning.evaluation.cli import main

    with pytest.raises(ConfigError, match="run=runs"):
        main(["limit=3"])
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        main(["run=/nonexistent/run"])


def test_report_table_and_png(two_runs):
    from nr_lightning.evaluation.report import main

    rows = main([str(two_runs / "neutral-fr"), str(two_runs / "lora-fr"), "--out", str(two_runs / "report")])
    assert {r["method"] for r in rows} == {"neutral", "lora"}
    assert all(r["bpb_en"] and r["bpb_target"] and r["bpb_sum"] for r in rows)
    md = (two_runs / "report" / "report.md").read_text()
    assert "| neutral-fr | neutral | fr |" in md
    png = (two_runs / "report" / "tradeoff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (two_runs / "report" / "report.csv").read_text().startswith("run,method,lang")


def test_lr_curves_group_runs_that_differ_only_by_lr(tmp_path):
    from nr_lightning.evaluation.report import lr_curves, tradeoff_plot

    def row(method, lr, p=0.1, en=0.9, fr=1.5):
        return {"run": f"{method}-{lr}-{p}", "method": method, "lang": "fr", "p": p, "budget": 0.2, "lr": lr,
                "bpb_en": en, "bpb_target": fr}

    rows = [row("neutral", 1e-2, fr=1.4), row("neutral", 2e-3), row("lora", 5e-4), row("neutral", 2e-3, p=0.5),
            row("lora", 2e-3, en=0.95), {**row("backbone", None), "method": "backbone"}]
    curves = lr_curves(rows)
    assert [[r["lr"] for r in c] for c in curves] == [[2e-3, 1e-2], [5e-4, 2e-3]]  # p=0.5 alone: no curve
    png = tradeoff_plot(rows, tmp_path / "t.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_compares_sequence_runs(tmp_path):
    import json

    from nr_lightning.continual.sequence import forgetting_matrix
    from nr_lightning.evaluation.report import main

    base = {"fr": 1.8, "de": 2.0, "en": 0.9}
    for name, strategy, rows in [("seq-a", "stack", [{"fr": 1.6, "en": 0.95}, {"fr": 1.7, "de": 1.5, "en": 0.97}]),
                                 ("seq-b", "merge", [{"fr": 1.5, "en": 0.9}, {"fr": 1.55, "de": 1.6, "en": 0.91}])]:
        d = tmp_path / name
        d.mkdir()
        m = forgetting_matrix(["fr", "de"], rows, base) | {"strategy": strategy, "method": "lora"}
        (d / "forgetting.json").write_text(json.dumps(m))
        (d / "sequence.json").write_text(json.dumps({"sequence": {"merge": "ties", "replay": 0.0}}))
    assert main([str(tmp_path / "seq-a"), str(tmp_path / "seq-b"), "--out", str(tmp_path / "rep")]) == []
    md = (tmp_path / "rep" / "sequences.md").read_text()
    assert "| seq-a | stack | lora | 2/2 | 1.7000 | 1.5000 | 0.9700 | 0.1000 | 0.0700 | 4.1700 |" in md
    assert "| seq-b | merge merge=ties | lora | 2/2 | 1.5500 | 1.6000 | 0.9100 | 0.0500 | 0.0100 | 4.0600 |" in md
    assert "| backbone |" in md


def test_eval_reports_stderr_and_delta_against_a_cached_backbone_row(tmp_path, fixtures_dir, monkeypatch, capsys):
    import nr_lightning.evaluation.evaluate as evaluate_mod
    from helpers import fake_run
    from nr_lightning.evaluation import baseline, cli
    from nr_lightning.evaluation.multiple_choice import accuracy_stderr

    overrides = dict(a.split("=", 1) for a in fixture_data_args(fixtures_dir))
    run = fake_run(tmp_path, "neutral", lang="fr", **overrides)
    monkeypatch.setattr(baseline, "_file_for", lambda key: tmp_path / "baselines" / "row.json")
    calls = []
    real = evaluate_mod.evaluate
    monkeypatch.setattr(evaluate_mod, "evaluate", lambda ev: calls.append(ev.run) or real(ev))
    args = [f"run={run}", "tasks=[arc_challenge_fr]", "limit=5", "max_docs=2", "max_length=64"]
    first = cli.main(args)
    assert calls == [str(run), None]  # the run, then the bare backbone
    second = cli.main(args)
    assert calls[2:] == [str(run)]  # the backbone row comes from the cache
    base = json.loads((tmp_path / "baselines" / "row.json").read_text())
    for lang in ("fr", "en"):
        assert second["delta"]["bpb"][lang] == pytest.approx(second["bpb"][lang] - base["bpb"][lang])
        assert abs(second["delta"]["bpb"][lang]) > 1e-4  # the random extension does change the model
    r = first["tasks"]["arc_challenge_fr"]
    assert r["acc_stderr"] == pytest.approx(accuracy_stderr(round(r["acc"] * 5), 5))
    out = capsys.readouterr().out
    assert "Δ vs backbone" in out and "±" in out
    paired = second["delta"]["tasks"]["arc_challenge_fr"]["paired"]  # item by item against the backbone row
    assert paired["n"] == 5 and paired["diff"] == pytest.approx(second["delta"]["tasks"]["arc_challenge_fr"]["acc_norm"])
    assert "paired p = " in out
    from nr_lightning.evaluation.report import collect, markdown

    row = collect(run)
    assert row["Δbpb_en"] == pytest.approx(second["delta"]["bpb"]["en"])
    assert f"{row['Δbpb_target']:+.4f}" in markdown([row])


def test_report_deltas_against_the_backbone_row_of_the_same_evaluation(tmp_path):
    """The sweep evaluates runs with baseline=false and the backbone once: the report's Δ columns come from that
    backbone row, but only when it was scored the same way (documents, window, tasks)."""
    from nr_lightning.evaluation.report import main

    args = {"max_docs": 1000, "max_length": 512}
    tasks = {"arc_easy_en": {}, "arc_easy_fr": {}}

    def write(name, e, cfg=None):
        d = tmp_path / name
        d.mkdir()
        (d / "eval.json").write_text(json.dumps({"eval_args": args, "tasks": tasks, **e, **({"config": cfg} if cfg else {})}))
        return d

    cfg = {"lang": "fr", "backbone": {"name": "base-en"}, "method": {"name": "finetune", "lr": 5e-4}}
    base = write("backbone-base-en-fr", {"backbone": "base-en", "bpb": {"en": 0.959, "fr": 1.731},
                                         "task_average": {"en": 0.590, "fr": 0.301}})
    run = write("ft", {"run": "ft", "backbone": "base-en", "bpb": {"en": 1.073, "fr": 1.199},
                       "task_average": {"en": 0.544, "fr": 0.320}}, cfg)
    other = write("ft-other-window", {"run": "x", "backbone": "base-en", "bpb": {"en": 1.0, "fr": 1.2},
                                      "eval_args": {**args, "max_length": 1024}}, cfg)
    own = write("ft-own-delta", {"run": "y", "backbone": "base-en", "bpb": {"en": 1.0, "fr": 1.2},
                                 "delta": {"bpb": {"en": 0.05}}}, cfg)
    fewer = write("ft-limit", {"run": "z", "backbone": "base-en", "bpb": {"en": 1.0, "fr": 1.2},
                               "eval_args": {**args, "limit": 20}}, cfg)
    rows = {r["run"]: r for r in main([str(base), str(run), str(other), str(own), str(fewer),
                                       "--out", str(tmp_path / "rep")])}
    assert rows["ft-own-delta"]["Δbpb_en"] == 0.05 and rows["ft-own-delta"]["Δbpb_target"] is None
    assert rows["ft-limit"]["Δbpb_en"] is None
    assert rows["ft"]["Δbpb_en"] == pytest.approx(0.114) and rows["ft"]["Δbpb_target"] == pytest.approx(-0.532)
    assert rows["ft"]["Δtasks_en"] == pytest.approx(-0.046) and rows["ft"]["Δtasks_target"] == pytest.approx(0.019)
    assert rows["ft-other-window"]["Δbpb_en"] is None and rows["backbone-base-en-fr"]["Δbpb_en"] is None
    assert "| ft | finetune | fr |" in (tmp_path / "rep" / "report.md").read_text() and "+0.1140" in \
        (tmp_path / "rep" / "report.md").read_text()

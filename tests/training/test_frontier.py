"""The learning-rate frontier (nr_lightning.evaluation.frontier): envelope, matched forgetting, seed noise, the report."""

from __future__ import annotations

import json

import pytest

from nr_lightning.evaluation import frontier


def _row(run: str, method: str, lr: float, curve: list[tuple[float, float]], seed: int = 0, **kw) -> dict:
    return {"run": run, "method": method, "lr": lr, "seed": seed, "lang": "fr",
            "curve": [{"step": 40 * i, "en": en, "new": new} for i, (en, new) in enumerate(curve)], **kw}


def test_pareto_front_is_sorted_by_forgetting() -> None:
    pts = [{"forget": f, "new": n} for f, n in [(0, 1.7), (0.01, 1.5), (0.005, 1.6), (0.02, 1.55), (0.03, 1.4)]]
    assert [(p["forget"], p["new"]) for p in frontier.pareto(pts)] == [(0, 1.7), (0.005, 1.6), (0.01, 1.5),
                                                                      (0.03, 1.4)]


def test_envelope_is_the_lower_convex_hull_of_the_front() -> None:
    """(0.01, 1.65) is on the Pareto front but above the segment (0, 1.7)-(0.02, 1.5): the hull drops it, so the
    reading at +0.01 is the segment's 1.6, not the point's 1.65."""
    pts = [{"forget": f, "new": n} for f, n in [(0, 1.7), (0.01, 1.65), (0.02, 1.5), (0.04, 1.45)]]
    env = frontier.envelope(pts)
    assert [(p["forget"], p["new"]) for p in env] == [(0, 1.7), (0.02, 1.5), (0.04, 1.45)]
    assert frontier.at_forgetting(env, 0.01) == (pytest.approx(1.6), False)


def test_one_more_evaluation_never_raises_the_envelope() -> None:
    """A point added between two front points can make a polyline through the front worse; the hull only falls."""
    pts = [{"forget": f, "new": n} for f, n in [(0, 1.7), (0.02, 1.5)]]
    before = frontier.at_forgetting(frontier.envelope(pts), 0.01)[0]
    after = frontier.at_forgetting(frontier.envelope([*pts, {"forget": 0.01, "new": 1.65}]), 0.01)[0]
    assert after == pytest.approx(before) == pytest.approx(1.6)
    lower = frontier.at_forgetting(frontier.envelope([*pts, {"forget": 0.01, "new": 1.55}]), 0.01)[0]
    assert lower == pytest.approx(1.55)


def test_best_point_reads_a_budget_without_interpolation() -> None:
    pts = [{"step": 40 * i, "forget": f, "new": n} for i, (f, n) in enumerate([(0, 1.7), (0.004, 1.6), (0.012, 1.4)])]
    assert frontier.best_point(pts, 0.01)["new"] == 1.6  # the envelope would read 1.475 there
    assert frontier.best_point(pts, -0.001) is None


def test_matched_forgetting_interpolates_and_flags_the_end_of_reach() -> None:
    front = [{"forget": 0.0, "new": 1.7}, {"forget": 0.01, "new": 1.5}]
    assert frontier.at_forgetting(front, 0.005) == (pytest.approx(1.6), False)
    assert frontier.at_forgetting(front, 0.02) == (1.5, True)   # flat beyond the largest forgetting
    assert frontier.at_forgetting(front, -0.01) == (None, False)  # no point forgets that little


def test_frontiers_group_by_method_use_lowest_seed_and_measure_noise_and_spread() -> None:
    base = (1.0, 1.8)
    rows = [_row("ft-hi", "finetune", 5e-4, [base, (1.05, 1.4), (1.10, 1.2)]),
            _row("ft-lo", "finetune", 1e-4, [base, (1.004, 1.6), (1.01, 1.45)]),
            _row("nr", "neutral", 2e-3, [base, (1.002, 1.5), (1.003, 1.41)], alpha=0.01),
            _row("nr-s1", "neutral", 2e-3, [base, (1.002, 1.5), (1.004, 1.42)], seed=1, alpha=0.01),
            _row("nr-a0", "neutral", 2e-3, [base, (1.002, 1.5), (1.003, 1.40)], alpha=0.0)]
    fr = frontier.frontiers(rows)
    assert set(fr) == {"finetune", "neutral", "neutral, α=0"}
    ft, nr = fr["finetune"], fr["neutral"]
    assert ft["lrs"] == [1e-4, 5e-4]
    assert ft["matched"]["+0.010"] == {"new": pytest.approx(1.45), "beyond_reach": False, "best_point": 1.45}
    assert ft["matched"]["+0.020"]["new"] == pytest.approx(1.45 - 0.01 * 0.25 / 0.09)  # (0.05, 1.4) is off the hull
    assert ft["matched"]["+0.020"]["best_point"] == 1.45
    assert nr["matched"]["+0.010"] == {"new": pytest.approx(1.41), "beyond_reach": True, "best_point": 1.41}
    assert {p["run"] for p in nr["points"]} == {"nr"}  # seed 1 is noise, not a frontier point
    assert nr["seed_noise"] == {"forget": pytest.approx(0.001), "new": pytest.approx(0.01)}
    assert ft["final_spread"] == {"forget": pytest.approx(0.09), "new": pytest.approx(0.25)}


def test_cost_uses_training_steps_only() -> None:
    steps = [{"step": s, "tokens": 2560, "time": 5.0 * s + (100.0 if s > 2 else 0.0)} for s in range(1, 6)]
    c = frontier.cost(steps, eval_every=3)
    assert c["s_per_step"] == pytest.approx(5.0)  # the 100 s evaluation pause after step 2 is not a step
    assert c["tok_s"] == pytest.approx(512.0)
    assert c["wall_min"] == pytest.approx((125 - 5) / 60)


def test_cost_does_not_count_a_stop_and_resume_as_training() -> None:
    """A run stopped after step 3 and resumed 30 minutes later: the pause is one median step, while a curve
    evaluation (ending on a multiple of eval_every) keeps its real length."""
    steps = [{"step": s, "tokens": 2560, "time": 5.0 * s + (1800.0 if s > 3 else 0.0) + (100.0 if s > 4 else 0.0)}
             for s in range(1, 7)]
    c = frontier.cost(steps, eval_every=5)
    assert c["s_per_step"] == pytest.approx(5.0)
    assert c["wall_min"] == pytest.approx((5 + 5 + 5 + 105 + 5) / 60)


def test_rows_at_several_lrs_are_named_by_their_lr() -> None:
    from nr_lightning.evaluation.reproduction import name_rows

    rows = name_rows([{"method": "finetune", "lr": 5e-4}, {"method": "finetune", "lr": 1e-4},
                      {"method": "lora", "lr": 5e-4}, {"method": "lora", "lr": 5e-4, "seed": 1}])
    assert [r["label"] for r in rows] == ["finetune, lr 5e-04", "finetune, lr 1e-04", "lora", "lora, seed 1"]


def test_write_produces_tables_json_and_plot(tmp_path) -> None:
    rows = [_row("ft", "finetune", 5e-4, [(1.0, 1.8), (1.05, 1.4)], cost={"wall_min": 30.0, "s_per_step": 7.0,
                                                                         "tok_s": 365.0}, machine="cpu X")]
    frontier.write(rows, tmp_path)
    md = (tmp_path / "frontier.md").read_text()
    assert "| finetune | 5e-04 |" in md and "| 365 | cpu X |" in md
    assert json.loads((tmp_path / "frontier.json").read_text())["finetune"]["reach"]["best_new"] == 1.4
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_curves_table_has_one_row_per_lr_and_a_dash_where_a_run_was_not_evaluated() -> None:
    rows = [_row("a", "neutral", 2e-3, [(1.0, 1.8), (1.002, 1.5), (1.004, 1.4)]),
            _row("b", "neutral", 1e-2, [(1.0, 1.8), (1.01, 1.3)])]
    md = frontier.curves_table(frontier.frontiers(rows))
    assert md.splitlines()[0] == "| run | 40 | 80 |"
    assert "| neutral, lr 2e-03 | +0.0020 / 1.5000 | +0.0040 / 1.4000 |" in md
    assert "| neutral, lr 1e-02 | +0.0100 / 1.3000 | – |" in md
    assert frontier.signed(-1e-6) == "+0.0000" and frontier.signed(-0.0012) == "-0.0012"  # no "-0.0000"


def test_extreme_is_the_trained_point_with_most_french_within_the_budget() -> None:
    pts = frontier.points(_row("ft", "finetune", 1e-4, [(1.0, 1.8), (1.004, 1.6), (1.009, 1.5), (1.03, 1.2)]))
    assert frontier.extreme(pts)["step"] == 80  # step 120 learns more but forgot +0.03
    assert frontier.extreme(pts, budget=0.001) is None  # step 0 (the base) is never an extreme


def _tasks(correct: str) -> dict:
    item = {"acc": correct.count("1") / len(correct), "se": 0.1, "n": len(correct), "correct": correct,
            "items_sha256": "abc", "shots": 5, "normalization": "acc_norm"}
    return {"arc_easy_en": item, "arc_easy_fr": dict(item)}


def test_downstream_table_pairs_each_extreme_with_its_base_and_names_what_is_missing() -> None:
    """A final extreme uses the run's own ARC results, a mid-run one its `eval_stepN.json`; each is paired with a
    given base of the same weights; what is missing is printed as the command that computes it."""
    from nr_lightning.evaluation.reproduction import extremes_table, name_rows

    base = {"bpb": {"en": 0.96, "fr": 1.73}, "tasks": {k: {**v, "acc_norm": v["acc"]}
                                                       for k, v in _tasks("1" * 20 + "0" * 20).items()}}
    own = {"bpb": base["bpb"]}  # an older base_eval.json without downstream results: the given one pairs
    nr = _row("repro-nr", "neutral", 2e-3, [(1.0, 1.8), (1.003, 1.41)], tasks=_tasks("0" * 20 + "1" * 20),
              step_tasks={}, base=own, backbone="b", alpha=0.01)
    ft = _row("repro-ft", "finetune", 1e-4, [(1.0, 1.8), (1.005, 1.44), (1.02, 1.3)], tasks={},
              step_tasks={40: _tasks("1" * 40)}, base=own, backbone="b")
    lora = _row("repro-lora", "lora", 5e-4, [(1.0, 1.8), (1.009, 1.4), (1.02, 1.3)], tasks={}, step_tasks={},
                base={"bpb": {"en": 0.95, "fr": 1.7}}, backbone="c")
    rows = name_rows([nr, ft, lora])
    text = extremes_table(frontier.frontiers(rows), rows, [base])
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert "| 40 | +0.0050 / 1.4400 | 1.000 ± 0.100 (p = 1.9e-06) |" in lines["finetune"]  # 20 gained, 0 lost
    assert "| 40 (final) | +0.0030 / 1.4100 | 0.500 ± 0.100 (p = 1) |" in lines["neutral"]  # 20 gained, 20 lost
    assert "not run | not run" in lines["lora"]
    assert "run=runs/repro-lora ckpt=" not in text  # the command's arguments, in order:
    assert ("python -m nr_lightning.evaluate run=runs/repro-lora 'tasks=[arc_easy_en,arc_easy_fr]' max_docs=0 "
            "max_length=512 baseline=false ckpt=checkpoints/step000040.ckpt") in text
    assert "backbone=c langs=[en,fr]" in text and "out=runs/backbone-c-fr/eval_tasks.json" in text
    assert "backbone=b " not in text  # the given base of the same weights has its downstream results


def test_reproduction_report_reads_a_checkpoint_evaluation_into_the_downstream_section(tmp_path) -> None:
    """End to end from run directories: `eval_step000040.json` (`evaluate ckpt=`) is the mid-run extreme's ARC."""
    from nr_lightning.evaluation.reproduction import main

    run = tmp_path / "repro-ft"
    run.mkdir()
    cfg = {"lang": "fr", "seed": 0, "method": {"name": "finetune", "lr": 1e-4}, "backbone": {"name": "b"}}
    (run / "metrics.json").write_text(json.dumps({"config": cfg, "global_step": 80}))
    curve = [(0, 1.0, 1.8), (40, 1.005, 1.44), (80, 1.02, 1.3)]
    (run / "curves.json").write_text(json.dumps([{"step": s, "eval/bpb_en": en, "eval/bpb_fr": new}
                                                 for s, en, new in curve]))
    arc = {k: {**v, "acc_norm": v["acc"]} for k, v in _tasks("1" * 30 + "0" * 10).items()}
    (run / "eval_step000040.json").write_text(json.dumps({"tasks": arc}))
    main([str(run), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "frontier.md").read_text()
    assert "## Downstream at each method's extreme" in md
    assert "| finetune | finetune | 40 | +0.0050 / 1.4400 | 0.750 ± 0.068 | 0.750 ± 0.068 |" in md

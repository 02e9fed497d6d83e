"""The reproduction report: deltas against the English base, which numbers it used, gates per domain."""

from __future__ import annotations

import json

import pytest

from nr_lightning.evaluation.reproduction import collect, main


def _run(root, name, method, en, fr, evaljson=None, **method_kw):
    d = root / name
    d.mkdir()
    cfg = {"lang": "fr", "seed": 0, "method": {"name": method, "alpha": 0.01, "gate_init": "he", **method_kw},
           "eval": {"max_docs": 100}}
    (d / "metrics.json").write_text(json.dumps({"config": cfg, "global_step": 240}))
    (d / "curves.json").write_text(json.dumps([
        {"step": 0, "eval/bpb_en": 0.90, "eval/bpb_fr": 1.70},
        {"step": 240, "eval/bpb_en": en, "eval/bpb_fr": fr}]))
    (d / "gates.json").write_text(json.dumps([{"step": 240, "en": {"gate_mean": 0.1, "residual_l1": 1e-3},
                                                "fr": {"gate_mean": 0.5, "residual_l1": 4e-3}}]))
    if evaljson:
        (d / "eval.json").write_text(json.dumps(evaljson))
    return d


def test_report_uses_eval_json_when_present_and_states_it(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    ft = _run(runs, "repro-finetune", "finetune", 0.95, 1.20,
              {"bpb": {"en": 0.96, "fr": 1.21}, "tasks": {"arc_easy_en": {"acc_norm": 0.5, "n": 100}}})
    _run(runs, "repro-neutral", "neutral", 0.91, 1.40)
    (runs / "unfinished").mkdir()
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"bpb": {"en": 0.92, "fr": 1.72}, "tasks": {}}))
    rows = main([str(p) for p in sorted(runs.iterdir())] + ["--base", str(base), "--out", str(tmp_path / "out")])
    assert [r["run"] for r in rows] == ["repro-finetune", "repro-neutral"]
    assert collect(ft)["en"] == 0.96 and collect(ft)["tasks"]["arc_easy_en"]["se"] == pytest.approx(0.05)
    md = (tmp_path / "out" / "table.md").read_text()
    assert "0.9600 (+0.040)" in md  # eval.json numbers against the base's eval.json
    assert "0.9100 (+0.010)" in md  # curve numbers against the run's own step 0 (same subset)
    assert "eval.json (all documents)" in md and "curves.json (100 docs)" in md
    assert "| neutral | 0.100 | 0.500 |" in (tmp_path / "out" / "gates.md").read_text()
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000


def test_each_run_is_compared_with_the_base_it_started_from(tmp_path):
    """Rows built on different machines carry their own base_eval.json: deltas use it, the table lists both."""
    runs = tmp_path / "runs"
    runs.mkdir()
    a = _run(runs, "repro-finetune", "finetune", 0.95, 1.20, {"bpb": {"en": 1.06, "fr": 1.20}})
    b = _run(runs, "repro-lora", "lora", 0.95, 1.30, {"bpb": {"en": 0.97, "fr": 1.35}})
    (a / "base_eval.json").write_text(json.dumps({"bpb": {"en": 0.959, "fr": 1.731}, "label": "Intel AMX"}))
    (b / "base_eval.json").write_text(json.dumps({"bpb": {"en": 0.961, "fr": 1.728}, "label": "AMD EPYC"}))
    main([str(a), str(b), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| English base A (Intel AMX) | 0.9590 |" in md and "| English base B (AMD EPYC) | 0.9610 |" in md
    assert "1.0600 (+0.101)" in md and "| eval.json (all documents) | A |" in md
    assert "0.9700 (+0.009)" in md and "1.3500 (-0.378)" in md and md.rstrip().endswith("| B |")


def test_downstream_only_companion_adds_tasks_without_touching_bpb(tmp_path):
    """eval_tasks.json (a max_docs=0 evaluation) fills the ARC columns; base_eval_tasks.json the base row."""
    run = _run(tmp_path, "repro-adapters", "adapters", 0.95, 1.30,
               {"bpb": {"en": 0.97, "fr": 1.35}, "tasks": {}})
    (run / "eval_tasks.json").write_text(json.dumps({"bpb": {}, "tasks": {
        "arc_easy_en": {"acc_norm": 0.6, "n": 400}, "arc_easy_fr": {"acc_norm": 0.4, "n": 400}}}))
    (run / "base_eval.json").write_text(json.dumps({"bpb": {"en": 0.96, "fr": 1.73}, "label": "B"}))
    (run / "base_eval_tasks.json").write_text(json.dumps({"tasks": {"arc_easy_en": {"acc_norm": 0.5, "n": 400}}}))
    r = collect(run)
    assert r["en"] == 0.97 and r["tasks"]["arc_easy_fr"]["acc"] == 0.4
    assert r["base"]["bpb"] == {"en": 0.96, "fr": 1.73}
    main([str(run), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| 0.500 ± 0.025 | – |" in md  # base row: English ARC from its companion, no French
    assert "0.9700 (+0.010) | 1.3500 (-0.380) | 2.3200 | 0.600 ± 0.024 | 0.400 ± 0.024 |" in md


def test_several_bases_are_listed_even_without_runs_of_their_own(tmp_path):
    """--base A C: every build is a row (with its ARC), runs without base_eval.json take deltas against A."""
    run = _run(tmp_path, "repro-lora", "lora", 0.95, 1.30, {"bpb": {"en": 0.97, "fr": 1.35}})
    a, c = tmp_path / "a.json", tmp_path / "c.json"
    a.write_text(json.dumps({"bpb": {"en": 0.959, "fr": 1.731}, "label": "first"}))
    c.write_text(json.dumps({"bpb": {"en": 0.9591, "fr": 1.7313}, "label": "fp32",
                             "tasks": {"arc_easy_en": {"acc_norm": 0.592, "n": 997}}}))
    main([str(run), "--base", str(a), str(c), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "table.md").read_text()
    assert "| English base A (first) | 0.9590 |" in md
    assert "| English base B (fp32) | 0.9591 | 1.7313 | 2.6904 | 0.592 ± 0.016 | – |" in md
    assert "0.9700 (+0.011)" in md and md.rstrip().endswith("| A |")


def test_arc_cells_carry_the_paired_test_against_the_base_when_items_were_kept(tmp_path):
    """A run and its base scored item by item: the ARC cell adds McNemar's p; without items it does not."""
    from scipy.stats import binomtest

    items = {"items_sha256": "s", "n": 100, "shots": 5, "normalization": "per_char"}  # as evaluate writes them
    base_en = {"acc_norm": 0.6, "correct": "1" * 60 + "0" * 40, **items}
    run_en = {"acc_norm": 0.5, "correct": "1" * 50 + "0" * 50, **items}  # 10 items lost, none gained
    run = _run(tmp_path, "repro-finetune", "finetune", 0.95, 1.20,
               {"bpb": {"en": 1.06, "fr": 1.20}, "tasks": {"arc_easy_en": run_en,
                                                           "arc_easy_fr": {"acc_norm": 0.3, "n": 100}}})
    (run / "base_eval.json").write_text(json.dumps({"bpb": {"en": 0.96, "fr": 1.73}, "tasks": {
        "arc_easy_en": base_en, "arc_easy_fr": {"acc_norm": 0.3, "n": 100}}}))
    main([str(run), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "table.md").read_text()
    p = binomtest(0, 10, 0.5).pvalue
    assert f"| 0.500 ± 0.050 (p = {p:.2g}) | 0.300 ± 0.046 |" in md

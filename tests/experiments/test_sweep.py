"""The paper's sweep files (experiments/paper/) and the sweep launcher (nr_lightning.sweep)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fixture_data_args as data_args
from nr_lightning.config import compose
from nr_lightning.sweeps import runners, spec
from nr_lightning.sweeps.sweep import main

REPO = Path(__file__).resolve().parents[2]
PAPER = sorted((REPO / "experiments" / "paper").glob("*.yaml"))
# runs per file at (cpu, paper) scale
COUNTS = {"table2_english_ratio": (10, 10), "table3_budget": (4, 4), "table4_french": (4, 12),
          "table5_german": (4, 12), "table6_gate_ablation": (9, 9), "table6_gate_ablation_full": (16, 16),
          "table7_alpha": (5, 5), "table8_learning_rate": (16, 16), "repro_french": (9, 9),
          "repro_lr": (8, 8)}


def test_every_paper_table_has_a_file():
    assert {p.stem for p in PAPER} == set(COUNTS)


@functools.cache
def expanded(stem: str, scale: str) -> tuple[spec.Run, ...]:
    """Each paper file is expanded (every run composed) once per scale for the whole module."""
    return tuple(spec.expand(spec.load_sweep(stem), scale))


def _rows(stem: str, scale: str = "cpu") -> tuple[spec.Run, ...]:
    return expanded(stem, scale)


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_sweeps_expand_and_compose_at_both_scales(path):
    sweep = spec.load_sweep(path)
    assert sweep.description and set(sweep.scales) == {"cpu", "paper"}
    for scale, expected in zip(("cpu", "paper"), COUNTS[path.stem]):
        runs = expanded(path.stem, scale)  # composes + validates every run
        names = [r.name for r in runs]
        assert len(names) == expected, (scale, names)
        assert len(set(names)) == len(names) and all(n.endswith(f"-{scale}") for n in names)
        assert len({r.run_dir for r in runs}) == len(runs)
        for r in runs:
            c = r.cfg
            assert c.name == r.name and f"name={r.name}" in r.overrides
            if scale == "cpu":
                assert c.backbone.name in ("smollm2-135m", "smollm2-135m-en") and c.trainer.accelerator == "cpu"
                assert c.trainer.max_steps <= 300
            else:  # the paper: 100k steps x 64 x 4096 (Gemma-2B: 150k steps x 8 x 4096)
                t = c.trainer
                batch = t.devices * t.num_nodes * c.data.batch_size * t.accumulate_grad_batches
                gemma = "gemma" in c.backbone.name
                assert (t.max_steps, batch) == ((150_000, 8) if gemma else (100_000, 64)), r.name
                assert c.data.seq_len == 4096 and c.backbone.name not in ("smollm2-135m", "tiny")
            paper_lr = {"finetune": 5e-5, "lora": 5e-5}.get(c.method.name, 2e-4)
            if "table8" not in path.stem and path.stem != "repro_lr":  # the two learning-rate grids
                assert c.method.lr == paper_lr, r.name


def test_table2_grid():
    runs = _rows("table2_english_ratio")
    got = {(r.cfg.method.name, r.cfg.data.p) for r in runs}
    assert {("adapters", p) for p in (0, 0.01, 0.1, 0.5)} <= got
    assert {(m, p) for m in ("finetune", "lora", "adapters", "neutral") for p in (0, 0.1)} <= got
    assert all(r.cfg.lang == "fr" for r in runs)


def test_table3_table7_table8_grids():
    assert sorted(r.cfg.method.budget for r in _rows("table3_budget")) == [0.05, 0.1, 0.2, 0.5]
    alpha = {r.labels["alpha"]: r.cfg.method.alpha for r in _rows("table7_alpha")}
    assert alpha == {"0": 0, "1": 1e-4, "10": 1e-3, "100": 1e-2, "1000": 1e-1}
    assert alpha["100"] == compose(["method=neutral"]).method.alpha  # the paper's default = ours
    lrs: dict[str, list[float]] = {}
    for r in _rows("table8_learning_rate"):
        lrs.setdefault(r.cfg.method.name, []).append(r.cfg.method.lr)
    assert set(lrs) == {"finetune", "lora", "adapters", "neutral"}
    for m, values in lrs.items():
        assert len(values) == 4 and compose([f"method={m}"]).method.lr in values


def test_tables_4_5_languages_methods_backbones():
    for name, lang in (("table4_french", "fr"), ("table5_german", "de")):
        runs = _rows(name, "paper")
        assert {r.cfg.lang for r in runs} == {lang} and {r.cfg.data.learn[0] for r in runs} == {lang}
        assert {(r.labels["model"], r.cfg.method.name) for r in runs} == \
            {(b, m) for b in ("en1b", "ml1b", "gemma2b") for m in ("finetune", "lora", "adapters", "neutral")}


def _gate_row(r: spec.Run) -> tuple[str, bool, bool, str]:
    m = r.cfg.method
    return m.gate, m.beta > 0, m.alpha > 0, m.init


def test_gate_ablation_paper_rows_and_full_factorial():
    rows = [_gate_row(r) for r in _rows("table6_gate_ablation")]
    assert all(r.cfg.method.name == "neutral" for r in _rows("table6_gate_ablation"))
    lv, he = "low_variance", "he"
    assert rows == [("none", False, False, he), ("none", False, True, he), ("none", False, True, lv),
                    ("sigmoid", True, False, he), ("sigmoid", True, False, lv), ("sigmoid", True, True, lv),
                    ("elu", False, True, he), ("elu", False, False, lv), ("elu", False, True, lv)]
    full = {_gate_row(r) for r in _rows("table6_gate_ablation_full")}
    grid = {(g, ce, sp, i) for g in ("none", "sigmoid", "elu") for ce in (False, True) for sp in (False, True)
            for i in (he, lv)}
    # no gate: no CE to train; ELU gate + CE: refused by the config (the BCE would push ELU(g) to -1)
    assert full == grid - {(g, True, sp, i) for g in ("none", "elu") for sp in (False, True) for i in (he, lv)}
    assert set(rows) <= full
    # the last row is neutral residues as configured by method=neutral; row 5 is method=sigmoid
    for row, preset in ((rows[-1], "neutral"), (rows[4], "sigmoid")):
        m = compose([f"method={preset}"]).method
        assert row == (preset == "sigmoid" and "sigmoid" or "elu", m.beta > 0, m.alpha > 0, lv)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


TINY = """
description: two tiny runs
base: [method=neutral, lang=fr, backbone=tiny]
grid:
  data.p: [0, 0.5]
scales:
  cpu: [trainer.max_steps=2, eval.every_n_steps=0, eval.max_docs=4, trainer.checkpoint_every_n_steps=2]
name: "tiny-p{data.p}"
"""


def test_bad_sweeps_fail_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runners, "train_one", lambda *a, **k: pytest.fail("trained"))
    bad = _write(tmp_path, TINY.replace("data.p: [0, 0.5]", "data.p: [0, 0.5]\n  method.alphaa: [1]"))
    with pytest.raises(spec.SweepError, match=r"(?s)2 run\(s\) do not compose.*method.alphaa"):
        main([str(bad), "scale=cpu", f"runs_root={tmp_path}"])
    with pytest.raises(spec.SweepError, match="no scale 'paper'"):
        main([str(_write(tmp_path, TINY)), "scale=paper"])
    with pytest.raises(spec.SweepError, match="both named"):
        spec.expand(spec.load_sweep(_write(tmp_path, TINY.replace("tiny-p{data.p}", "tiny"))), "cpu")
    with pytest.raises(spec.SweepError, match="names its runs itself"):
        spec.expand(spec.load_sweep(_write(tmp_path, TINY)), "cpu", ["name=x"])
    with pytest.raises(spec.SweepError, match="unknown keys"):
        spec.load_sweep(_write(tmp_path, TINY + "grids: {}\n"))
    with pytest.raises(spec.SweepError, match="not found"):
        spec.load_sweep("table99_nope")


def test_dry_run_launches_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runners, "train_one", lambda *a, **k: pytest.fail("trained"))
    assert main(["table7_alpha", "scale=cpu", "--dry-run", f"runs_root={tmp_path / 'runs'}"]) == []
    out = capsys.readouterr().out
    assert "t7-neutral-alpha100-cpu" in out and "python -m nr_lightning.train" in out and "method.alpha=1e-2" in out
    assert not (tmp_path / "runs").exists()
    proc = subprocess.run([sys.executable, "-m", "nr_lightning.sweep", str(_write(tmp_path, TINY)), "scale=cpu",
                           "--dry-run", f"runs_root={tmp_path / 'runs'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("python -m nr_lightning.train") == 2 and "name=tiny-p0.5-cpu" in proc.stdout
    assert not (tmp_path / "runs").exists()


def test_resume_state(tmp_path):
    runs = spec.expand(spec.load_sweep(_write(tmp_path, TINY)), "cpu", [f"runs_root={tmp_path}"])
    r = runs[0]
    assert r.state() == "new" and "ckpt_path=last" not in r.train_args()
    (r.run_dir / "checkpoints").mkdir(parents=True)
    (r.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert r.state() == "resume" and r.train_args()[-1] == "ckpt_path=last"
    (r.run_dir / "metrics.json").write_text("{}")
    assert r.state() == "done"


def test_local_sweep_trains_then_rerun_skips(tmp_path, fixtures_dir, monkeypatch, capsys):
    path = _write(tmp_path, TINY)
    root = tmp_path / "runs"
    args = [str(path), "scale=cpu", "--in-process", f"runs_root={root}", *data_args(fixtures_dir)]
    rows = main(args)
    assert [(r["run"], r["status"]) for r in rows] == [("tiny-p0-cpu", "trained"), ("tiny-p0.5-cpu", "trained")]
    for name, p in (("tiny-p0-cpu", 0.0), ("tiny-p0.5-cpu", 0.5)):
        m = json.loads((root / name / "metrics.json").read_text())
        assert m["global_step"] == 2 and m["config"]["data"]["p"] == p and set(m["final_bpb"]) == {"fr", "en"}
    assert all(r["bpb_en"] is not None for r in rows)
    assert (root / "_sweeps" / "sweep-cpu" / "report.md").is_file()  # the report of the sweep's runs
    out = capsys.readouterr().out
    assert "| tiny-p0-cpu | trained |" in out and "tiny-p0.5-cpu" in out

    monkeypatch.setattr(runners, "train_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    rows = main(args)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert "finished" in capsys.readouterr().err


def test_slurm_submission_through_train_sbatch(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    for tool in ("sbatch", "srun"):  # fakes: record their arguments one per line
        (bin_dir / tool).write_text(f"#!/bin/bash\nprintf '%s\\n' {tool} \"$@\" >> {calls}\necho 'Submitted 42'\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "runs"
    path = _write(tmp_path, TINY)
    done = root / "tiny-p0-cpu"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")  # finished: not submitted
    main([str(path), "scale=cpu", "--slurm", "--max-parallel=3", "--sbatch-args=--partition=debug",
             f"runs_root={root}"])
    argv = calls.read_text().splitlines()
    assert argv[0] == "sbatch" and "--array=0-0%3" in argv and "--partition=debug" in argv
    assert "--ntasks-per-node=1" in argv and argv[-1] == str(runners.SBATCH_SCRIPT)
    export = next(a for a in argv if a.startswith("--export=ALL,NRL_SWEEP="))
    lines_file = Path(export.split("NRL_SWEEP=")[1].split(",")[0])
    lines = [x for x in lines_file.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == 1 and "name=tiny-p0.5-cpu" in lines[0].split()

    assert runners.SBATCH_SCRIPT.is_file(), f"{runners.SBATCH_SCRIPT} is missing: restore it from git"
    calls.unlink()  # the array task itself: line 1 of the file through srun
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "NRL_SWEEP": str(lines_file), "NRL_PYTHON": "python3"}
    proc = subprocess.run(["bash", str(runners.SBATCH_SCRIPT)], env=env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = calls.read_text().splitlines()
    assert got[0] == "srun" and "nr_lightning.train" in got and "name=tiny-p0.5-cpu" in got
    assert set(lines[0].split()) <= set(got) and "ckpt_path=last" in got


def test_only_matches_the_sweep_files_names_and_the_run_directories():
    from nr_lightning.sweeps.spec import expand, load_sweep

    sweep = load_sweep("repro_french")
    for pattern in ("repro-lora", "repro-lora-cpu"):
        assert [r.name for r in expand(sweep, "cpu", only=pattern)] == ["repro-lora-cpu"]
    assert [r.name for r in expand(sweep, "cpu", only="repro-lora*")] == ["repro-lora-cpu", "repro-lora-seed1-cpu"]


def test_evaluate_and_archive_each_run_as_it_finishes(tmp_path, monkeypatch):
    """--evaluate/--archive act on each run before the next one trains (a session that ends mid-sweep keeps
    complete rows), with the scale's `evaluate` arguments; the backbone reference runs once; no weights."""
    import nr_lightning.evaluation.cli as evaluate_cli

    root, events = tmp_path / "runs", []
    sweep = _write(tmp_path, TINY.replace(
        "  cpu: [trainer.max_steps=2, eval.every_n_steps=0, eval.max_docs=4, trainer.checkpoint_every_n_steps=2]",
        "  cpu:\n    overrides: [trainer.max_steps=2]\n    evaluate: ['tasks=[arc_easy_en]', max_docs=1000, baseline=false]"))

    def fake_train(args, in_process):
        name = next(a.split("=", 1)[1] for a in args if a.startswith("name="))
        events.append(f"train {name}")
        (root / name / "checkpoints").mkdir(parents=True)
        (root / name / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        (root / name / "extension").mkdir()
        (root / name / "extension" / "extension.json").write_text("{}")
        for f in ("config.yaml", "curves.json", "metrics.json"):
            (root / name / f).write_text("{}")

    def fake_eval(args):
        events.append("eval " + " ".join(args))
        out = next((a.split("=", 1)[1] for a in args if a.startswith("out=")), None)
        out = Path(out) if out else Path(next(a.split("=", 1)[1] for a in args if a.startswith("run="))) / "eval.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")

    monkeypatch.setattr(runners, "train_one", fake_train)
    monkeypatch.setattr(evaluate_cli, "main", fake_eval)
    argv = [str(sweep), "scale=cpu", "--in-process", "--evaluate", "--archive", str(tmp_path / "arch"),
            f"runs_root={root}"]
    main(argv)
    assert [e.split()[0] + " " + e.split()[1] for e in events] == [
        "train tiny-p0-cpu", f"eval run={root / 'tiny-p0-cpu'}", "eval backbone=tiny",
        "train tiny-p0.5-cpu", f"eval run={root / 'tiny-p0.5-cpu'}"]
    assert "tasks=[arc_easy_en] max_docs=1000 baseline=false" in events[1]
    assert "baseline=false" not in events[2] and f"out={root / 'backbone-tiny-fr' / 'eval.json'}" in events[2]
    arch = tmp_path / "arch" / "tiny-p0-cpu"
    assert sorted(p.name for p in arch.iterdir()) == ["base_eval.json", "config.yaml", "curves.json", "eval.json",
                                                      "metrics.json"]
    assert "vCPU" in json.loads((arch / "base_eval.json").read_text())["label"]  # which machine built the base
    assert (tmp_path / "arch" / "tiny-p0.5-cpu" / "eval.json").is_file()

    events.clear()  # a rerun: nothing trains or evaluates again
    main(argv)
    assert events == []

    # a fresh checkout (no runs/, no backbone reference): the archived runs are restored, not trained; only the
    # backbone is evaluated again (each session's rebuilt base is its own reference)
    import shutil

    shutil.rmtree(root)
    main(argv)
    assert [e.split()[0] for e in events] == ["eval"] and "backbone=tiny" in events[0]
    assert json.loads((root / "tiny-p0-cpu" / "metrics.json").read_text()) == {}
    assert not (root / "tiny-p0-cpu" / "checkpoints").exists()

    # a checkout writes files in any order: a restored eval.json older than its metrics.json is still kept
    # (the run has no weights to evaluate), only the backbone is evaluated again
    shutil.rmtree(root)
    events.clear()
    for run in ("tiny-p0-cpu", "tiny-p0.5-cpu"):
        os.utime(tmp_path / "arch" / run / "eval.json", (1, 1))
    main(argv)
    assert [e.split()[0] for e in events] == ["eval"] and "backbone=tiny" in events[0]
    assert (root / "tiny-p0-cpu" / "eval.json").read_text() == "{}"

    # --retrain: an archived row is trained, evaluated and archived again (here: only the one --only names)
    shutil.rmtree(root)
    events.clear()
    (tmp_path / "arch" / "tiny-p0-cpu" / "eval.json").write_text('{"old": 1}')
    (tmp_path / "arch" / "tiny-p0-cpu" / "eval_tasks.json").write_text('{"old": 1}')  # the old weights' only
    main([*argv, "--retrain", "--only", "tiny-p0-cpu"])
    assert not (tmp_path / "arch" / "tiny-p0-cpu" / "eval_tasks.json").exists()
    assert [" ".join(e.split()[:2]) for e in events] == [
        "train tiny-p0-cpu", f"eval run={root / 'tiny-p0-cpu'}", "eval backbone=tiny"]
    assert (tmp_path / "arch" / "tiny-p0-cpu" / "eval.json").read_text() == "{}"
    assert not (root / "tiny-p0.5-cpu").exists()
    with pytest.raises(spec.SweepError, match="--archive"):
        main([a for a in argv if a not in ("--archive", str(tmp_path / "arch"))] + ["--retrain"])


def test_backbone_reference_reused_for_identical_weights(tmp_path, monkeypatch):
    """A rebuilt base with the same weights (same sha256) and the same evaluate arguments is not evaluated again:
    the archived evaluation is copied, keeping the label of the machine that computed it; other weights are."""
    import shutil

    import nr_lightning.backbone as backbone_mod
    import nr_lightning.evaluation.cli as evaluate_cli

    root, events, sha = tmp_path / "runs", [], {"v": "a" * 64}
    sweep = _write(tmp_path, TINY.replace(
        "  cpu: [trainer.max_steps=2, eval.every_n_steps=0, eval.max_docs=4, trainer.checkpoint_every_n_steps=2]",
        "  cpu:\n    overrides: [trainer.max_steps=2]\n    evaluate: ['tasks=[arc_easy_en]', max_docs=1000]"))

    def fake_train(args, in_process):
        name = next(a.split("=", 1)[1] for a in args if a.startswith("name="))
        (root / name / "extension").mkdir(parents=True)
        (root / name / "extension" / "extension.json").write_text("{}")
        for f in ("config.yaml", "curves.json", "metrics.json"):
            (root / name / f).write_text("{}")

    def fake_eval(args):
        events.append(" ".join(args))
        out = next((a.split("=", 1)[1] for a in args if a.startswith("out=")), None)
        out = Path(out) if out else Path(next(a.split("=", 1)[1] for a in args if a.startswith("run="))) / "eval.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"bpb": {"en": 1.0, "fr": 2.0}}))

    monkeypatch.setattr(runners, "train_one", fake_train)
    monkeypatch.setattr(evaluate_cli, "main", fake_eval)
    monkeypatch.setattr(backbone_mod, "weights_sha256", lambda name: sha["v"])
    arch = tmp_path / "arch"
    argv = [str(sweep), "scale=cpu", "--in-process", "--evaluate", "--archive", str(arch), f"runs_root={root}"]
    main(argv)
    assert sum("backbone=tiny" in e for e in events) == 1
    ref = json.loads((root / "backbone-tiny-fr" / "eval.json").read_text())
    assert ref["reference"]["weights_sha256"] == "a" * 64
    assert "tasks=[arc_easy_en]" in ref["reference"]["eval_args"] and not any(
        a.startswith("out=") for a in ref["reference"]["eval_args"])
    label = json.loads((arch / "tiny-p0-cpu" / "base_eval.json").read_text())["label"]

    # a fresh checkout with a bit-identical rebuild: nothing is evaluated, the archived reference is copied
    shutil.rmtree(root)
    shutil.rmtree(arch / "tiny-p0.5-cpu")  # one row still to train
    events.clear()
    main(argv)
    assert not any("backbone=tiny" in e for e in events)
    reused = json.loads((root / "backbone-tiny-fr" / "eval.json").read_text())
    assert reused.pop("label") == label and reused == ref
    assert json.loads((arch / "tiny-p0.5-cpu" / "base_eval.json").read_text())["label"] == label

    # other weights (another CPU's rebuild) or other arguments: evaluated again
    for change in ("weights", "args"):
        shutil.rmtree(root)
        shutil.rmtree(arch / "tiny-p0.5-cpu")
        events.clear()
        if change == "weights":
            sha["v"] = "b" * 64
            main(argv)
        else:
            main([*argv, "--eval-args", "limit=5"])
        assert sum("backbone=tiny" in e for e in events) == 1


def test_weights_sha256(tmp_path):
    from nr_lightning.backbone import weights_sha256

    assert weights_sha256("tiny") is None and weights_sha256(str(tmp_path)) is None
    (tmp_path / "model.safetensors").write_bytes(b"0123")
    first = weights_sha256(str(tmp_path))
    assert first == weights_sha256(str(tmp_path)) and len(first) == 64
    (tmp_path / "model.safetensors").write_bytes(b"0124")
    assert weights_sha256(str(tmp_path)) != first


def test_archive_takes_the_bases_downstream_evaluation_only_for_the_same_weights(tmp_path, monkeypatch):
    """`base_eval_tasks.json` (the base's ARC, for the paired tests) is archived beside `base_eval.json` when the
    reference on this machine is the same base (same bpb), never from a base rebuilt elsewhere."""
    from nr_lightning.sweeps import runners

    run_dir, ref = tmp_path / "runs" / "r", tmp_path / "runs" / "backbone-b-fr" / "eval.json"
    run_dir.mkdir(parents=True)
    ref.parent.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    ref.write_text(json.dumps({"bpb": {"en": 0.96}}))
    (ref.parent / "eval_tasks.json").write_text(json.dumps({"tasks": {"arc_easy_en": {"n": 1}}}))
    monkeypatch.setattr(runners, "backbone_reference", lambda run: ref)
    run = type("R", (), {"run_dir": run_dir, "name": "r"})()
    out = runners.archive_run(run, tmp_path / "arch")
    assert json.loads((out / "base_eval_tasks.json").read_text())["tasks"]["arc_easy_en"]["n"] == 1
    other = tmp_path / "arch2" / "r"
    other.mkdir(parents=True)
    (other / "base_eval.json").write_text(json.dumps({"bpb": {"en": 0.95}}))  # archived from another base
    runners.archive_run(run, tmp_path / "arch2")
    assert not (other / "base_eval_tasks.json").exists()

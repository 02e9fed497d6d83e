"""Every user error of the CLIs is one `error:` line, exit status 2, no traceback, before work is spent;
--debug or NRL_DEBUG=1 shows the traceback. The entry points run in-process through runpy (as `python -m`)."""

from __future__ import annotations

import runpy
import sys
import time

import pytest


def _run(module: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    err = capsys.readouterr().err
    return e.value.code, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_train_empty_backbone_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    code, err = _run("nr_lightning.train", [f"backbone.name={tmp_path / 'empty'}", f"run_dir={tmp_path / 'run'}"],
                     monkeypatch, capsys)
    assert code == 2 and "has no config.json" in _one_error_line(err)
    assert not (tmp_path / "run").exists()  # checked before the run directory is made


def test_train_unknown_hub_name_offline_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    code, err = _run("nr_lightning.train", ["backbone.name=gpt9", f"run_dir={tmp_path / 'run'}"], monkeypatch, capsys)
    line = _one_error_line(err)
    assert code == 2 and "hub is unreachable" in line and "backbone.name=/path/to/model" in line
    assert time.perf_counter() - t0 < 10  # no retries against an unreachable hub


def test_debug_flag_and_env_show_the_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    args = [f"backbone.name={tmp_path / 'empty'}", f"run_dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["nr_lightning.train", *args, "--debug"])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        runpy.run_module("nr_lightning.train", run_name="__main__", alter_sys=True)
    monkeypatch.setenv("NRL_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["nr_lightning.train", *args])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        runpy.run_module("nr_lightning.train", run_name="__main__", alter_sys=True)


def test_evaluate_unknown_task_fails_before_any_evaluation(monkeypatch, capsys):
    import nr_lightning.evaluation as evaluation

    def no_work(*a, **k):
        raise AssertionError("bits_per_byte ran before the task names were checked")

    monkeypatch.setattr(evaluation, "bits_per_byte", no_work)
    code, err = _run("nr_lightning.evaluate", ["backbone=tiny", "tasks=[no_such_task]"], monkeypatch, capsys)
    line = _one_error_line(err)
    assert code == 2 and "unknown task 'no_such_task'" in line and "arc_challenge_fr" in line


@pytest.mark.parametrize("module, argv, match", [
    ("nr_lightning.sequence", ["strategy=nope"], "unknown strategy 'nope'"),
    ("nr_lightning.sweep", ["no_such_sweep"], "no_such_sweep"),
    ("nr_lightning.report", ["/nonexistent/run"], "no run with metrics.json"),
    ("data_prep", ["input=/nonexistent/*.warc.gz", "lang=fr", "output=/tmp/x"], "matches no file"),
])
def test_other_clis_one_error_line(module, argv, match, monkeypatch, capsys):
    code, err = _run(module, argv, monkeypatch, capsys)
    assert code == 2 and match in _one_error_line(err)

"""Fault injection for what a real cluster does to a run: termination signals, a second writer, resumes that
change the run, stale caches, damaged or diverged weights, bad numbers and YAML files, a full disk.
Each guarantee is a row of docs/reliability.md."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L
import pytest

from nr_lightning.config import ConfigError


class _SignalAt(L.Callback):
    """Sends ``signum`` to this process after optimizer step ``step`` (what scancel or Ctrl+C does)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_checkpoint_and_resume_like_sigusr1(tmp_path, fixtures_dir, h, signum, caplog,
                                                              monkeypatch):
    import torch

    from nr_lightning.train import main

    # a test process started in the background (`pytest &` in a script) inherits SIGINT ignored, which the run
    # rightly keeps ignored (test below): give this test an interactive process's default handler
    monkeypatch.setattr(signal, "getsignal", _interactive_sigint(signal.getsignal))
    run = tmp_path / "run"
    args = h.run_args(run, fixtures_dir, 3, "trainer.checkpoint_every_n_steps=100")
    with caplog.at_level(logging.INFO):
        result = main(args, extra_callbacks=lambda cbs: [_SignalAt(1, signum)])
    assert result["preempted"] and result["signal"] == signal.Signals(signum).name
    assert result["global_step"] == 2  # checkpointed at the next step boundary, not killed
    ckpt = run / "checkpoints" / "preempt-step000002.ckpt"
    assert "optimizer_states" in torch.load(ckpt, map_location="cpu", weights_only=True)  # full state
    assert "weights_only` was not set" not in caplog.text  # Lightning's line that reads like an unsafe load
    assert not (run / "metrics.json").exists()
    assert main([*args, "ckpt_path=last"])["global_step"] == 3
    assert sorted(set(_steps(run))) == [1, 2, 3]


def _interactive_sigint(getsignal):
    """`signal.getsignal` as an interactive shell's child sees it: SIGINT not ignored."""
    def patched(signum):
        h = getsignal(signum)
        return signal.default_int_handler if signum == signal.SIGINT and h is signal.SIG_IGN else h
    return patched


def test_a_sigint_ignored_by_the_parent_stays_ignored() -> None:
    """`cmd &` in a script starts cmd with SIGINT ignored; the run keeps it so (only SIGTERM/SIGUSR1 preempt)."""
    from nr_lightning.training import preemption

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        previous = preemption.install_preemption_handler()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.SIGINT not in previous
        assert signal.getsignal(signal.SIGTERM) is preemption._on_signal
        preemption.install_preemption_handler(restore=previous)
    finally:
        signal.signal(signal.SIGINT, before)


def test_sweep_records_a_terminated_run_as_interrupted_then_resumes_it(tmp_path, fixtures_dir, h, monkeypatch):
    """SIGTERM to the sweep reaches its training subprocess once: checkpoint, status 3, row `interrupted`;
    the next sweep resumes the run from that checkpoint."""
    from nr_lightning.sweeps import runners, spec

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base: [method=neutral, lang=fr, backbone=tiny]\nscales:\n  cpu: []\nname: tiny\n")
    extra = [a for a in h.run_args(tmp_path, fixtures_dir, 4) if not a.startswith("run_dir=")]
    runs = spec.expand(spec.load_sweep(sweep), "cpu", [*extra, f"runs_root={tmp_path / 'runs'}"])
    run_dir = runs[0].run_dir
    for k, v in h.cli_env(NRL_TEST_STEP_DELAY="0.3").items():
        monkeypatch.setenv(k, v)

    def terminate_after_two_steps() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            losses = run_dir / "losses.jsonl"
            if losses.is_file() and losses.read_text().count("\n") >= 2:  # two complete lines
                os.kill(os.getpid(), signal.SIGTERM)  # to the sweep, which forwards it
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=terminate_after_two_steps, daemon=True)
    watcher.start()
    rows = runners.run_local(runs, in_process=False)
    watcher.join(timeout=5)
    assert [r["status"] for r in rows] == ["interrupted"]
    assert list((run_dir / "checkpoints").glob("preempt-step*.ckpt")) and not (run_dir / "metrics.json").exists()
    assert runs[0].state() == "resume"
    monkeypatch.delenv("NRL_TEST_STEP_DELAY")
    rows = runners.run_local(runs, in_process=True)
    assert [r["status"] for r in rows] == ["resumed"]
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 4


def test_one_writer_per_run_directory(tmp_path, fixtures_dir, h):
    from nr_lightning.training.integrity import RunDirLock
    from nr_lightning.training.train import earlier_outputs, main

    run = tmp_path / "run"
    run.mkdir()
    held = RunDirLock(run).acquire()
    try:
        with pytest.raises(ConfigError, match=rf"{run} is in use by another run \(pid {os.getpid()} on "):
            main(h.run_args(run, fixtures_dir, 2))
    finally:
        held.release()
    assert earlier_outputs(run) == []
    # a holder killed with SIGKILL leaves its lock file behind, never the lock
    # (the holder takes the lock as RunDirLock does, without importing the package: a fast process)
    code = ("import fcntl, os, signal, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.write(fd, b'pid 1 on elsewhere'); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(run / ".nrl.lock")], timeout=60)
    assert proc.returncode == -signal.SIGKILL and "pid 1" in (run / ".nrl.lock").read_text()
    RunDirLock(run).acquire().release()
    # a run that fails after taking the lock releases it too
    with pytest.raises(ConfigError, match="GiB free under"):
        main([*h.run_args(run, fixtures_dir, 2), "trainer.min_free_gb=1e9"])
    RunDirLock(run).acquire().release()


def test_gate_history_survives_resume(tmp_path, fixtures_dir, h):
    from nr_lightning.train import main

    run = tmp_path / "run"
    extra = ["eval.gate_stats=true", "eval.every_n_steps=1", "eval.max_length=64", "trainer.checkpoint_every_n_steps=1"]
    main(h.run_args(run, fixtures_dir, 2, *extra))
    assert [g["step"] for g in json.loads((run / "gates.json").read_text())] == [0, 1, 2]
    main([*h.run_args(run, fixtures_dir, 3, *extra), "ckpt_path=last"])
    assert [g["step"] for g in json.loads((run / "gates.json").read_text())] == [0, 1, 2, 3]


def test_resume_that_changes_the_run_is_refused_before_anything_is_written(tmp_path, fixtures_dir, h):
    from nr_lightning.train import main

    fr = tmp_path / "fr.jsonl"
    shutil.copy(fixtures_dir / "text" / "sentences_fr_dev.jsonl", fr)
    run = tmp_path / "run"
    args = [*h.run_args(run, fixtures_dir, 2, "trainer.checkpoint_every_n_steps=2"), f"data.new.path={fr}"]
    main(args)
    before = {p: (run / p).read_bytes() for p in ("config.yaml", "plan.txt", "metrics.json", "losses.jsonl")}
    for change, message in [
        ("method.lr=0.02", "changes method.lr from 0.03 to 0.02"),
        ("data.p=0.3", "changes data.p from 0.5 to 0.3"),
        ("method.budget=0.4", "changes method.budget from 0.2 to 0.4"),
        ("seed=1", "changes seed from 0 to 1"),
        ("trainer.max_steps=1", "trainer.max_steps=1 is below the checkpoint's step 2"),
    ]:
        with pytest.raises(ConfigError, match=rf"cannot resume this run: .*{message}"):
            main([*args, change, "ckpt_path=last"])
    fr.write_text(fr.read_text() + '{"text": "Une phrase de plus."}\n')  # same path, other content
    with pytest.raises(ConfigError, match=r"training data of fr changed: content key \[.\w+.\] in the checkpoint"):
        main([*args, "trainer.max_steps=3", "ckpt_path=last"])
    assert before == {p: (run / p).read_bytes() for p in before}
    shutil.copy(fixtures_dir / "text" / "sentences_fr_dev.jsonl", fr)
    # keys documented as safe may change (evaluation frequency; a constant-lr run may be extended)
    assert main([*args, "trainer.max_steps=3", "eval.every_n_steps=1", "ckpt_path=last"])["global_step"] == 3


def test_baseline_cache_key_follows_the_content_of_the_files_it_reads(tmp_path, fixtures_dir, h):
    from nr_lightning.config import compose
    from nr_lightning.evaluation.baseline import baseline_file
    from nr_lightning.evaluation.evaluate import EvalRun

    en = tmp_path / "en_heldout.jsonl"
    shutil.copy(fixtures_dir / "text" / "pubmed_en_dev.jsonl", en)
    run_cfg = compose([*h.run_args(tmp_path / "run", fixtures_dir, 2), f"data.heldout_en={en}"])
    ev = EvalRun(run=str(tmp_path / "run"), tasks=["arc_easy_fr"], max_docs=4)
    key = baseline_file(ev, run_cfg)
    assert baseline_file(ev, run_cfg) == key
    en.write_text(en.read_text().replace("the", "a", 1))
    assert baseline_file(ev, run_cfg) != key


def _run_cli(main, argv: list[str], capsys) -> tuple[int, list[str]]:
    from nr_lightning.errors import run_cli

    with pytest.raises(SystemExit) as e:
        run_cli(main, argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return e.value.code, [line for line in err.splitlines() if line.startswith("error:")]


def test_damaged_or_non_finite_weights_are_one_error_line(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from helpers import fake_run
    from nr_lightning.evaluation.cli import main as evaluate_main
    from nr_lightning.evaluation.report import main as report_main
    from nr_lightning.extension.export import export, load_exported
    from nr_lightning.extension.export import main as export_main
    from nr_lightning.io import CHECKSUMS_FILE, file_sha256

    run = fake_run(tmp_path)
    ext = run / "extension"
    out = tmp_path / "export"
    export(run, out, "extension")
    assert subprocess.run(["sha256sum", "-c", CHECKSUMS_FILE], cwd=out, capture_output=True).returncode == 0
    code, errors = _run_cli(export_main, [f"run={run}", f"out={run / 'config.yaml'}"], capsys)
    assert code == 2 and errors == [f"error: out={run / 'config.yaml'} is a file: out= names the directory to create "
                                    f"(nothing was overwritten)"]
    good = (ext / "extension.safetensors").read_bytes()
    (run / "metrics.json").write_text(json.dumps({"config": {"method": {"name": "neutral"}}, "final_bpb": {"fr": 1}}))

    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    (ext / "extension.safetensors").write_bytes(bytes(raw))
    code, errors = _run_cli(evaluate_main, [f"run={run}", "tasks=[]", "max_docs=0", "baseline=false"], capsys)
    assert code == 2 and len(errors) == 1 and "does not match the SHA-256 recorded" in errors[0]
    code, errors = _run_cli(export_main, [f"run={run}", f"out={tmp_path / 'x'}"], capsys)
    assert code == 2 and len(errors) == 1 and "does not match the SHA-256" in errors[0]
    code, errors = _run_cli(report_main, [str(run), "--out", str(tmp_path / "rep")], capsys)
    assert code == 2 and len(errors) == 1 and "does not match the SHA-256" in errors[0]

    tensors = load_file(str(out / "extension.safetensors"))
    name = next(iter(tensors))
    tensors[name].view(-1)[0] = float("nan")  # a diverged run's weights, saved with a correct checksum
    save_file(tensors, str(ext / "extension.safetensors"))
    meta = json.loads((ext / "extension.json").read_text())
    (ext / "extension.json").write_text(json.dumps({**meta, "weights_sha256": file_sha256(ext / "extension.safetensors")}))
    code, errors = _run_cli(evaluate_main, [f"run={run}", "tasks=[]", "max_docs=0", "baseline=false"], capsys)
    assert code == 2 and len(errors) == 1 and f"weight {name} holds NaN or inf" in errors[0]

    (ext / "extension.safetensors").write_bytes(good[:100])  # cut short (no checksum recorded: an older run)
    (ext / "extension.json").write_text(json.dumps(meta | {"weights_sha256": None}))
    code, errors = _run_cli(evaluate_main, [f"run={run}", "tasks=[]", "max_docs=0", "baseline=false"], capsys)
    assert code == 2 and len(errors) == 1 and "is not a readable safetensors file" in errors[0]

    (run / "metrics.json").write_text('{"config": {"meth')  # cut short
    code, errors = _run_cli(report_main, [str(run), "--out", str(tmp_path / "rep")], capsys)
    assert code == 2 and len(errors) == 1 and f"{run / 'metrics.json'} is unreadable" in errors[0]

    (out / "extension.safetensors").write_bytes(bytes(raw))  # the export's copy, damaged
    assert subprocess.run(["sha256sum", "-c", CHECKSUMS_FILE], cwd=out, capture_output=True).returncode != 0
    with pytest.raises(ValueError, match="does not match its SHA-256 in .*SHA256SUMS"):
        load_exported(out)


@pytest.mark.parametrize("arg", ["optim.warmup_steps=-5", "eval.every_n_steps=-2", "method.budget=5",
                                 "trainer.checkpoint_every_n_steps=-3", "optim.beta2=1.5", "data.batch_size=0"])
def test_out_of_range_numbers_are_refused_before_anything_loads(arg):
    from nr_lightning.config import compose

    with pytest.raises(ConfigError, match=rf"bad value {arg.split('=')[0]}={arg.split('=')[1]}"):
        compose([arg])


@pytest.mark.parametrize("arg", ["max_docs=-1", "limit=-3", "threads=-2", "batch_size=0"])
def test_evaluate_numbers_are_checked(arg):
    from nr_lightning.evaluation.cli import parse

    with pytest.raises(ConfigError, match=rf"bad value {arg.split('=')[0]}={arg.split('=')[1]}: must be >="):
        parse(["backbone=tiny", arg])


def test_sequence_and_sweep_numbers_are_checked():
    from nr_lightning.continual.sequence import parse_args
    from nr_lightning.sweeps.spec import SweepError
    from nr_lightning.sweeps.sweep import main as sweep_main

    for arg in ("merge_density=2", "router_steps=0", "olora_lambda=-1"):
        with pytest.raises(ConfigError, match=rf"bad value {arg}(\.0)?: must be"):
            parse_args([arg])
    with pytest.raises(SweepError, match="bad value --max-parallel=0"):
        sweep_main(["table7_alpha", "--slurm", "--max-parallel", "0", "--dry-run"])


def test_user_yaml_files_fail_with_one_line_naming_the_file(tmp_path, monkeypatch):
    from nr_lightning import config
    from nr_lightning.evaluation.evaluate import EvalRun, check_args
    from nr_lightning.sweeps import spec

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("base: [method=neutral\nscales: {cpu: []}\n")
    with pytest.raises(spec.SweepError, match=rf"{sweep}: not valid YAML"):
        spec.load_sweep(sweep)
    sweep.write_text("- a\n- b\n")
    with pytest.raises(spec.SweepError, match=rf"{sweep}: expected a mapping at the top level, got a list"):
        spec.load_sweep(sweep)
    sweep.write_text("base: [backbone=tiny]\ngrid: {method.alpha: [0, 0.01]}\nexclude: [{method.alpah: 0}]\n"
                     "scales: {cpu: []}\nname: t{method.alpha}\n")
    with pytest.raises(spec.SweepError, match=r"exclude names 'method.alpah', which no run has"):
        spec.expand(spec.load_sweep(sweep), "cpu", [f"runs_root={tmp_path}"])

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "broken.yaml").write_text("method: {name: neutral\n")
    (tmp_path / "experiment" / "listed.yaml").write_text("- method=neutral\n")
    (tmp_path / "experiment" / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    monkeypatch.setattr(config, "EXPERIMENTS", tmp_path)
    for name, what in (("broken", "not valid YAML"), ("listed", "expected a mapping"), ("binary", "not valid YAML")):
        with pytest.raises(ConfigError, match=rf"{tmp_path / 'experiment' / name}.yaml: {what}"):
            config.compose([f"experiment={name}"])

    task = tmp_path / "my_task_fr.jsonl"
    task.write_text('{"question": "q", "choices": ["a", "b"], "label": 0}\n{"question": "q", "choic\n')
    with pytest.raises(ValueError, match=rf"{task}:2: corrupt JSON line"):
        check_args(EvalRun(backbone="tiny", tasks=[str(task)]))


def test_disk_full_while_checkpointing_is_one_line_exit_1(tmp_path, fixtures_dir, h, monkeypatch, capsys):
    from nr_lightning.training import train
    from nr_lightning.training.checkpointing import AtomicCheckpointIO, checkpoint_problem

    original, calls = AtomicCheckpointIO.save_checkpoint, []

    def save(self, checkpoint, path, storage_options=None):
        calls.append(path)
        if len(calls) > 2:  # step 2's two files fit, step 4's do not
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save)
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["train", *h.run_args(run, fixtures_dir, 4, "trainer.checkpoint_every_n_steps=2")])
    with pytest.raises(SystemExit) as e:
        train.cli()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 1 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert "no space left on the device while writing" in errors[0] and "is kept" in errors[0]
    assert checkpoint_problem(run / "checkpoints" / "step000002.ckpt", deep=True) is None
    assert _steps(run) == [1, 2, 3, 4]  # the loss history is kept


class _Diverge(L.Callback):
    """Turns every trainable weight into NaN just before optimizer step ``step`` (what an lr far too high does,
    without waiting for it): the gate statistics of that step then see NaN gates."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        import torch

        if trainer.global_step + 1 == self.step:
            with torch.no_grad():
                for p in pl_module.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))


def test_diverged_run_with_nan_policy_skip_stops_with_one_line(tmp_path, fixtures_dir, h, monkeypatch, capsys):
    from nr_lightning.training import train

    run = tmp_path / "run"
    args = h.run_args(run, fixtures_dir, 6, "trainer.nan_policy=skip", "eval.gate_stats=true", "eval.every_n_steps=1",
                      "eval.max_length=64", "trainer.checkpoint_every_n_steps=1")
    monkeypatch.setattr(sys, "argv", ["train", *args])
    real_main = train.main
    monkeypatch.setattr(train, "main", lambda argv: real_main(argv, extra_callbacks=lambda cbs: [_Diverge(2)]))
    with pytest.raises(SystemExit) as e:
        train.cli()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert e.value.code == 1 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert "non-finite loss nan at step 2" in errors[0] and "the run diverged" in errors[0]
    assert [g["step"] for g in json.loads((run / "gates.json").read_text())] == [0, 1, 2]  # histories kept
    assert _steps(run) == [1, 2]
    assert (run / "checkpoints" / "step000001.ckpt").is_file()
    with pytest.raises(ConfigError, match=r"\.ckpt holds non-finite weights .* resume from an earlier checkpoint"):
        real_main([*args, "ckpt_path=last"])  # the newest checkpoint was written after the weights diverged
    assert real_main([*args, f"ckpt_path={run / 'checkpoints' / 'step000001.ckpt'}", "trainer.max_steps=2",
                      "trainer.nan_policy=stop"])["global_step"] == 2

"""Train one extension run: `python -m nr_lightning.train method=neutral lang=fr trainer.max_steps=50`.

Reads top to bottom: compose + validate the config (fails before anything loads), prepare the run
directory, load the backbone and extend it, build the mixed-language data, then fit with
checkpoints, TensorBoard curves and a final `save_extension`.

*Run summary*: the banner printed at start (:func:`banner`) and written to ``<run dir>/plan.txt`` (that file
keeps its name: archived runs and tools read it). ``trainer.dry_run=true`` prints the memory plan instead.
"""

from __future__ import annotations

if __name__ == "__main__":  # first thing: a requeue signal during the imports below must not end the job
    from nr_lightning.training.preemption import install_preemption_handler as _install_early

    _install_early()

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..config import ConfigError, RunConfig, compose, to_dict, to_yaml
from ..io import write_json_atomic
from ..registry import method_class

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _slurm_run_id() -> str | None:
    """SLURM's job id (``<array>_<task>`` in arrays): the same in every rank and across requeues."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def run_dir_for(cfg: RunConfig) -> Path:
    """The run directory. Unnamed runs get ``<method>-<lang>-<SLURM job id>`` under SLURM (stable across
    requeues, identical on every rank), else a timestamp; ranks started by Lightning's launcher inherit
    rank 0's choice through NRL_RUN_DIR."""
    if cfg.run_dir:
        return Path(cfg.run_dir).expanduser()
    if not cfg.name and os.environ.get("NRL_RUN_DIR"):
        return Path(os.environ["NRL_RUN_DIR"])
    stamp = _slurm_run_id() or time.strftime('%Y%m%d-%H%M%S')
    name = cfg.name or f"{cfg.method.name}-{cfg.lang}-{stamp}"
    return Path(cfg.runs_root).expanduser() / name


def _env_rank_zero() -> bool:
    """Rank 0 before the Trainer exists (torchrun RANK, srun SLURM_PROCID, Lightning's LOCAL_RANK/NODE_RANK)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return False
    return True


# What a run writes into its directory (plus eval.json from nr_lightning.evaluate): any of them means the
# directory belongs to an earlier run, whose results a fresh start would overwrite or append to.
OUTPUTS = ("config.yaml", "plan.txt", "metrics.json", "curves.json", "losses.jsonl", "eval.json", "checkpoints",
           "extension", "tb", "csv", "wandb")


def earlier_outputs(path: Path) -> list[str]:
    """Names of an earlier run's outputs in ``path`` (empty folders do not count)."""
    if not path.is_dir():
        return []
    found = [n for n in OUTPUTS if (path / n).is_file() or (path / n).is_dir() and any((path / n).iterdir())]
    return found + sorted(p.name for p in path.glob("hpc_ckpt_*.ckpt"))


def clear_outputs(path: Path) -> None:
    """Remove an earlier run's outputs (``overwrite=true``), once every check of the new run has passed."""
    for name in [*OUTPUTS, *(p.name for p in path.glob("hpc_ckpt_*.ckpt"))]:
        p = path / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def prepare_run_dir(path: Path, resuming: bool, min_free_gb: float = 1.0, overwrite: bool = False) -> None:
    """Create the run directory; refuse unwritable or nearly full disks, and a directory holding an earlier
    run's outputs unless resuming or ``overwrite``, before any training starts (nothing is written here)."""
    found = earlier_outputs(path) if _env_rank_zero() else []  # launched ranks follow rank 0, which checked
    if found and not resuming and not overwrite:
        raise ConfigError(f"{path} already holds an earlier run's outputs ({', '.join(found)}): resume it with "
                          f"ckpt_path=last, replace them with overwrite=true, or choose another name=... "
                          f"(nothing was changed)")
    if overwrite and resuming:
        raise ConfigError("overwrite=true starts afresh and ckpt_path resumes: give one of them")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test-{socket.gethostname()}-{os.getpid()}"  # per process: ranks probe concurrently
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {path} is not writable ({e.strerror}); set run_dir=PATH or runs_root=PATH "
                          f"to a writable location") from None
    free = shutil.disk_usage(path).free / 2**30
    if free < min_free_gb:
        raise ConfigError(f"only {free:.2f} GiB free under {path}: checkpoints need at least {min_free_gb} GiB; "
                          f"free space or set runs_root=PATH elsewhere")


def banner(cfg: RunConfig, report: dict, dm_info: dict, run_dir: Path) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"nr-lightning: {cfg.method.name} → {cfg.lang}", show_header=False)
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.trainer.accumulate_grad_batches
    rows = [
        ("backbone", f"{cfg.backbone.name} ({report['backbone_total']:,} params, "
                     f"{report['backbone_non_embedding']:,} non-embedding)"),
        ("method", f"{cfg.method.name}  gate={report['gate']} init={report['init']} width={report['width']} "
                   f"rank={report['rank']}"),
        ("trainable", f"{report['trainable']:,} = {report['budget']:.2%} of non-embedding "
                      f"(requested {cfg.method.budget:.0%})" if not method_class(cfg.method.name).trains_backbone else
         f"{report['trainable']:,} (all)"),
        ("losses", f"CE + {cfg.method.alpha}·sparsity + {cfg.method.beta}·gate_bce"),
        ("optimizer", f"AdamW lr={cfg.method.lr * cfg.optim.lr_multiplier:g} (method.lr {cfg.method.lr:g} × "
                      f"optim.lr_multiplier {cfg.optim.lr_multiplier:g}) β=({cfg.optim.beta1}, {cfg.optim.beta2}) wd={cfg.optim.weight_decay} "
                      f"{cfg.optim.schedule} warm-up {cfg.optim.warmup_steps}"),
        ("data", f"learn={dm_info.get('learn')} retain={dm_info.get('retain')} p(English)={cfg.data.p}"),
        ("steps", f"{cfg.trainer.max_steps} × {tokens_per_step:,} tokens = "
                  f"{cfg.trainer.max_steps * tokens_per_step:,} tokens (per device)"),
        ("precision", f"{cfg.trainer.precision} on {cfg.trainer.accelerator}"),
        ("run dir", str(run_dir)),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console = Console(file=sys.stderr)
    console.print(t)
    return "\n".join(f"{k}: {v}" for k, v in rows)


def build(cfg: RunConfig):
    """Backbone + extension + data module, as the run will use them."""
    import torch

    from ..backbone import load_backbone
    from ..data import MixedLanguageDataModule
    from ..extension import extend_like

    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    backbone, tokenizer = load_backbone(cfg.backbone.name, dtype=getattr(torch, DTYPES[cfg.backbone.dtype]),
                                        seed=cfg.seed, trust_remote_code=cfg.backbone.trust_remote_code)
    model = extend_like(backbone, cfg.method)
    dm = MixedLanguageDataModule(cfg.data, tokenizer)
    return model, tokenizer, dm


def check_checkpoint_fits(ckpt_path: Path, module) -> None:
    """Refuse a checkpoint of another method/budget/backbone before any work (memory-mapped: cheap)."""
    import pickle

    import torch

    from ..extension import nonfinite_weight

    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(f"ckpt_path={ckpt_path} holds objects that are not plain weights "
                          f"({str(e).strip().splitlines()[0] if str(e).strip() else 'unpickling refused'}); it was "
                          f"not written by nr_lightning.train or is damaged: pass another ckpt_path=PATH") from None
    problem = module.checkpoint_mismatch(ckpt)
    bad = nonfinite_weight(ckpt.get("state_dict") or {})
    if bad is not None:  # written after the run diverged: resuming it would only skip or stop again
        raise ConfigError(f"ckpt_path={ckpt_path} holds non-finite weights ({bad}): the run had diverged when it "
                          f"was written; resume from an earlier checkpoint with ckpt_path=PATH")
    if problem:
        raise ConfigError(f"ckpt_path={ckpt_path} cannot resume this run: {problem}; resume with the run's own "
                          f"settings (its config.yaml) or start a new run with another name=...")


default_build = build  # `main(build=None)`: the parameter shadows the function's name inside main


def main(argv: list[str] | None = None, *, build: Callable[[RunConfig], tuple] | None = None,
         extra_callbacks: Callable[[list], list] | None = None) -> dict:
    """Train one run. ``build(cfg) -> (model, tokenizer, datamodule)`` replaces the default `build` (the
    sequence runner passes one that stacks, merges or routes earlier stages); the rest of the run is the same.
    ``extra_callbacks(callbacks) -> list`` adds callbacks that see the run's own (the English-base builder's
    early stop reads the ForgettingCurves history)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        from ..cli_help import key_table

        print(__doc__)
        print("Config groups: method=, lang=, backbone=, trainer=, experiment= (files in experiments/<group>/).")
        print("Every field of nr_lightning/config.py:RunConfig can be set as a dotted key, e.g. data.p=0.5.")
        print("--print-config prints the resolved config (YAML, what config.yaml would hold) and exits.")
        print("User errors print one `error:` line (exit 2); --debug or NRL_DEBUG=1 shows the traceback.")
        print("\nKeys (key=default with experiments/config.yaml, method=neutral lang=fr; doc):")
        print(key_table(RunConfig, to_dict(compose([]))))
        return {}
    if "--print-config" in argv:  # the resolved config, nothing loaded or written
        cfg = compose([a for a in argv if a != "--print-config"])
        print(to_yaml(cfg), end="")
        return {"config": to_dict(cfg)}
    from .preemption import install_preemption_handler

    previous_usr1 = install_preemption_handler()  # early: a SLURM --signal during model loading must not kill us
    try:
        cfg = compose(argv)
        from .progress import quiet_third_party

        quiet_third_party()
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if cfg.trainer.dry_run:  # the memory plan, on the meta device: no run directory, no weights, no data
            from ..scale.plan import dry_run

            return dry_run(cfg)
        return _train(cfg, build or default_build, extra_callbacks)
    finally:
        install_preemption_handler(restore=previous_usr1)


def _train(cfg: RunConfig, build: Callable[[RunConfig], tuple], extra_callbacks=None) -> dict:
    """One run, in the order it happens; each step is a helper below. Nothing is written into the run
    directory before every check (backbone, data, checkpoint, held-out texts) has passed (docs/reliability.md)."""
    from ..backbone import check_backbone

    check_backbone(cfg.backbone.name)  # an empty directory or an unreachable hub id: before any other work
    run_dir = run_dir_for(cfg)
    lock = _lock_run_dir(run_dir) if _env_rank_zero() else None  # one writer per run directory
    try:
        return _train_locked(cfg, build, extra_callbacks, run_dir)
    finally:
        if lock is not None:
            lock.release()


def _lock_run_dir(run_dir: Path):
    """Take the run directory's lock (docs/reliability.md); an unwritable place is left to prepare_run_dir."""
    from .integrity import RunDirLock

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    try:
        return RunDirLock(run_dir).acquire()
    except PermissionError:
        return None


class RunStopped(RuntimeError):
    """The run cannot go on (disk full, diverged weights); its last good checkpoint and histories are kept."""


def _train_locked(cfg: RunConfig, build: Callable[[RunConfig], tuple], extra_callbacks, run_dir: Path) -> dict:
    from .checkpointing import Preempted, checkpoint_candidates, resolve_checkpoint

    _prepare(cfg, run_dir)  # accumulation, precision, run directory: all fail before anything loads
    rank_zero = _env_rank_zero()
    if cfg.ckpt_path == "last" and rank_zero and not checkpoint_candidates(run_dir) \
            and {"metrics.json", "extension"} & set(earlier_outputs(run_dir)):
        raise ConfigError(f"ckpt_path=last: {run_dir} holds a finished run (metrics.json / extension/) and no "
                          f"checkpoint to resume from; choose another name=... or replace it with overwrite=true")
    ckpt_path = resolve_checkpoint(run_dir, cfg.ckpt_path)  # "last" = the newest *valid* checkpoint
    saved_identity, ckpt_step = _saved_identity(ckpt_path) if ckpt_path is not None else (None, None)
    if ckpt_path is not None:  # the config part: before the model loads
        _check_same_run(ckpt_path, saved_identity, run_identity_of(cfg), ckpt_step)
    import lightning as L

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, dm, tokenizer, run_summary = _build_module(cfg, build, run_dir, ckpt_path)
    module.run_identity = run_identity_of(cfg, dm)  # recorded in every checkpoint (ExtensionModule.on_save_checkpoint)
    if saved_identity is not None:  # the data part: hashes of the training files, once the data module exists
        _check_same_run(ckpt_path, saved_identity, module.run_identity, ckpt_step)
    callbacks = _callbacks(cfg, run_dir, dm, tokenizer, resuming=ckpt_path is not None)
    if rank_zero:  # every check passed: only now touch the run directory
        if cfg.overwrite:
            clear_outputs(run_dir)
        (run_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
        (run_dir / "plan.txt").write_text(run_summary + "\n", encoding="utf-8")  # the run summary; the file name stays (archived runs)
    extra = list(extra_callbacks(callbacks)) if extra_callbacks else []
    callbacks += extra
    trainer = _trainer(cfg, module.model, run_dir, callbacks)
    if cfg.trainer.compile:
        module.compile_model()
    inherit = not cfg.run_dir and not cfg.name and "NRL_RUN_DIR" not in os.environ
    if inherit:  # ranks that Lightning's launcher starts re-run this CLI: give them the same run directory
        os.environ["NRL_RUN_DIR"] = str(run_dir)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except Preempted as e:
        return {"run_dir": str(run_dir), "preempted": True, "checkpoint": str(e.path), "global_step": e.step,
                "requeued": e.requeued, "signal": e.signal}
    except SIGTERMException:  # Lightning's exit (status 0) for a SIGTERM that bypassed ours: never a success
        last = checkpoint_candidates(run_dir)
        return {"run_dir": str(run_dir), "preempted": True, "checkpoint": str(last[0]) if last else None,
                "global_step": trainer.global_step, "requeued": None, "signal": "SIGTERM"}
    except OSError as e:
        _stop_on_write_error(e, run_dir)
        raise
    finally:
        if inherit:
            os.environ.pop("NRL_RUN_DIR", None)
        from .dashboard import close_loggers

        close_loggers(trainer.loggers)
    try:
        return {**_finish(cfg, run_dir, module, trainer, callbacks, ckpt_path), "extra_callbacks": extra}
    except OSError as e:
        _stop_on_write_error(e, run_dir)
        raise


def _stop_on_write_error(e: OSError, run_dir: Path) -> None:
    """Disk full / quota: RunStopped naming the file and the last good checkpoint (the atomic writers leave the
    previous files intact); other OSErrors propagate."""
    import errno

    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return
    from .checkpointing import checkpoint_candidates

    last = checkpoint_candidates(run_dir)
    kept = f"the last good checkpoint {last[0]} is kept" if last else "no checkpoint had been written yet"
    raise RunStopped(f"no space left on the device while writing {e.filename or run_dir} ({e.strerror}); {kept}, "
                     f"as are losses.jsonl and curves.json: free space, then resume with ckpt_path=last") from None


def run_identity_of(cfg: RunConfig, dm=None) -> dict:
    """The run's identity (training/integrity.py); with ``dm``, the SHA-256 of its training files too."""
    from .integrity import data_files, run_identity

    data = None
    if dm is not None and hasattr(dm, "train_source") and hasattr(dm, "languages"):
        data = data_files(dm)
    return run_identity(cfg, data)


def _saved_identity(ckpt_path: Path) -> tuple[dict | None, int | None]:
    """(the identity recorded in the checkpoint, its global step); (None, step) for checkpoints that predate it."""
    import torch

    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable files are reported by check_checkpoint_fits with their reason
        return None, None
    return (ckpt.get("nrl") or {}).get("identity"), ckpt.get("global_step")


def _check_same_run(ckpt_path: Path, saved: dict | None, now: dict, ckpt_step: int | None) -> None:
    from .integrity import identity_mismatch

    problem = identity_mismatch(saved, now, ckpt_step)
    if problem:
        raise ConfigError(f"ckpt_path={ckpt_path} cannot resume this run: {problem}. A resume must be the same run "
                          f"(keys that may change: docs/reliability.md); drop the change, or start a new run with "
                          f"another name=... (nothing was written)")


def _prepare(cfg: RunConfig, run_dir: Path | None = None) -> Path:
    """Resolve accumulation and precision, create and check the run directory."""
    from ..scale.plan import solve_accumulation
    from .precision import resolve_precision

    solve_accumulation(cfg)  # trainer.global_batch_tokens -> accumulate_grad_batches (fails before loading)
    cfg.trainer.precision, why = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    print(f"[nr-lightning] precision {cfg.trainer.precision} ({why})", file=sys.stderr)
    run_dir = run_dir or run_dir_for(cfg)
    prepare_run_dir(run_dir, cfg.ckpt_path is not None, min_free_gb=cfg.trainer.min_free_gb, overwrite=cfg.overwrite)
    return run_dir


def _build_module(cfg: RunConfig, build: Callable[[RunConfig], tuple], run_dir: Path, ckpt_path: Path | None):
    """(LightningModule, DataModule, tokenizer, run summary): every training record and the checkpoint to resume
    are checked; the run summary is printed (written to plan.txt by the caller once every check has passed)."""
    from ..scale.plan import enable_activation_checkpointing
    from .module import ExtensionModule

    model, tokenizer, dm = build(cfg)
    dm.setup("fit")  # every record of every training file, before training starts
    enable_activation_checkpointing(model, cfg)
    module = ExtensionModule(model, cfg, languages=dm.languages)
    if ckpt_path is not None:
        check_checkpoint_fits(ckpt_path, module)
    info = dm.describe() if hasattr(dm, "describe") else {}
    return module, dm, tokenizer, banner(cfg, module.report, info, run_dir)


def _callbacks(cfg: RunConfig, run_dir: Path, dm, tokenizer, resuming: bool) -> list:
    """Checkpoints, forgetting curves on every held-out set, loss history, preemption, gate statistics."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .callbacks import ForgettingCurves, GateSpectra, GateStatistics
    from .checkpointing import LossHistory, PreemptionCheckpoint, StepDelay

    ev = cfg.eval
    heldout = {}
    for name in dm.heldout_sources():
        if name.endswith("_indomain") and not ev.indomain:
            continue
        heldout[name] = dm.heldout_texts(name, max_docs=ev.max_docs)
    summed = [k for k in heldout if not k.endswith("_indomain")]
    for name, spec in ev.extra.items():  # extra curves (e.g. a dev copy of the forgetting set), not summed
        heldout[name] = dm.read_texts(spec, max_docs=ev.max_docs)
    callbacks: list = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step{step:06d}", auto_insert_metric_name=False,
                        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps, save_last=True, save_top_k=-1),
        ForgettingCurves(heldout, tokenizer, every_n_steps=ev.every_n_steps, max_length=ev.max_length,
                         batch_size=ev.batch_size, at_start=ev.at_start and not resuming,
                         out_file=run_dir / "curves.json", summed=summed),
        LossHistory(run_dir / "losses.jsonl"),
        PreemptionCheckpoint(run_dir / "checkpoints"),
    ]
    if os.environ.get("NRL_TEST_STEP_DELAY"):  # test hook: slow steps so a test can kill/signal mid-run
        callbacks.append(StepDelay(float(os.environ["NRL_TEST_STEP_DELAY"])))
    if ev.gate_stats and method_class(cfg.method.name).adapter:
        batches = {}
        for name, texts in heldout.items():
            enc = tokenizer(texts[:4], return_tensors="pt", truncation=True, max_length=128, padding="max_length")
            batches[name] = enc["input_ids"]
        callbacks += [GateStatistics(batches, ev.every_n_steps, out_file=run_dir / "gates.json"),
                      GateSpectra(ev.every_n_steps)]
    from .progress import progress_callback

    callbacks.append(progress_callback())  # rich bar on a terminal, plain lines in batch logs (training/progress.py)
    return callbacks


def _trainer(cfg: RunConfig, model, run_dir: Path, callbacks: list):
    """The Lightning Trainer: strategy, precision, accumulation, atomic checkpoint IO, loggers."""
    import lightning as L
    from lightning.fabric.plugins.environments import SLURMEnvironment
    from lightning.pytorch.callbacks import ProgressBar

    from ..scale.plan import build_strategy
    from .checkpointing import AtomicCheckpointIO
    from .dashboard import build_loggers

    # trainer.loggers (TensorBoard by default: custom-scalars layout, no `epoch` scalar; training/dashboard.py)
    logger = build_loggers(cfg.trainer.loggers, run_dir) or False
    t = cfg.trainer
    plugins: list = [] if t.strategy == "deepspeed" else [AtomicCheckpointIO()]  # temp file + rename
    if SLURMEnvironment.detect():  # our PreemptionCheckpoint replaces Lightning's deadlock-prone USR1 handler
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(
        max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(cfg, model), precision=t.precision, accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=cfg.optim.grad_clip or None, log_every_n_steps=t.log_every_n_steps, logger=logger,
        callbacks=callbacks, enable_checkpointing=True, default_root_dir=str(run_dir), num_sanity_val_steps=0,
        limit_val_batches=0, detect_anomaly=t.detect_anomaly, use_distributed_sampler=False,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), enable_model_summary=False,
        plugins=plugins,
    )


def _finish(cfg: RunConfig, run_dir: Path, module, trainer, callbacks: list, ckpt_path) -> dict:
    """The result; on rank 0 also the saved extension and metrics.json."""
    from .callbacks import ForgettingCurves

    result = {"run_dir": str(run_dir), "config": to_dict(cfg), "parameters": module.report,
              "global_step": trainer.global_step, "resumed_from": str(ckpt_path) if ckpt_path else None}
    if trainer.is_global_zero:
        from .. import save_extension

        save_extension(module.model, run_dir / "extension")
        forgetting = next(c for c in callbacks if isinstance(c, ForgettingCurves))
        result["curves"] = forgetting.history
        result["final_bpb"] = forgetting.final
        write_json_atomic(run_dir / "metrics.json", result, default=str)
        print(f"[nr-lightning] done: {run_dir} final bpb {json.dumps(result['final_bpb'])}", file=sys.stderr)
    return result


PREEMPTED_EXIT = 3  # checkpoint written (and the SLURM job requeued): resume with ckpt_path=last


def cli() -> None:
    from ..errors import debug_requested, run_cli

    try:
        result = run_cli(main)
    except (FloatingPointError, RunStopped) as e:  # NonFiniteLossError (the message names the step, the batch and
        # the checkpoint), disk full: the run failed, the user's input was fine -> status 1, not 2
        if debug_requested(sys.argv[1:]):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if result.get("preempted"):
        sys.exit(PREEMPTED_EXIT)


if __name__ == "__main__":
    cli()

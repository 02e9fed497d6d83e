"""Fault tolerance: atomic checkpoints, newest-*valid* checkpoint resolution, preemption and loss history.

Why each piece exists:

- ``AtomicCheckpointIO`` writes ``.<name>.tmp-<host>-<pid>`` next to the target, fsyncs it and renames it
  over the target, so a process killed mid-write (kill -9, OOM, node loss) never leaves a truncated
  ``last.ckpt`` behind: the previous file stays intact until the new one is complete.
- ``resolve_checkpoint(run_dir, "last")`` returns the newest checkpoint that passes ``checkpoint_problem``
  (zip structure plus the CRC of every record, so truncation and flipped bits are both caught) and warns
  about every newer one it skips, so a damaged file (copied half-way, disk filled up on another writer,
  a flipped bit) falls back to the one before it. Loading is ``weights_only=True`` whatever the environment.
- ``PreemptionCheckpoint`` replaces Lightning's SLURM SIGUSR1 handler, which saves the checkpoint *inside*
  the signal handler and can deadlock DDP (Lightning issue #21406, docs/cluster.md), and its SIGTERM
  handler, which ends ``fit`` with a ``SystemExit`` whose status is 0 and writes no checkpoint: here the
  handler only sets a flag (SIGUSR1, SIGTERM or SIGINT); at the next optimizer-step boundary all ranks agree
  on it with one collective, save a checkpoint together, rank 0 runs ``scontrol requeue`` (SIGUSR1 under
  SLURM only: SIGTERM is also ``scancel``) and every rank stops with ``Preempted``.
- ``LossHistory`` appends the rank-averaged loss of every optimizer step to ``losses.jsonl``: the global-batch
  loss that DDP-vs-single-process and kill-and-resume comparisons need (the logged ``train/loss`` is rank 0's).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .preemption import install_preemption_handler, preemption_requested, requested_signal

__all__ = ["AtomicCheckpointIO", "LossHistory", "Preempted", "PreemptionCheckpoint", "StepDelay",
           "checkpoint_candidates", "checkpoint_problem", "install_preemption_handler", "preemption_requested",
           "resolve_checkpoint", "slurm_job_id"]

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>[^-]+(?:-[^-]+)*)-(?P<pid>\d+)$")


# ----------------------------------------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file in the same directory, fsync, then ``os.replace`` onto the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options "
                            f"(got {storage_options!r}); write a CheckpointIO plugin for them")
        target = Path(path)
        if "://" in str(path):  # remote filesystems: fall back to Lightning's own (fsspec) writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{socket.gethostname().split('.')[0]}-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            if os.environ.get("NRL_TEST_SAVE_DELAY") and target.exists():  # test hook: a window to kill the
                time.sleep(float(os.environ["NRL_TEST_SAVE_DELAY"]))  # process while it replaces a good file
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def load_checkpoint(self, path: Any, map_location: Any | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Always ``weights_only=True``: Lightning passes None, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns
        into a full unpickle that runs code planted in the file; an explicit True wins over that variable
        (torch.load docs). Our checkpoints hold only tensors, numbers, strings and containers."""
        import pickle

        from ..config import ConfigError

        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"checkpoint {path} holds objects that are not plain weights ({first}); it was not "
                              "written by nr_lightning.train or is damaged: pass another ckpt_path=PATH") from None


# ----------------------------------------------------------------------------------------------- validation


def checkpoint_problem(path: str | Path, deep: bool = False) -> str | None:
    """Why ``path`` is not a loadable torch checkpoint, or None if it looks complete.

    torch.save writes a zip archive whose central directory sits at the very end of the file, so a
    truncated file has no readable directory or has members that run past the end. ``deep`` also checks
    every member's CRC (reads the whole file).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        return f"cannot stat ({e.strerror})"
    if size == 0:
        return "empty file"
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            if not any(i.filename.endswith("data.pkl") for i in infos):
                return "no data.pkl record (not a torch.save checkpoint)"
            for i in infos:
                if i.header_offset + i.compress_size > size:
                    return f"truncated: record {i.filename} runs past the end of the file ({size} bytes)"
            if deep:
                bad = zf.testzip()
                if bad is not None:
                    return f"corrupt record {bad} (CRC mismatch)"
    except zipfile.BadZipFile as e:
        return f"truncated or corrupt ({e})"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    return None


def checkpoint_candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints a run may resume from, newest first: ``checkpoints/*.ckpt`` and Lightning's ``hpc_ckpt_*.ckpt``."""
    run_dir = Path(run_dir)
    found = [*(run_dir / "checkpoints").glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in found if p.is_file() and not p.name.startswith(".")]
    # newest first; on equal mtimes prefer last.ckpt (the file ModelCheckpoint writes after the step file)
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name.startswith("last")), reverse=True)


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Delete temp files of AtomicCheckpointIO writers on this host that no longer run (e.g. killed by -9)."""
    host = socket.gethostname().split(".")[0]
    for d in (run_dir / "checkpoints", run_dir):
        if not d.is_dir():
            continue
        for p in d.glob(".*.tmp-*"):
            m = _TMP.match(p.name)
            if not m or m["host"] != host:
                continue
            try:
                os.kill(int(m["pid"]), 0)
            except ProcessLookupError:
                p.unlink(missing_ok=True)
            except OSError:
                pass


def resolve_checkpoint(run_dir: str | Path, spec: str | None, cleanup: bool = True) -> Path | None:
    """Turn ``ckpt_path`` into a file to resume from.

    ``None`` -> None (fresh run). ``"last"`` -> the newest valid checkpoint of ``run_dir``; newer damaged
    ones are skipped with a warning; None (fresh start, with a warning) when the run has none yet, which
    is what the first launch of a requeueable SLURM job needs. A path -> that file, if valid.
    Raises ``ConfigError`` when checkpoints exist but none is readable, or the given file is damaged.
    """
    from ..config import ConfigError

    if spec is None:
        return None
    run_dir = Path(run_dir)
    if spec != "last":
        p = Path(spec).expanduser()
        if not p.is_file():
            raise ConfigError(f"ckpt_path={spec!r} does not exist; use ckpt_path=last to resume {run_dir}")
        problem = checkpoint_problem(p, deep=True)
        if problem:
            raise ConfigError(f"ckpt_path={spec!r} is not a usable checkpoint: {problem}; "
                              f"ckpt_path=last picks the newest valid one of {run_dir}")
        return p
    if cleanup:
        _remove_stale_temp_files(run_dir)
    candidates = checkpoint_candidates(run_dir)
    if not candidates:
        warnings.warn(f"ckpt_path=last: {run_dir} has no checkpoint yet; starting from scratch", stacklevel=2)
        return None
    skipped = []
    for p in candidates:
        problem = checkpoint_problem(p, deep=True)  # CRC of every record: catches bit flips, not only truncation
        if problem is None:
            if skipped:
                warnings.warn(f"ckpt_path=last: skipped damaged checkpoint(s) {'; '.join(skipped)}; "
                              f"resuming from {p}", stacklevel=2)
            return p
        skipped.append(f"{p.name} ({problem})")
    raise ConfigError(f"ckpt_path=last: no readable checkpoint in {run_dir}: {'; '.join(skipped)}. Delete them to "
                      f"start over, or pass ckpt_path=PATH")


# ----------------------------------------------------------------------------------------------- preemption

# The SIGUSR1 flag itself lives in nr_lightning/training/preemption.py (no heavy imports: the CLI installs it first).


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` needs: ``<array job>_<task>`` for array jobs, else SLURM_JOB_ID."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class Preempted(RuntimeError):
    """Raised on every rank after a preemption checkpoint was written (and the SLURM job requeued)."""

    def __init__(self, path: Path, step: int, requeued: str | None, signal_name: str | None = None) -> None:
        self.path, self.step, self.requeued, self.signal = path, step, requeued, signal_name
        how = f"SLURM job {requeued} requeued" if requeued else "resume with ckpt_path=last"
        super().__init__(f"preempted ({signal_name or 'signal'}) at step {step}: checkpoint {path}; {how}")


class PreemptionCheckpoint(L.Callback):
    """On a recorded SIGUSR1/SIGTERM/SIGINT: all ranks agree at a step boundary, checkpoint, requeue (SLURM,
    SIGUSR1 only), stop."""

    def __init__(self, dirpath: str | Path, requeue: bool | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.requeue = requeue

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has just put its own SIGTERM handler in front of ours (it records the signal, then ends fit
        # with exit status 0 and no checkpoint): put ours back; Lightning's teardown restores the handlers
        # it found, which are ours too. A SIGTERM that reached its handler meanwhile was recorded by ours as well.
        install_preemption_handler()
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "received_sigterm"):
            connector.received_sigterm = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.fit_loop._should_accumulate():  # only right after an optimizer step, identically on all ranks
            return
        step = trainer.global_step
        flag = preemption_requested()
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        if not flag:
            return
        path = self.dirpath / f"preempt-step{step:06d}.ckpt"
        # full state (optimizer, loops, callbacks) for an exact resume; said explicitly, else Lightning logs
        # "`weights_only` was not set", which reads like an unsafe load
        trainer.save_checkpoint(path, weights_only=False)  # collective; rank 0 writes (atomically), then a barrier
        job = slurm_job_id()
        name = requested_signal() or "a signal on another rank"
        # only SLURM's --signal (SIGUSR1) asks for a requeue; SIGTERM is also scancel, which must stay cancelled
        requeue = self.requeue if self.requeue is not None else job is not None and name == "SIGUSR1"
        requeued = None
        if requeue and job:
            # the requeue SIGTERMs every task: let it end them at once instead of running Lightning's
            # SIGTERM handler, which broadcasts inside the handler (the checkpoint is on disk already)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.finalize("success")
                rc = subprocess.call(["scontrol", "requeue", job])
                print(f"[nr-lightning] preempted ({name}) at step {step}: saved {path}; scontrol requeue {job} -> "
                      f"rc {rc}", file=sys.stderr, flush=True)
            requeued = job
        elif trainer.is_global_zero:
            print(f"[nr-lightning] preempted ({name}) at step {step}: saved {path}; resume with ckpt_path=last",
                  file=sys.stderr, flush=True)
        raise Preempted(path, step, requeued, name)


# ----------------------------------------------------------------------------------------------- loss history


class LossHistory(L.Callback):
    """``{"step", "loss", "tokens"}`` per optimizer step, averaged over micro-batches and ranks, to a JSONL file.

    Reads ``pl_module.last_loss`` (the unscaled loss of the last micro-batch; None when it was skipped).
    A resumed run appends: the last line for a step wins.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sum, self._n, self._tokens = 0.0, 0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = getattr(pl_module, "last_loss", None)
        if loss is not None:
            self._sum += float(loss)
            self._n += 1
        if isinstance(batch, dict) and "input_ids" in batch:
            self._tokens += int(batch["input_ids"].numel())
        if trainer.fit_loop._should_accumulate():  # mid accumulation window: no optimizer step yet
            return
        t = torch.tensor([self._sum, float(self._n), float(self._tokens)], dtype=torch.float64)
        if trainer.world_size > 1:
            t = trainer.strategy.reduce(t.to(trainer.strategy.root_device), reduce_op="sum").cpu()
        self._sum, self._n, self._tokens = 0.0, 0, 0
        if trainer.is_global_zero:
            rec = {"step": int(trainer.global_step), "loss": float(t[0] / t[1]) if t[1] else float("nan"),
                   "tokens": int(t[2]), "time": round(time.time(), 3)}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def read_losses(path: str | Path) -> dict[int, float]:
    """step -> loss from a ``losses.jsonl`` (the last record for a step wins, e.g. after a resume)."""
    out: dict[int, float] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out[int(rec["step"])] = float(rec["loss"])
    return out


class StepDelay(L.Callback):
    """Test hook (env NRL_TEST_STEP_DELAY=seconds): slow every training batch down, so a test can signal or
    kill the process mid-run at a known point instead of racing a millisecond-long tiny step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        time.sleep(self.seconds)

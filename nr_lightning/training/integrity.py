"""What makes a run directory trustworthy: one writer at a time, and a resume that is the same run.

- ``RunDirLock``: an exclusive ``fcntl.flock`` on ``<run dir>/.nrl.lock`` held for the whole run. The kernel drops
  it when the process ends in any way (exception, signal, kill -9), so a lock file left by a dead process
  never blocks; a second run on the same directory stops with one line naming the holder.
- ``run_identity`` / ``identity_mismatch``: the checkpoint records the run's defining config (every key but the
  ``SAFE_TO_CHANGE`` ones) and the SHA-256 of every training file; a resume that changes any of them stops,
  naming the key and both values, before anything is written. ``trainer.max_steps`` may grow when the
  learning-rate schedule does not depend on it (``optim.schedule=constant``), never fall below the
  checkpoint's step.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, to_dict

__all__ = ["LOCK_FILE", "SAFE_TO_CHANGE", "RunDirLock", "data_files", "identity_mismatch", "run_identity"]

LOCK_FILE = ".nrl.lock"

# Keys a resume may change: where the run lives, how often it evaluates/checkpoints/logs, how the hardware
# runs the same arithmetic (docs/reliability.md). Everything else defines the run.
SAFE_TO_CHANGE = (
    "name", "run_dir", "runs_root", "ckpt_path", "overwrite", "experiment",
    "backbone.trust_remote_code",
    "trainer.checkpoint_every_n_steps", "trainer.log_every_n_steps", "trainer.num_threads", "trainer.compile",
    "trainer.detect_anomaly", "trainer.dry_run", "trainer.min_free_gb", "trainer.nan_policy", "trainer.fused_loss",
    "trainer.activation_checkpointing", "trainer.accelerator", "trainer.strategy", "trainer.precision",
    "trainer.fsdp_sharding", "trainer.deepspeed_stage", "trainer.max_steps",
    "data.num_workers", "data.corpora_dir", "data.new.path", "data.en.path",  # paths: the file hashes decide
    "eval.every_n_steps", "eval.batch_size", "eval.at_start", "eval.gate_stats",
)


class RunDirLock:
    """Exclusive lock on a run directory for one process (``release`` or process exit drops it)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is in use by another run ({holder}): two runs must not write "
                              f"one directory; wait for it to end, or choose another name=... / run_dir=...") from None
        except OSError as e:  # a filesystem without locks (some NFS mounts): run unprotected rather than not at all
            os.close(fd)
            import warnings

            warnings.warn(f"cannot lock {self.path} ({e.strerror}): nothing stops a second run from writing "
                          f"{self.path.parent} at the same time", stacklevel=2)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                      .encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key != "data.weights":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def data_files(dm: Any) -> dict[str, list[str]]:
    """language -> content key of its training source (``hf:`` sources: their spec), in reading order.

    The key is the one the token shards are named by (data/shards.py): the hash of unchanged files (same size and
    mtime) is remembered beside the shards, so a requeue does not re-read a 100 GB corpus to check it."""
    from ..data import open_source
    from ..data.shards import source_key

    out: dict[str, list[str]] = {}
    for lang in dm.languages:
        spec = dm.train_source(lang)
        src = open_source(spec, text_field=dm.config.text_field)
        out[lang] = [f"hf:{spec}"] if src.is_hf else [source_key(src, dm.tokens_dir)]
    return out


def run_identity(cfg: RunConfig, data: dict[str, list[str]] | None = None) -> dict:
    """What the checkpoint records about the run: defining config (dotted keys), max_steps, data file hashes."""
    flat = _flatten(to_dict(cfg))
    defining = {k: v for k, v in flat.items() if not any(k == s or k.startswith(s + ".") for s in SAFE_TO_CHANGE)}
    return {"config": defining, "max_steps": cfg.trainer.max_steps, "schedule": cfg.optim.schedule,
            **({"data": data} if data is not None else {})}


def _short(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(x, str) and len(x) == 64 for x in v):
        return "[" + ", ".join(x[:12] for x in v) + "]"  # file hashes: a prefix is enough to tell them apart
    return repr(v)


def identity_mismatch(saved: dict | None, now: dict, ckpt_step: int | None = None) -> str | None:
    """Why a resume with identity ``now`` is not the run ``saved`` describes (None: the same run). ``saved`` is
    None for checkpoints written before identities were recorded: only the step is checked then. Keys that only
    one side has (a config field added or removed between versions) are not compared."""
    steps = now.get("max_steps")
    if ckpt_step is not None and steps is not None and steps < ckpt_step:
        return f"trainer.max_steps={steps} is below the checkpoint's step {ckpt_step}"
    if not saved:
        return None
    s_cfg, n_cfg = saved.get("config") or {}, now.get("config") or {}
    changed = [k for k in sorted(set(s_cfg) & set(n_cfg)) if s_cfg[k] != n_cfg[k]]
    if "method.name" in changed:  # the other keys follow from it
        return (f"it was written by a method={s_cfg['method.name']} run and this run is "
                f"method={n_cfg['method.name']}")
    if changed:
        parts = [f"{k} from {_short(s_cfg.get(k))} to {_short(n_cfg.get(k))}" for k in changed[:3]]
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        return f"it changes {'; '.join(parts)}{more}"
    s_data, n_data = saved.get("data"), now.get("data")
    if s_data is not None and n_data is not None and s_data != n_data:
        lang = next((k for k in sorted(set(s_data) | set(n_data)) if s_data.get(k) != n_data.get(k)), "?")
        return (f"the training data of {lang} changed: content key {_short(s_data.get(lang))} in the checkpoint, "
                f"{_short(n_data.get(lang))} now")
    s_steps = saved.get("max_steps")
    if s_steps is not None and steps != s_steps and saved.get("schedule", "cosine") != "constant":
        return (f"it changes trainer.max_steps from {s_steps} to {steps}, which reshapes the "
                f"{saved.get('schedule', 'cosine')} learning-rate schedule (only optim.schedule=constant runs may be "
                f"extended)")
    return None

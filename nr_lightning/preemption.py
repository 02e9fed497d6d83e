"""The SIGUSR1 (preemption) flag, in a module that imports nothing heavy.

``python -m nr_lightning.train`` installs the handler before torch, transformers or the config are
imported (a few seconds), because a scheduler's requeue signal can arrive at any moment and its default
action ends the process without a checkpoint. The handler only records the signal; the training loop
checkpoints at the next step boundary (nr_lightning/training/checkpointing.py, ``PreemptionCheckpoint``).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["install_preemption_handler", "preemption_requested"]

_REQUESTED: list[int] = []


def _on_signal(signum: int, frame: Any) -> None:  # async-signal-safe: only records the signal
    _REQUESTED.append(signum)


def install_preemption_handler(signum: int = signal.SIGUSR1, restore: Any = None) -> Any:
    """Record ``signum`` instead of dying on it; returns the previous handler (pass it as ``restore`` to put it
    back). Called at the very start of a run, so a SLURM ``--signal`` that fires while the model is still
    loading is not fatal (docs/cluster.md): the run checkpoints at its first step.
    A signal recorded by an earlier install (at interpreter start) is kept."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return None
    if restore is not None:
        return signal.signal(signum, restore)
    if signal.getsignal(signum) is not _on_signal:
        _REQUESTED.clear()
    return signal.signal(signum, _on_signal)


def preemption_requested() -> bool:
    return bool(_REQUESTED)

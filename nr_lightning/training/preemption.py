"""The preemption flag (SIGUSR1, SIGTERM, SIGINT), in a module that imports nothing heavy.

Every termination signal a scheduler sends is a preemption: SLURM's ``--signal`` (SIGUSR1), ``scancel``, a
preemption or the time limit without ``--signal`` (SIGTERM), Ctrl+C (SIGINT). ``python -m nr_lightning.train``
installs the handler before torch, transformers or the config are imported (a few seconds), because such a
signal can arrive at any moment and its default action ends the process without a checkpoint. The handler
only records the signal; the training loop checkpoints at the next step boundary and exits with status 3
(nr_lightning/training/checkpointing.py, ``PreemptionCheckpoint``). A second Ctrl+C aborts at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["PREEMPTION_SIGNALS", "install_preemption_handler", "preemption_requested", "requested_signal"]

PREEMPTION_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGUSR1", "SIGTERM", "SIGINT") if hasattr(signal, name))
_REQUESTED: list[int] = []


def _on_signal(signum: int, frame: Any) -> None:  # records the signal; the loop acts on it at a step boundary
    if signum == getattr(signal, "SIGINT", None) and signum in _REQUESTED:
        raise KeyboardInterrupt  # Ctrl+C twice: the user wants out now, checkpoint or not
    _REQUESTED.append(signum)


def install_preemption_handler(signum: int | None = None, restore: Any = None) -> Any:
    """Record ``signum`` (default: every signal of ``PREEMPTION_SIGNALS``) instead of dying on it; returns the
    previous handler(s) (pass them as ``restore`` to put them back). Called at the very start of a run, so a
    signal that fires while the model is still loading is not fatal (docs/cluster.md): the run checkpoints at
    its first step. A signal recorded by an earlier install (at interpreter start) is kept."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return None
    if restore is not None:
        if isinstance(restore, dict):
            return {s: signal.signal(s, h) for s, h in restore.items() if h is not None}
        return signal.signal(signum if signum is not None else signal.SIGUSR1, restore)
    signals = PREEMPTION_SIGNALS if signum is None else (signum,)
    # a SIGINT the parent set to be ignored (`cmd &` in a script) stays ignored: the Unix convention
    signals = tuple(s for s in signals if not (s == getattr(signal, "SIGINT", None) and signum is None
                                               and signal.getsignal(s) is signal.SIG_IGN))
    if not any(signal.getsignal(s) is _on_signal for s in signals):
        _REQUESTED.clear()
    previous = {s: signal.signal(s, _on_signal) for s in signals}
    return previous if signum is None else previous[signum]


def preemption_requested() -> bool:
    return bool(_REQUESTED)


def requested_signal() -> str | None:
    """The name of the first signal recorded (``SIGTERM``...), or None."""
    return signal.Signals(_REQUESTED[0]).name if _REQUESTED else None

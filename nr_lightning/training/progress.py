"""Progress output that reads the same in a terminal and in a batch log (SLURM ``--output`` file).

- On a terminal: Lightning's rich progress bar, described by optimizer steps (a step-bounded run has no
  epoch count, so Lightning's ``Epoch 0/-2`` is meaningless here).
- Anywhere else: :class:`PlainProgress`, one plain line every ~2% of the run and at least every 60 s:
  step/total, LM loss, local losses, lr, tokens/s, elapsed, ETA and the latest held-out bits-per-byte.

:func:`quiet_third_party` drops the known third-party noise we cannot fix at its source (Lightning's
litlogger advertisement, a deprecation inside Lightning's pytree helper); every other warning still shows.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

# Messages of warnings raised inside third-party code that a user can do nothing about.
NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # lightning/pytorch/utilities/_pytree.py vs torch 2.13
)
# Prefixes of Lightning info messages that advertise products rather than report on the run.
NOISY_INFO = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(NOISY_INFO)


def quiet_third_party() -> None:
    """Filter the known third-party noise (idempotent); real warnings are kept."""
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in log.filters):
            log.addFilter(_DropAdverts())


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar labelled by optimizer steps instead of ``Epoch i/max_epochs-1``."""

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_steps
        return f"steps (of {total})" if total and total > 0 else f"epoch {current_epoch}"


class PlainProgress(L.Callback):
    """One plain, greppable line per report, written to ``stream`` (stdout) by rank 0.

    ``every_n_steps=None`` reports every ~``fraction`` of ``max_steps``; ``max_interval_s`` forces a
    line when that much time passed since the last one (slow steps still show life in the log).
    """

    def __init__(self, every_n_steps: int | None = None, fraction: float = 0.02, max_interval_s: float = 60.0,
                 stream=None) -> None:
        self.every_n_steps, self.fraction, self.max_interval_s = every_n_steps, fraction, max_interval_s
        self.stream = stream
        self._t0 = self._t_last = 0.0
        self._step0 = 0
        self._last_step = -1
        self._tokens_last: float | None = None
        self._every = 1

    def _write(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._t_last = time.monotonic()
        self._step0 = self._last_step = trainer.global_step
        total = max(1, int(trainer.max_steps or 0))
        self._every = self.every_n_steps or max(1, round(total * self.fraction))
        self._tokens_last = None

    def _latest_bpb(self, trainer: L.Trainer) -> dict[str, float]:
        for cb in trainer.callbacks:
            history = getattr(cb, "history", None)
            if isinstance(history, list) and history and "step" in history[-1]:
                return {k.removeprefix("eval/bpb_"): v for k, v in history[-1].items()
                        if k.startswith("eval/bpb_") and k != "eval/bpb_sum"} | {"@": history[-1]["step"]}
        return {}

    def line(self, trainer: L.Trainer) -> str:
        """The report for the current step (also used at the end of training)."""
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        step, total = trainer.global_step, trainer.max_steps
        now = time.monotonic()
        elapsed = now - self._t0
        done = step - self._step0
        eta = elapsed / done * (total - step) if done > 0 and total and total > 0 else float("nan")
        parts = [f"step {step}/{total}" if total and total > 0 else f"step {step}"]
        if "train/lm_loss" in m:
            parts.append(f"lm_loss {m['train/lm_loss']:.4f}")
        local = [f"{k} {m['train/' + k]:.4g}" for k in ("sparsity", "gate_bce") if "train/" + k in m]
        parts += local
        if "train/lr" in m:
            parts.append(f"lr {m['train/lr']:.3g}")
        tokens = m.get("train/tokens_seen")
        if tokens is not None and self._tokens_last is not None and now > self._t_last:
            parts.append(f"tok/s {(tokens - self._tokens_last) / (now - self._t_last):,.0f}")
        elif "train/tokens_per_s" in m:
            parts.append(f"tok/s {m['train/tokens_per_s']:,.0f}")
        if "train/mfu" in m:
            parts.append(f"mfu {m['train/mfu']:.1%}")
        self._tokens_last = tokens
        parts.append(f"elapsed {_hms(elapsed)}")
        parts.append(f"eta {_hms(eta)}" if eta == eta else "eta ?")
        bpb = self._latest_bpb(trainer)
        if bpb:
            at = bpb.pop("@")
            parts.append("bpb " + " ".join(f"{k}={v:.4f}" for k, v in bpb.items()) + f" (step {at})")
        return "[nr-lightning] " + " | ".join(parts)

    def _report(self, trainer: L.Trainer) -> None:
        self._write(self.line(trainer))
        self._t_last = time.monotonic()
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:  # accumulation repeats a step
            return
        if step % self._every == 0 or time.monotonic() - self._t_last >= self.max_interval_s:
            self._report(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.global_step != self._last_step:
            self._report(trainer)


def progress_callback(stream=None) -> L.Callback:
    """The rich bar on a terminal, plain lines otherwise (decided by whether stdout is a terminal)."""
    out = stream or sys.stdout
    return StepProgressBar() if out.isatty() else PlainProgress(stream=stream)

"""The TensorBoard a run writes: scalars without Lightning's constant `epoch` plot, plus a custom-scalars
layout (TensorBoard's own plugin, tab "CUSTOM SCALARS") that shows the learning-vs-forgetting trade-off
at a glance: held-out English bpb, new-language bpb, and every set's change against step 0 on charts of
their own, the per-domain block-gate means on another. Also the loggers of ``trainer.loggers``. See docs/data.md ("TensorBoard") for which dashboard to open.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

# Multiline charts take tag regexes; tags are written by nr_lightning.training.callbacks.
LAYOUT = {
    # forgetting and learning on charts of their own (English ~1 bpb and a new language ~1.7 would flatten each
    # other's 0.01 changes on a shared axis), and every set's change against step 0 on one small scale
    "forgetting": {
        "English held-out bits per byte (forgetting sets)": ["Multiline", [r"eval/bpb_en(_.*)?"]],
        "change against step 0 (bpb; > 0 forgets, < 0 learns)": ["Multiline", [r"eval/delta_bpb_.*"]],
    },
    "learning": {
        "new-language held-out bits per byte": ["Multiline", [r"eval/bpb_(?!en$|en_|sum$).*"]],
        "English + new language (sum)": ["Multiline", [r"eval/bpb_sum"]],
    },
    "gates": {
        "block-gate mean per domain": ["Multiline", [r"gates/.*_gate_mean"]],
        "adapter residual L1 per domain": ["Multiline", [r"gates/.*_residual_l1"]],
    },
    "training": {
        "losses": ["Multiline", [r"train/(lm_loss|sparsity|gate_bce)"]],
        "throughput (training steps only)": ["Multiline", [r"train/(tokens_per_s|mfu)"]],
    },
}


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger that writes :data:`LAYOUT` once and drops the `epoch` scalar (runs are bounded by
    steps: epoch is a constant 0 that would be the first card of the dashboard)."""

    _layout_written = False

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if not self._layout_written:
            self.experiment.add_custom_scalars(LAYOUT)
            self._layout_written = True
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)


def build_loggers(names: list[str], run_dir: Path) -> list:
    """The Lightning loggers of ``trainer.loggers``; every one receives the same metric names.

    TensorBoard also gets the custom-scalars layout and the gate histograms/figures (callbacks write those
    to the TensorBoard writer only). W&B runs offline into <run>/wandb unless WANDB_MODE=online
    (`wandb sync <run>/wandb/offline-run-*` uploads it later); the project is WANDB_PROJECT or nr-lightning.
    """
    loggers: list = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            loggers.append(RunLogger(save_dir=str(run_dir), name="", version="tb", default_hp_metric=False))
        elif name == "csv":
            from lightning.pytorch.loggers import CSVLogger

            loggers.append(CSVLogger(save_dir=str(run_dir), name="", version="csv"))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            online = os.environ.get("WANDB_MODE", "offline") == "online"
            loggers.append(WandbLogger(save_dir=str(run_dir), name=run_dir.name, offline=not online,
                                       project=os.environ.get("WANDB_PROJECT", "nr-lightning")))
        else:
            raise ValueError(f"unknown logger {name!r}")
    return loggers


def close_loggers(loggers: list) -> None:
    """Finish the W&B run (its summary and history are complete only then; Lightning leaves it to process exit)."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()

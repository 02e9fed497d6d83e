"""The TensorBoard a run writes: scalars without Lightning's constant `epoch` plot, plus a custom-scalars
layout (TensorBoard's own plugin, tab "CUSTOM SCALARS") that shows the learning-vs-forgetting trade-off
at a glance: held-out English and new-language bpb and their sum on one chart, the per-domain block-gate
means on another. See docs/data.md ("TensorBoard") for which dashboard to open.
"""

from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

# Multiline charts take tag regexes; tags are written by nr_lightning.training.callbacks.
LAYOUT = {
    "forgetting": {
        "held-out bits per byte (English forgetting set, new language, sum)": ["Multiline", [r"eval/bpb_.*"]],
    },
    "gates": {
        "block-gate mean per domain": ["Multiline", [r"gates/.*_gate_mean"]],
        "adapter residual L1 per domain": ["Multiline", [r"gates/.*_residual_l1"]],
    },
    "training": {
        "losses": ["Multiline", [r"train/(lm_loss|sparsity|gate_bce)"]],
        "throughput": ["Multiline", [r"train/(tokens_per_s|mfu)"]],
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

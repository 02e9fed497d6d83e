"""Lightning callbacks that make learning vs forgetting visible while a run trains.

- ForgettingCurves: held-out bits-per-byte per language every N steps (tags eval/bpb_<lang>; eval/bpb_en is
  the English *other-domain* forgetting set), plus eval/bpb_sum, and each one's change against step 0
  (eval/delta_bpb_<lang>, when the run evaluated step 0).
- GateStatistics: per layer, the mean block-gate value phi(g(x)) and the mean adapter residual norm on English
  vs new-language tokens (a neutral model should gate English to ~0).
- GateSpectra: singular values of every adapter W_gate (and once, of the backbone's FFN gate matrices) as
  TensorBoard histograms and a per-layer figure of normalised spectra (paper Fig. 3).
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from ..extension import adapters, gate_spectra
from ..io import write_json_atomic


def _tb(trainer: L.Trainer):
    """The TensorBoard SummaryWriter, if a TensorBoardLogger is attached."""
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_histogram"):
            return exp
    return None


def _due(trainer: L.Trainer, every: int) -> bool:
    """True after an optimizer step that lands on a multiple of `every`."""
    return bool(every) and trainer.global_step > 0 and trainer.global_step % every == 0


class _Periodic(L.Callback):
    """Calls `_log` at step 0 (if `at_start`), after every `every`-th optimizer step and at the end of
    training, at most once per step (gradient accumulation repeats a step across micro-batches)."""

    def __init__(self, every_n_steps: int, at_start: bool) -> None:
        self.every, self.at_start = every_n_steps, at_start
        self._last_step = -1

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def _fire(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            t0 = time.perf_counter()
            self._log(trainer, pl_module)
            exclude = getattr(pl_module, "exclude_from_throughput", None)
            if callable(exclude):  # train/tokens_per_s counts training steps only, not this evaluation
                exclude(time.perf_counter() - t0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_start and trainer.global_step == 0:
            self._fire(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if _due(trainer, self.every):
            self._fire(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fire(trainer, pl_module)


class ForgettingCurves(_Periodic):
    """Held-out bits-per-byte of each language every `every_n_steps` optimizer steps, at start and at the end."""

    def __init__(self, texts: dict[str, list[str]], tokenizer, every_n_steps: int = 50, max_length: int = 512,
                 batch_size: int = 8, at_start: bool = True, out_file: str | Path | None = None,
                 summed: list[str] | None = None) -> None:
        super().__init__(every_n_steps, at_start)
        self.texts = {k: v for k, v in texts.items() if v}
        self.tokenizer = tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.out_file = Path(out_file) if out_file else None
        self.history: list[dict] = []
        self.summed = summed  # keys of eval/bpb_sum (default: every set but the *_indomain ones)
        self.shard = False  # set in setup(): True under DDP

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        name = type(trainer.strategy).__name__
        self.shard = trainer.world_size > 1 and name.startswith("DDP")

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        from ..evaluation import bits_per_byte, sharded_bits_per_byte

        # DDP: each rank scores 1/W of the documents and the sums are all-reduced; sharded-weight strategies
        # (FSDP, DeepSpeed) gather weights inside forward, so every rank must run every window there
        score = sharded_bits_per_byte if self.shard else bits_per_byte
        was_training = model.training
        model.eval()
        try:
            res = {lang: float(score(model, self.tokenizer, texts, max_length=self.max_length,
                                     batch_size=self.batch_size))
                   for lang, texts in self.texts.items()}
        finally:
            model.train(was_training)
        return res

    # The history (step-0 baseline included) travels in the checkpoint: a resumed run's curves.json and
    # metrics.json then hold every point of the uninterrupted run, not only those after the restart.
    def state_dict(self) -> dict:
        return {"history": [dict(h) for h in self.history], "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self._last_step = int(state_dict.get("last_step", -1))

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        res = self.evaluate(pl_module.model)
        metrics = {f"eval/bpb_{k}": v for k, v in res.items()}
        main = [k for k in res if (k in self.summed if self.summed is not None else not k.endswith("_indomain"))]
        if len(main) > 1:
            metrics["eval/bpb_sum"] = sum(res[k] for k in main)
        start = self.history[0] if self.history and self.history[0].get("step") == 0 else None
        if start is None and step == 0:
            start = metrics
        if start is not None:  # change against the untouched model: a 0.01 bpb drift shows on its own scale
            metrics.update({f"eval/delta_{k[5:]}": v - start[k] for k, v in list(metrics.items()) if k in start})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
            self.history.append({"step": step, **metrics})
            if self.out_file:
                write_json_atomic(self.out_file, self.history, indent=1)
        for k, v in metrics.items():  # shown in the progress bar
            trainer.progress_bar_metrics[k.replace("eval/", "")] = round(v, 4)

    @property
    def final(self) -> dict[str, float]:
        return {k.replace("eval/bpb_", "", 1): v for k, v in self.history[-1].items()
                if k.startswith("eval/bpb_") and k != "eval/bpb_sum"} if self.history else {}


class GateStatistics(_Periodic):
    """Block-gate value and residual norm per layer on held-out English vs new-language text."""

    def __init__(self, batches: dict[str, torch.Tensor], every_n_steps: int = 50,
                 out_file: str | Path | None = None) -> None:
        super().__init__(every_n_steps, at_start=True)
        self.batches = batches
        self.out_file = Path(out_file) if out_file else None  # gates.json: per-domain means over steps
        self.history: list[dict] = []

    @torch.no_grad()
    def statistics(self, model) -> dict[str, dict[str, list[float]]]:
        """{lang: {"gate_mean": [per layer], "residual_l1": [per layer]}} on the stored held-out batches."""
        layers = adapters(model)
        if not layers:
            return {}
        was_training = model.training
        model.eval()
        out: dict[str, dict[str, list[float]]] = {}
        try:
            for lang, ids in self.batches.items():
                model(input_ids=ids.to(next(model.parameters()).device))
                gate = [a.gate_values_from_cache() for a in layers]
                out[lang] = {
                    "gate_mean": [float(g.mean()) if g is not None else 1.0 for g in gate],
                    "gate_values": [g.flatten().float().cpu() if g is not None else None for g in gate],
                    "residual_l1": [float(a.last_residual_l1.mean()) for a in layers],
                }
        finally:
            model.train(was_training)
        return out

    # gates.json's history travels in the checkpoint, as the forgetting curves' does: a resumed run keeps steps
    # logged before the restart
    def state_dict(self) -> dict:
        return {"history": [dict(h) for h in self.history], "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self._last_step = int(state_dict.get("last_step", -1))

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stats = self.statistics(pl_module.model)
        if not stats or not trainer.is_global_zero:
            return
        step = trainer.global_step
        metrics = {}
        tb = _tb(trainer)
        for lang, s in stats.items():
            metrics[f"gates/{lang}_gate_mean"] = sum(s["gate_mean"]) / len(s["gate_mean"])
            metrics[f"gates/{lang}_residual_l1"] = sum(s["residual_l1"]) / len(s["residual_l1"])
            for i, (g, r) in enumerate(zip(s["gate_mean"], s["residual_l1"])):
                metrics[f"gates_per_layer/{lang}_gate_mean_layer{i:02d}"] = g
                metrics[f"gates_per_layer/{lang}_residual_l1_layer{i:02d}"] = r
                values = s["gate_values"][i]  # a diverged run's NaN gates make TensorBoard's histogram raise
                if tb is not None and values is not None and bool(torch.isfinite(values).all()):
                    tb.add_histogram(f"gate_values/{lang}_layer{i:02d}", values, step)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.history.append({"step": step, **{lang: {"gate_mean": metrics[f"gates/{lang}_gate_mean"],
                                                     "residual_l1": metrics[f"gates/{lang}_residual_l1"],
                                                     "gate_mean_per_layer": s["gate_mean"],
                                                     "residual_l1_per_layer": s["residual_l1"]}
                                              for lang, s in stats.items()}})
        if self.out_file:
            write_json_atomic(self.out_file, self.history, indent=1)


def spectra_figure(spectra: dict[str, list[torch.Tensor]], max_layers: int = 6):
    """Normalised singular values (s / s_max vs rank / n) per layer: adapter W_gate against the backbone's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(spectra["backbone"])
    picks = sorted({round(i * (n - 1) / max(1, max_layers - 1)) for i in range(min(n, max_layers))})
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks), 2.8), squeeze=False)
    for ax, layer in zip(axes[0], picks):
        for kind, style in (("backbone", "-"), ("adapter", "--")):
            if layer < len(spectra[kind]):
                s = spectra[kind][layer]
                ax.plot(torch.linspace(0, 1, len(s)), s / s[0], style, label=kind)
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("rank / n")
    axes[0][0].set_ylabel("σ / σ_max")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


class GateSpectra(_Periodic):
    """Singular values of adapter and backbone FFN gate matrices as histograms and a figure."""

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__(every_n_steps, at_start=False)
        self._backbone_logged = False

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tb = _tb(trainer)
        if tb is None or not trainer.is_global_zero or not adapters(pl_module.model):
            return
        if not all(bool(torch.isfinite(a.w_gate.weight).all()) for a in adapters(pl_module.model)):
            return  # diverged weights: no spectrum (the NaN guard stops the run with a last good checkpoint)
        spectra = gate_spectra(pl_module.model)
        step = trainer.global_step
        for i, s in enumerate(spectra["adapter"]):
            tb.add_histogram(f"spectra/adapter_w_gate_layer{i:02d}", s, step)
        if not self._backbone_logged:
            for i, s in enumerate(spectra["backbone"]):
                tb.add_histogram(f"spectra/backbone_gate_proj_layer{i:02d}", s, 0)
            self._backbone_logged = True
        tb.add_figure("spectra/normalised", spectra_figure(spectra), step)

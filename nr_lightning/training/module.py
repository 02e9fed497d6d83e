"""ExtensionModule: the backbone-plus-extension model and its loss, as a LightningModule.

    loss = LM cross entropy + alpha * sparsity + beta * gate_bce        (README: The extension API)

Only the extension's parameters reach the optimizer (finetune: all of them), and checkpoints of
adapter/LoRA runs hold only those weights: the frozen backbone is rebuilt from its source.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..evaluation.scoring import hidden_and_head
from ..extension import extension_parameters, local_losses, parameter_report
from .guards import NonFiniteGuard, NonFiniteLossError, Throughput
from .loss import causal_lm_loss

__all__ = ["ExtensionModule", "NonFiniteLossError", "lr_lambda"]


def lr_lambda(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to min_ratio (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ExtensionModule(L.LightningModule):
    """Owns the extended model; computes LM CE plus the local losses; logs each term separately."""

    def __init__(self, model: nn.Module, cfg: RunConfig, languages: list[str] | None = None,
                 extra_loss: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None) -> None:
        super().__init__()
        # Optional extra loss terms added to the training loss and logged as train/<name> (e.g. the O-LoRA
        # penalty); taken from `model.nrl_extra_loss` when not given (nr_lightning.sequence sets it).
        self.extra_loss = extra_loss if extra_loss is not None else getattr(model, "nrl_extra_loss", None)
        self.model = model.train()  # HF models load in eval mode (dropout off); training must run in train mode
        self.cfg = cfg
        self.languages = languages or []
        self.report = parameter_report(model)
        self.strict_loading = False  # adapter checkpoints hold only the extension's weights
        # NaN/inf guard and throughput log: callbacks (nr_lightning/training/guards.py), added by configure_callbacks
        self.guard = NonFiniteGuard(cfg.trainer.nan_policy, fp16=cfg.trainer.precision.startswith("16"))
        self.last_loss: torch.Tensor | None = None  # unscaled loss of the last micro-batch (LossHistory reads it)
        self.run_identity: dict | None = None  # set by the training CLI; saved in every checkpoint
        # (decoder, head, softcap) when the LM loss can be fused with the head (nr_lightning.training.loss)
        # (not under FSDP/DeepSpeed: their root wrapper must run the forward that gathers the head's shards)
        sharded = cfg.trainer.strategy in ("fsdp", "deepspeed")
        self._fused = hidden_and_head(model) if cfg.trainer.fused_loss and not sharded else None

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.guard, Throughput(self.cfg.data.seq_len, self.cfg.trainer.precision)]

    def forward(self, input_ids: torch.Tensor, **kw):
        return self.model(input_ids=input_ids, **kw)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
        """The training loss of one batch: ``(loss, LM cross entropy, local losses, extra terms)``.

        Separate from :meth:`training_step` so that benchmarks and custom loops time exactly this loss.
        The LM term is HF's causal-LM loss (labels = inputs), fused with the head when possible
        (:mod:`nr_lightning.training.loss`: same value, no logits kept).
        """
        ids, domain = batch["input_ids"], batch["domain"]
        if self._fused is not None:
            lm = causal_lm_loss(ids, self._fused)
        else:
            lm = self.model(input_ids=ids, labels=ids).loss
        local = local_losses(self.model, domain)
        m = self.cfg.method
        loss = lm + m.alpha * local["sparsity"] + m.beta * local["gate_bce"]
        extra = self.extra_loss(self.model) if self.extra_loss is not None else {}
        for value in extra.values():
            loss = loss + value
        return loss, lm, local, extra

    def compile_model(self) -> None:
        """torch.compile in place (parameter names unchanged): the decoder when the loss is fused (the loss
        calls it directly), else the whole model."""
        target = self._fused[0] if self._fused is not None else self.model
        target.compile()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss, lm, local, extra = self.compute_loss(batch)
        self.last_loss = None
        skip, instead = self.guard.check_loss(self, batch, batch_idx, loss, lm, local)  # raises under nan_policy=stop
        if skip:
            return instead
        self.last_loss = loss.detach()
        bs = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=False, batch_size=bs)
        self.log("train/lm_loss", lm, prog_bar=True, batch_size=bs)
        self.log("train/sparsity", local["sparsity"], batch_size=bs)
        self.log("train/gate_bce", local["gate_bce"], batch_size=bs)
        for name, value in extra.items():
            self.log(f"train/{name}", value, batch_size=bs)
        self.log("train/english_fraction", (batch["domain"] == 0).float().mean(), batch_size=bs)
        return loss

    def exclude_from_throughput(self, seconds: float) -> None:
        """Leave `seconds` spent outside training (held-out evaluation, gate statistics) out of tokens_per_s."""
        from .guards import Throughput

        for cb in getattr(self._trainer, "callbacks", None) or []:
            if isinstance(cb, Throughput):
                cb.exclude(seconds)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log("train/lr", optimizer.param_groups[0]["lr"])

    def configure_optimizers(self):
        o, m = self.cfg.optim, self.cfg.method
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=m.lr * o.lr_multiplier, betas=(o.beta1, o.beta2), eps=o.eps)
        total = self.cfg.trainer.max_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, o.warmup_steps, total, o.schedule, o.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ adapter-only checkpoints
    def _extension_keys(self) -> set[str]:
        from ..registry import method_class

        return method_class(self.cfg.method.name).checkpoint_keys(self)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keys = self._extension_keys()
        if keys:  # drop the frozen backbone: a 135M backbone would make every checkpoint 0.5 GB
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}
        checkpoint["nrl"] = {"method": self.cfg.method.name, "report": self.report,
                             "extension_keys": len(keys)}
        if self.run_identity is not None:  # what a resume must keep (training/integrity.py)
            checkpoint["nrl"]["identity"] = self.run_identity

    def checkpoint_mismatch(self, checkpoint: dict) -> str | None:
        """Why ``checkpoint`` cannot resume this run (another method, budget or backbone), or None."""
        written_by = (checkpoint.get("nrl") or {}).get("method")
        if written_by and written_by != self.cfg.method.name:
            return f"it was written by a method={written_by} run and this run is method={self.cfg.method.name}"
        keys = self._extension_keys()
        missing = keys - set(checkpoint.get("state_dict", {}))
        if missing:
            return (f"it lacks extension weights {sorted(missing)[:3]}...: was it written by a run with another "
                    f"method/budget/backbone? (this run: {self.cfg.method.name})")
        return None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        problem = self.checkpoint_mismatch(checkpoint)
        if problem:
            raise ConfigError(f"checkpoint cannot resume this run: {problem}")

    def extension_state(self) -> dict[str, torch.Tensor]:
        return extension_parameters(self.model)

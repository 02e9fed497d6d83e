"""ExtensionModule: the backbone-plus-extension model and its loss, as a LightningModule.

    loss = LM cross entropy + alpha * sparsity + beta * gate_bce        (README: The extension API)

Only the extension's parameters reach the optimizer (finetune: all of them), and checkpoints of
adapter/LoRA runs hold only those weights: the frozen backbone is rebuilt from its source.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..evaluation.scoring import hidden_and_head
from ..extension import extension_parameters, local_losses, parameter_report
from .loss import causal_lm_loss


class NonFiniteLossError(FloatingPointError):
    """Raised by the NaN/inf guard with the step and the batch's languages in the message."""


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
        self._t_last: float | None = None
        self._skipped_batches = 0
        self._flops_per_token, self._peak_flops = 0.0, None  # set in on_fit_start (MFU)
        self.last_loss: torch.Tensor | None = None  # unscaled loss of the last micro-batch (LossHistory reads it)
        # (decoder, head, softcap) when the LM loss can be fused with the head (nr_lightning.training.loss)
        # (not under FSDP/DeepSpeed: their root wrapper must run the forward that gathers the head's shards)
        sharded = cfg.trainer.strategy in ("fsdp", "deepspeed")
        self._fused = hidden_and_head(model) if cfg.trainer.fused_loss and not sharded else None

    def on_fit_start(self) -> None:
        from .throughput import peak_flops, train_flops_per_token

        self._flops_per_token = train_flops_per_token(self.model, self.cfg.data.seq_len)
        self._peak_flops = peak_flops(self.device, self.cfg.trainer.precision)

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
        ids, domain = batch["input_ids"], batch["domain"]
        loss, lm, local, extra = self.compute_loss(batch)
        self.last_loss = None
        bad = not bool(torch.isfinite(loss))
        if self._world_size() > 1:  # every rank must take the same branch, or DDP hangs in the next collective
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            langs = sorted({self.languages[i] if i < len(self.languages) else str(i)
                            for i in batch.get("lang", domain).tolist()})
            msg = (f"non-finite loss {loss.item()} at step {self.global_step} (batch {batch_idx}, "
                   f"{'this rank: ' if bool(torch.isfinite(loss)) else ''}languages {langs}, "
                   f"{self._batch_source(batch, batch_idx)}, lm={lm.item():.4g} "
                   f"sparsity={local['sparsity'].item():.4g} gate_bce={local['gate_bce'].item():.4g}).")
            if self.cfg.trainer.nan_policy == "skip":
                self._skipped_batches += 1
                self.log("train/skipped_batches", float(self._skipped_batches))
                self.print(f"[nr-lightning] skipping batch: {msg}")
                if self._world_size() == 1:
                    return None
                # Lightning refuses None under DDP; a zero loss tied to every trainable weight gives zero
                # gradients on all ranks and keeps DDP's gradient all-reduce in step
                params = [p for p in self.model.parameters() if p.requires_grad]
                return torch.stack([p.sum() for p in params]).sum() * 0.0
            saved = self._save_last_good("nonfinite")
            raise NonFiniteLossError(f"{msg} Lower method.lr, or set trainer.nan_policy=skip to skip such batches. "
                                     f"{saved}")
        self.last_loss = loss.detach()
        n_tokens = ids.numel()
        now = time.perf_counter()
        bs = ids.shape[0]
        self.log("train/loss", loss, prog_bar=False, batch_size=bs)
        self.log("train/lm_loss", lm, prog_bar=True, batch_size=bs)
        self.log("train/sparsity", local["sparsity"], batch_size=bs)
        self.log("train/gate_bce", local["gate_bce"], batch_size=bs)
        for name, value in extra.items():
            self.log(f"train/{name}", value, batch_size=bs)
        self.log("train/english_fraction", (domain == 0).float().mean(), batch_size=bs)
        if self._t_last is not None:
            tok_s = n_tokens * self.trainer.world_size / max(now - self._t_last, 1e-9)
            self.log("train/tokens_per_s", tok_s, prog_bar=True, batch_size=bs)
            if self._peak_flops:  # nr_lightning.training.throughput: GPUs with a known peak only
                from .throughput import mfu

                self.log("train/mfu", mfu(tok_s / self.trainer.world_size, self._flops_per_token, self._peak_flops),
                         batch_size=bs)
        self._t_last = now
        self.log("train/tokens_seen", float((self.global_step + 1) * n_tokens * self.trainer.world_size
                                            * self.trainer.accumulate_grad_batches), batch_size=bs)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log("train/lr", optimizer.param_groups[0]["lr"])
        # A finite loss can still give inf/NaN gradients (overflow in backward); one such update poisons every
        # weight, so it is caught here, before clipping and the optimizer step, while the weights are still good.
        if self.cfg.trainer.precision.startswith("16"):
            return  # fp16: the GradScaler expects and skips inf gradients itself
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None and p.grad.numel()]
        bad = bool(grads) and not bool(torch.isfinite(torch.stack([g.detach().float().abs().amax() for g in grads]))
                                       .all())
        if self._world_size() > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        msg = f"non-finite gradients at step {self.global_step} (finite loss)."
        if self.cfg.trainer.nan_policy == "skip":
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = None  # AdamW skips parameters without gradients
            self._skipped_batches += 1
            self.print(f"[nr-lightning] skipping update: {msg}")
            return
        saved = self._save_last_good("nonfinite-grad")
        raise NonFiniteLossError(f"{msg} Lower method.lr, or set trainer.nan_policy=skip. {saved}")

    # ------------------------------------------------------------------ NaN guard helpers
    def _world_size(self) -> int:
        trainer = self._trainer
        return int(trainer.world_size) if trainer is not None else 1

    def _batch_source(self, batch: dict, batch_idx: int) -> str:
        """Global stream positions and source files of this rank's micro-batch (to find the offending data)."""
        try:
            t = self.trainer
            dm = t.datamodule
            W, r, B = int(t.world_size), int(t.global_rank), int(batch["input_ids"].shape[0])
            start = dm.sequences_consumed() + (batch_idx % int(t.accumulate_grad_batches)) * B * W
            seqs = [start + j * W + r for j in range(B)]
            files = sorted({dm.train_source(self.languages[i]) for i in batch["lang"].tolist()})
            return f"rank {r}, global sequences {seqs}, sources {files}"
        except Exception:  # noqa: BLE001 - diagnostics only
            return "source unknown"

    def _save_last_good(self, tag: str) -> str:
        """Checkpoint the current (last good) state before the guard stops the run; returns a sentence for the
        error. The optimizer has not applied the bad step, so weights, optimizer and data position are the
        state at the start of the failing step: resuming it with nan_policy=skip or a lower lr is exact."""
        t = self.trainer
        weights_ok = all(bool(torch.isfinite(p).all()) for p in self.model.parameters() if p.requires_grad)
        if self._world_size() > 1:
            weights_ok = t.strategy.reduce_boolean_decision(weights_ok, all=True)
        if not weights_ok:
            return "The weights are already non-finite: no checkpoint written; resume from the run's checkpoints/."
        cb = t.checkpoint_callback
        folder = Path(cb.dirpath) if cb is not None and getattr(cb, "dirpath", None) else \
            Path(t.default_root_dir) / "checkpoints"
        path = folder / f"{tag}-step{self.global_step:06d}.ckpt"
        t.save_checkpoint(path)
        return f"Last good state saved to {path} (ckpt_path=last resumes from it)."

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

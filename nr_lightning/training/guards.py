"""The NaN/inf guard and the throughput log of a training run, as Lightning callbacks beside the loss step.

``NonFiniteGuard``: a non-finite loss (checked by the step, before backward) or non-finite gradients (checked
here, before clipping and the optimizer step) either stop the run with a checkpoint of the last good state
(``trainer.nan_policy=stop``) or skip the batch (``skip``). ``Throughput``: tokens/s, MFU (GPUs with a known
peak, nr_lightning/training/throughput.py) and tokens seen, at every batch.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

__all__ = ["NonFiniteGuard", "NonFiniteLossError", "Throughput"]


class NonFiniteLossError(FloatingPointError):
    """Raised by the NaN/inf guard with the step and the batch's languages in the message."""


def _world_size(module: L.LightningModule) -> int:
    trainer = module._trainer
    return int(trainer.world_size) if trainer is not None else 1


class NonFiniteGuard(L.Callback):
    """Stops (or skips) on a non-finite loss or non-finite gradients; every rank takes the same branch."""

    def __init__(self, nan_policy: str = "stop", fp16: bool = False) -> None:
        self.nan_policy, self.fp16 = nan_policy, fp16
        self.skipped = 0

    # ---------------------------------------------------------------- the loss (called by training_step)
    def check_loss(self, module: L.LightningModule, batch: dict, batch_idx: int, loss: torch.Tensor,
                   lm: torch.Tensor, local: dict) -> tuple[bool, torch.Tensor | None]:
        """(skip, what training_step returns instead) for a non-finite loss; raises under nan_policy=stop."""
        bad = not bool(torch.isfinite(loss))
        if _world_size(module) > 1:  # every rank must take the same branch, or DDP hangs in the next collective
            bad = module.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return False, None
        languages = getattr(module, "languages", [])
        langs = sorted({languages[i] if i < len(languages) else str(i)
                        for i in batch.get("lang", batch["domain"]).tolist()})
        msg = (f"non-finite loss {loss.item()} at step {module.global_step} (batch {batch_idx}, "
               f"{'this rank: ' if bool(torch.isfinite(loss)) else ''}languages {langs}, "
               f"{_batch_source(module, batch, batch_idx)}, lm={lm.item():.4g} "
               f"sparsity={local['sparsity'].item():.4g} gate_bce={local['gate_bce'].item():.4g}).")
        if self.nan_policy == "skip" and not _weights_diverged(module):
            self.skipped += 1
            module.log("train/skipped_batches", float(self.skipped))
            module.print(f"[nr-lightning] skipping batch: {msg}")
            if _world_size(module) == 1:
                return True, None
            # Lightning refuses None under DDP; a zero loss tied to every trainable weight gives zero
            # gradients on all ranks and keeps DDP's gradient all-reduce in step
            params = [p for p in module.model.parameters() if p.requires_grad]
            return True, torch.stack([p.sum() for p in params]).sum() * 0.0
        saved = _save_last_good(module, "nonfinite")
        if self.nan_policy == "skip":  # every later batch would be skipped too: stop instead
            raise NonFiniteLossError(f"{msg} The trainable weights are non-finite (the run diverged): skipping "
                                     f"batches cannot recover; start again with a lower method.lr. {saved}")
        raise NonFiniteLossError(f"{msg} Resume with trainer.nan_policy=skip to skip such batches, or start "
                                 f"again with a lower method.lr. {saved}")

    # ---------------------------------------------------------------- the gradients
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        # A finite loss can still give inf/NaN gradients (overflow in backward); one such update poisons every
        # weight, so it is caught here, before clipping and the optimizer step, while the weights are still good.
        if self.fp16:
            return  # fp16: the GradScaler expects and skips inf gradients itself
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None and p.grad.numel()]
        bad = bool(grads) and not bool(torch.isfinite(torch.stack([g.detach().float().abs().amax() for g in grads]))
                                       .all())
        if _world_size(pl_module) > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        msg = f"non-finite gradients at step {pl_module.global_step} (finite loss)."
        if self.nan_policy == "skip":
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = None  # AdamW skips parameters without gradients
            self.skipped += 1
            pl_module.print(f"[nr-lightning] skipping update: {msg}")
            return
        saved = _save_last_good(pl_module, "nonfinite-grad")
        raise NonFiniteLossError(f"{msg} Resume with trainer.nan_policy=skip, or start again with a lower "
                                 f"method.lr. {saved}")


def _weights_diverged(module: L.LightningModule) -> bool:
    """True when a trainable weight is already non-finite (on any rank)."""
    bad = not all(bool(torch.isfinite(p).all()) for p in module.model.parameters() if p.requires_grad)
    if _world_size(module) > 1:
        bad = module.trainer.strategy.reduce_boolean_decision(bad, all=False)
    return bad


def _batch_source(module: L.LightningModule, batch: dict, batch_idx: int) -> str:
    """Global stream positions and source files of this rank's micro-batch (to find the offending data)."""
    try:
        t = module.trainer
        dm = t.datamodule
        W, r, B = int(t.world_size), int(t.global_rank), int(batch["input_ids"].shape[0])
        start = dm.sequences_consumed() + (batch_idx % int(t.accumulate_grad_batches)) * B * W
        seqs = [start + j * W + r for j in range(B)]
        files = sorted({dm.train_source(module.languages[i]) for i in batch["lang"].tolist()})
        return f"rank {r}, global sequences {seqs}, sources {files}"
    except Exception:  # noqa: BLE001 - diagnostics only
        return "source unknown"


def _save_last_good(module: L.LightningModule, tag: str) -> str:
    """Checkpoint the current (last good) state before the guard stops the run; returns a sentence for the
    error. The optimizer has not applied the bad step, so weights, optimizer and data position are the
    state at the start of the failing step: resuming it with nan_policy=skip or a lower lr is exact."""
    t = module.trainer
    weights_ok = all(bool(torch.isfinite(p).all()) for p in module.model.parameters() if p.requires_grad)
    if _world_size(module) > 1:
        weights_ok = t.strategy.reduce_boolean_decision(weights_ok, all=True)
    if not weights_ok:
        return "The weights are already non-finite: no checkpoint written; resume from the run's checkpoints/."
    cb = t.checkpoint_callback
    folder = Path(cb.dirpath) if cb is not None and getattr(cb, "dirpath", None) else \
        Path(t.default_root_dir) / "checkpoints"
    path = folder / f"{tag}-step{module.global_step:06d}.ckpt"
    t.save_checkpoint(path, weights_only=False)  # full state: resuming from it is exact
    return f"Last good state saved to {path} (ckpt_path=last resumes from it)."


class Throughput(L.Callback):
    """Logs train/tokens_per_s (between the starts of consecutive batches), train/mfu where the peak is known,
    and train/tokens_seen (counted at the start of a batch: the global step of the training step it precedes)."""

    def __init__(self, seq_len: int, precision: str) -> None:
        self.seq_len, self.precision = seq_len, precision
        self._t_last: float | None = None
        self._flops_per_token, self._peak_flops = 0.0, None

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` spent outside training (held-out evaluation, gate statistics) out of tokens_per_s."""
        if self._t_last is not None:
            self._t_last += seconds

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from .throughput import peak_flops, train_flops_per_token

        self._flops_per_token = train_flops_per_token(pl_module.model, self.seq_len)
        self._peak_flops = peak_flops(pl_module.device, self.precision)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        ids = batch["input_ids"]
        n_tokens, bs, now = ids.numel(), ids.shape[0], time.perf_counter()
        if self._t_last is not None:
            tok_s = n_tokens * trainer.world_size / max(now - self._t_last, 1e-9)
            pl_module.log("train/tokens_per_s", tok_s, prog_bar=True, batch_size=bs)
            if self._peak_flops:
                from .throughput import mfu

                pl_module.log("train/mfu", mfu(tok_s / trainer.world_size, self._flops_per_token, self._peak_flops),
                              batch_size=bs)
        self._t_last = now
        pl_module.log("train/tokens_seen", float((pl_module.global_step + 1) * n_tokens * trainer.world_size
                                                 * trainer.accumulate_grad_batches), batch_size=bs)

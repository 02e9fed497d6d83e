"""O-LoRA: sequential LoRA stages kept (approximately) in orthogonal subspaces.

    penalty = lambda * sum_{earlier stages j} sum_{LoRA modules m} sum_{a,b} |(A_new^m A_j^m^T)_{ab}|

A^m is the (rank x d_in) down-projection of LoRA module m (one per FFN projection per layer). Earlier
stages' A matrices are constants (their LoRAs were merged into the backbone after their stage). The
paper (Wang et al. 2023) finds a small lambda works best. `OLoRAPenalty` is the `extra_loss` callable the
ExtensionModule adds to the training loss (`model.nrl_extra_loss`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["OLoRAPenalty", "lora_a_matrices", "module_key", "olora_penalty"]

_SUFFIX = re.compile(r"\.lora_A(\.[^.]+)?\.weight$")


def module_key(name: str) -> str:
    """Normalise a LoRA-A parameter / state-dict name to the target module's path inside the base model.

    `base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight` and the saved form
    `base_model.model.model.layers.0.mlp.up_proj.lora_A.weight` both give `model.layers.0.mlp.up_proj`.
    """
    name = _SUFFIX.sub("", name)
    return name.removeprefix("base_model.model.")


def lora_a_matrices(source: nn.Module | Mapping[str, torch.Tensor], detach: bool = True) -> dict[str, torch.Tensor]:
    """Module path -> LoRA A matrix (rank x d_in), from a PEFT model or a saved LoRA state dict."""
    items = source.named_parameters() if isinstance(source, nn.Module) else source.items()
    out = {}
    for n, t in items:
        if _SUFFIX.search(n):
            out[module_key(n)] = t.detach() if detach else t
    return out


def olora_penalty(new: Mapping[str, torch.Tensor], previous: list[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """sum_j sum_m sum |A_new^m A_j^m^T| (no lambda). Modules missing from an earlier stage are skipped."""
    terms = []
    for prev in previous:
        for key, a_new in new.items():
            a_prev = prev.get(key)
            if a_prev is None:
                continue
            a_prev = a_prev.to(device=a_new.device, dtype=a_new.dtype)
            terms.append((a_new @ a_prev.T).abs().sum())
    if not terms:
        ref = next(iter(new.values()), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return torch.stack(terms).sum()


class OLoRAPenalty:
    """`extra_loss` hook: {"olora": lambda * penalty} for the model's current (trainable) LoRA."""

    def __init__(self, previous: list[Mapping[str, torch.Tensor]], lam: float) -> None:
        self.previous = [{k: v.detach().clone() for k, v in p.items()} for p in previous]
        self.lam = float(lam)

    def __call__(self, model: nn.Module) -> dict[str, torch.Tensor]:
        current = {k: v for k, v in lora_a_matrices(model, detach=False).items()}
        current = {k: v for k, v in current.items() if v.requires_grad} or current
        return {"olora": self.lam * olora_penalty(current, self.previous)}

"""Neutral residues (the paper's method): ELU-gated residual adapters, low-variance init, and a sparsity loss
that keeps their output near zero on English (method.alpha)."""

from __future__ import annotations

from ..registry import METHOD_DEFAULTS
from .adapters import Adapters


class Neutral(Adapters):
    name = "neutral"
    default_gate = METHOD_DEFAULTS["neutral"]["gate"]
    default_init = METHOD_DEFAULTS["neutral"]["init"]
    sparsity_loss = True
    plot_style = ("o", "tab:green")
    hub_tags = ("neutral-residues",)

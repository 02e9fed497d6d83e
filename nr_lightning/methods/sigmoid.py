"""Residual adapters with a sigmoid block gate trained as a language classifier (gate BCE, method.beta)."""

from __future__ import annotations

from ..registry import METHOD_DEFAULTS
from .adapters import Adapters


class Sigmoid(Adapters):
    name = "sigmoid"
    default_gate = METHOD_DEFAULTS["sigmoid"]["gate"]
    default_init = METHOD_DEFAULTS["sigmoid"]["init"]
    plot_style = ("v", "tab:purple")

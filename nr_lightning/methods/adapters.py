"""Residual adapters in every FFN block (paper Sec. 3): vanilla adapters, ungated with He init. The gated
variants (sigmoid.py, neutral.py) change only their defaults."""

from __future__ import annotations

from typing import Any

from ..registry import METHOD_DEFAULTS
from .base import Method


class Adapters(Method):
    name = "adapters"
    adapter = True
    stackable = True
    default_gate = METHOD_DEFAULTS["adapters"]["gate"]
    default_init = METHOD_DEFAULTS["adapters"]["init"]
    memory_row = "neutral"  # same shapes as neutral residues (its block gate is d+1 weights per layer)
    plot_style = ("D", "tab:blue")

    @staticmethod
    def apply(backbone: Any, cfg: Any, ffns: list, *, width: int | None, rank: int | None,
              init_divisor: float | None) -> Any:
        from ..extension.adapter import ResidualAdapter, adapter_hook
        from ..extension.api import solve_width

        n_layers, d = len(ffns), ffns[0].d_model
        cfg.width = width or solve_width(cfg.budget, cfg.backbone["non_embedding_params"], n_layers, d,
                                         gated=cfg.gate != "none")
        cfg.init_divisor = float(n_layers) if init_divisor is None else float(init_divisor)
        for p in backbone.parameters():
            p.requires_grad_(False)
        ref = next(backbone.parameters())
        for info in ffns:
            adapter = ResidualAdapter(d, cfg.width, info.activation, cfg.gate, cfg.init, cfg.init_divisor,
                                      cfg.placement, gate_init=cfg.gate_init)
            info.module.nrl_adapter = adapter.to(device=ref.device, dtype=ref.dtype)
            info.module.nrl_hook = info.module.register_forward_hook(adapter_hook)
        return backbone

    @staticmethod
    def weights(model: Any) -> dict:
        from ..extension.arch import _base_model

        return {n: p for n, p in _base_model(model).state_dict().items() if ".nrl_adapter." in n}

    @staticmethod
    def extension_count(model: Any) -> int:
        from ..extension.arch import _base_model

        return sum(p.numel() for n, p in _base_model(model).named_parameters() if ".nrl_adapter." in n)

    @staticmethod
    def load_weights(model: Any, tensors: dict, source: Any) -> None:
        from ..extension.arch import _base_model

        missing, unexpected = _base_model(model).load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"{source} holds keys the model lacks: {unexpected[:5]}")
        missing_ext = [k for k in missing if ".nrl_adapter." in k]
        if missing_ext:
            raise ValueError(f"{source} lacks adapter weights: {missing_ext[:5]}")

    @staticmethod
    def hf_representable(model: Any, cfg: Any) -> str | None:
        # ungated parallel adapters fold into wider FFNs (export.widen_ffns); gated or serial ones export as a
        # HF directory with the modelling file (docs/export.md)
        from ..extension.api import adapters

        if any(a.block_gate is not None for a in adapters(model)):
            return f"method {cfg.method!r} has a per-token block gate (gate={cfg.gate}), which no stock FFN or PEFT has"
        if cfg.placement != "parallel":
            return f"placement={cfg.placement!r} adapters read the FFN's output, so they cannot be folded into the FFN"
        return None

    @staticmethod
    def to_hf(model: Any) -> Any:
        from ..extension.export import widen_ffns

        return widen_ffns(model)

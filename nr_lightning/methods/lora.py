"""LoRA on the FFN projections, through PEFT (the rank solved from the budget)."""

from __future__ import annotations

from typing import Any

from .base import Method


class LoRA(Method):
    name = "lora"
    stackable = True
    orthogonal_stages = True
    memory_row = "lora"
    plot_style = ("^", "tab:orange")

    @staticmethod
    def apply(backbone: Any, cfg: Any, ffns: list, *, width: int | None, rank: int | None,
              init_divisor: float | None) -> Any:
        from peft import LoraConfig, get_peft_model

        from ..extension.api import solve_rank
        from ..extension.arch import FFN_PROJECTIONS

        info = cfg.backbone  # filled by extend()
        cfg.rank = rank or solve_rank(cfg.budget, info["non_embedding_params"], info["layers"], info["d_model"],
                                      info["d_ffn"])
        lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha_ratio * cfg.rank, lora_dropout=0.0, bias="none",
                          target_modules=list(FFN_PROJECTIONS), init_lora_weights=True)
        return get_peft_model(backbone, lcfg)  # freezes the base model, B = 0

    @staticmethod
    def weights(model: Any) -> dict:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)

    @staticmethod
    def extension_count(model: Any) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)

    @staticmethod
    def load_weights(model: Any, tensors: dict, source: Any) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, tensors)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"{source} holds keys the LoRA model lacks: {unexpected[:5]}")

    @staticmethod
    def export_format(cfg: Any) -> str:
        return "peft"

    @staticmethod
    def to_hf(model: Any) -> Any:
        return model.merge_and_unload()

    @staticmethod
    def task_vector(tensors: dict, meta: dict, state: dict) -> dict | None:
        from ..extension.merging import lora_deltas

        return lora_deltas(tensors, float(meta.get("lora_alpha_ratio", 2.0)))

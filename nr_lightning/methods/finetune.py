"""Full finetuning: every backbone weight trains; the "extension" is the whole backbone."""

from __future__ import annotations

from typing import Any

from .base import Method


class FineTune(Method):
    name = "finetune"
    trains_backbone = True
    memory_row = "finetune"
    plot_style = ("s", "tab:red")

    @staticmethod
    def apply(backbone: Any, cfg: Any, ffns: list, *, width: int | None, rank: int | None,
              init_divisor: float | None) -> Any:
        cfg.budget = None
        for p in backbone.parameters():
            p.requires_grad_(True)
        return backbone

    @staticmethod
    def weights(model: Any) -> dict:
        from ..extension.arch import _base_model

        return dict(_base_model(model).state_dict().items())

    @staticmethod
    def extension_count(model: Any) -> int:
        return 0

    @staticmethod
    def budget_numerator(extension: int, trainable: int) -> int:
        return trainable

    @staticmethod
    def dedupe(tensors: dict) -> dict:
        seen: dict[int, str] = {}  # tied weights (lm_head = embeddings): keep one copy of each storage
        return {n: t for n, t in tensors.items() if seen.setdefault(t.untyped_storage().data_ptr(), n) == n}

    @staticmethod
    def load_weights(model: Any, tensors: dict, source: Any) -> None:
        from ..extension.arch import _base_model

        base = _base_model(model)
        missing, unexpected = base.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"{source} holds keys the model lacks: {unexpected[:5]}")
        if missing:  # only tied copies (e.g. lm_head tied to the embeddings) may be absent
            state = base.state_dict()
            loaded = {state[k].data_ptr() for k in tensors}
            untied = [k for k in missing if state[k].data_ptr() not in loaded]
            if untied:
                raise ValueError(f"{source} lacks backbone weights: {untied[:5]}")

    @staticmethod
    def checkpoint_keys(module: Any) -> set[str]:
        return set()

    @staticmethod
    def export_format(cfg: Any) -> str:
        return "hf"

    @staticmethod
    def to_hf(model: Any) -> Any:
        del model.nrl_config
        return model

    @staticmethod
    def task_vector(tensors: dict, meta: dict, state: dict) -> dict | None:
        return {n: t.float() - state[n].float() for n, t in tensors.items() if n in state}

"""Run any of our models inside lm-evaluation-harness (optional dependency ``lm_eval``).

lm-eval's ``HFLM`` accepts an instantiated model, but reads ``model.config``, ``model.device``,
calls ``model.tie_weights()`` and ``model(input_ids).logits`` (input ids positional). HF models have
all of these; our extended models are plain ``nn.Module`` wrappers, so :class:`HFLMCompatible`
supplies the missing pieces without copying weights.
"""

from __future__ import annotations

from typing import Any

import torch


def _find_config(model: torch.nn.Module):
    config = getattr(model, "config", None)
    if config is not None:
        return config
    for module in model.modules():  # the wrapped HF backbone
        if module is not model and getattr(module, "config", None) is not None:
            return module.config
    raise AttributeError("no .config found on the model or any submodule; pass config= explicitly")


class HFLMCompatible(torch.nn.Module):
    """Thin view of ``model`` with the attributes lm-eval's HFLM expects (shares the parameters)."""

    def __init__(self, model: torch.nn.Module, config: Any = None):
        super().__init__()
        self.model = model
        self.config = config if config is not None else _find_config(model)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def tie_weights(self) -> None:
        """HFLM calls this on load; the wrapped model's weights are already as trained."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def make_hflm(model: torch.nn.Module, tokenizer, **hflm_kwargs: Any):
    """An ``lm_eval`` HFLM around ``model`` (HF model or our wrapper); kwargs go to HFLM
    (``batch_size``, ``max_length``, ...). Needs ``pip install lm_eval``."""
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        model = HFLMCompatible(model)
        hflm_kwargs.setdefault("backend", "causal")
    return HFLM(pretrained=model, tokenizer=tokenizer, **hflm_kwargs)

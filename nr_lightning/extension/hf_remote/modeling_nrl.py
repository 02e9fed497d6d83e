"""Gated residual adapters (neutral residues, sigmoid, stacked stages) on a stock transformers model.

Written next to the weights by nr-lightning's export and loaded with transformers alone:

    AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)

The backbone is the stock class of its family (BASE_MODEL_TYPE); every FFN gets the adapters of
`config.nrl_stages` (oldest first; the newest is `mlp.nrl_adapter`, earlier ones `mlp.nrl_stages`) through a
forward hook, so the backbone's parameter names and code stay the stock ones:

    A(x) = W_out(act(W_gate x) * W_in x),  phi = gate function of w_b . x + b (none: 1)
    out  = F(x) + sum_k phi_k(x_k) A_k(x_k),   x_k = x (parallel) or F(x) (serial)

weighted per token by a softmax router (`mlp.nrl_router`) when `config.nrl_router` is true.
This file is self-contained (torch + transformers): nr-lightning need not be installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

BASE_MODEL_TYPE = "llama"  # the backbone family's model_type (the export writes the backbone's own)

_BaseConfig = CONFIG_MAPPING[BASE_MODEL_TYPE]
_BaseForCausalLM = MODEL_FOR_CAUSAL_LM_MAPPING[_BaseConfig]
_GATE_FNS = {"elu": F.elu, "relu": F.relu, "sigmoid": torch.sigmoid}


class NRLConfig(_BaseConfig):
    """The backbone family's config plus `nrl_stages` (one dict per adapter stage) and `nrl_router`."""

    # A model_type of its own: loading without trust_remote_code fails instead of silently dropping the adapters.
    model_type = f"nrl_{BASE_MODEL_TYPE}"


class ResidualAdapter(nn.Module):
    """One stage's adapter on one FFN (same parameter names as nr-lightning's)."""

    def __init__(self, d_model: int, width: int, activation: str, gate: str, placement: str) -> None:
        super().__init__()
        self.gate, self.placement = gate, placement
        self.w_gate = nn.Linear(d_model, width, bias=False)
        self.w_in = nn.Linear(d_model, width, bias=False)
        self.w_out = nn.Linear(width, d_model, bias=False)
        self.act = ACT2FN[activation]
        self.block_gate = nn.Linear(d_model, 1, bias=True) if gate != "none" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.w_out(self.act(self.w_gate(x)) * self.w_in(x))
        if self.block_gate is None:
            return residual
        return _GATE_FNS[self.gate](self.block_gate(x).squeeze(-1)).unsqueeze(-1) * residual


class StageRouter(nn.Module):
    """Per-token softmax over the stages of one FFN."""

    def __init__(self, d_model: int, n_stages: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, n_stages, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.proj(x).float(), dim=-1).to(x.dtype)


def _adapter_hook(mlp: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    stages = [*(mlp._modules.get("nrl_stages") or []), mlp.nrl_adapter]
    router = mlp._modules.get("nrl_router")
    weights = router(args[0]) if router is not None else None
    out = output
    for k, a in enumerate(stages):
        r = a(args[0] if a.placement == "parallel" else output)
        out = out + (r if weights is None else weights[..., k:k + 1] * r)
    return out


class NRLForCausalLM(_BaseForCausalLM):
    """The backbone family's causal LM with nr-lightning's gated adapters on every FFN."""

    config_class = NRLConfig

    def __init__(self, config: NRLConfig) -> None:
        super().__init__(config)
        act = getattr(config, "hidden_activation", None) or config.hidden_act
        for layer in self.get_decoder().layers:
            mlp = layer.mlp
            made = [ResidualAdapter(config.hidden_size, s["width"], s.get("activation") or act, s["gate"],
                                    s["placement"]) for s in config.nrl_stages]
            if len(made) > 1:
                mlp.nrl_stages = nn.ModuleList(made[:-1])
            mlp.nrl_adapter = made[-1]
            if getattr(config, "nrl_router", False):
                mlp.nrl_router = StageRouter(config.hidden_size, len(made))
            mlp.register_forward_hook(_adapter_hook)
        self.post_init()

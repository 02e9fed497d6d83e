"""The gated residual adapter: the one piece of the method no library provides.

    A(x)  = W_out( act(W_gate x) * (W_in x) )         same form as the backbone's gated FFN
    g(x)  = w_b . x + b                               one scalar per token (the block gate)
    out   = F(x) + phi(g(x)) * A(x)                   parallel placement (default)
    out   = F(x) + phi(g(y)) * A(y),  y = F(x)        serial placement

W_out starts at zero, so the extended model is bit-identical to the backbone at step 0. The
adapter caches, per token, the gate logit and the L1 norm of its residual divided by d: the
local losses (sparsity, gate classifier) read them after the forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from ..registry import GATE_INITS, GATES, INITS, PLACEMENTS  # noqa: F401  (re-exported by nr_lightning.extension)

_GATE_FNS = {"elu": F.elu, "relu": F.relu, "sigmoid": torch.sigmoid}


class ResidualAdapter(nn.Module):
    """Gated-FFN adapter with an optional per-token block gate."""

    def __init__(self, d_model: int, width: int, activation: str = "silu", gate: str = "elu",
                 init: str = "low_variance", init_divisor: float = 1.0, placement: str = "parallel",
                 gate_init: str = "he") -> None:
        super().__init__()
        self.d_model, self.width, self.gate, self.placement = d_model, width, gate, placement
        self.activation = activation
        self.w_gate = nn.Linear(d_model, width, bias=False)
        self.w_in = nn.Linear(d_model, width, bias=False)
        self.w_out = nn.Linear(width, d_model, bias=False)
        self.act = ACT2FN[activation]
        self.block_gate = nn.Linear(d_model, 1, bias=True) if gate != "none" else None
        self.gate_init = gate_init
        self.reset_parameters(init, init_divisor, gate_init)
        # Per-token caches filled by forward(), read by local_losses() and the gate-statistics callback.
        self.last_gate_logits: torch.Tensor | None = None
        self.last_residual_l1: torch.Tensor | None = None

    @torch.no_grad()
    def reset_parameters(self, init: str = "low_variance", init_divisor: float = 1.0, gate_init: str = "he") -> None:
        """W_gate, W_in: He (var 2/d) or low_variance (var 1/(d*divisor), divisor = number of layers by default,
        paper Sec. 3). Block gate w_b: `gate_init`, the same two variances. W_out = 0, gate bias = 0."""
        def std(kind: str) -> float:
            return math.sqrt(2.0 / self.d_model if kind == "he" else 1.0 / (self.d_model * init_divisor))

        # Same draws in the same order whatever the options: gate_init changes w_b and nothing else.
        self.w_gate.weight.normal_(0.0, std(init))
        self.w_in.weight.normal_(0.0, std(init))
        if self.block_gate is not None:
            self.block_gate.weight.normal_(0.0, std(gate_init))
            self.block_gate.bias.zero_()
        self.w_out.weight.zero_()

    def gate_values(self, x: torch.Tensor) -> torch.Tensor | None:
        """phi(g(x)) per token (None without a gate)."""
        if self.block_gate is None:
            return None
        return _GATE_FNS[self.gate](self.block_gate(x).squeeze(-1))

    def gate_values_from_cache(self) -> torch.Tensor | None:
        """phi(g(x)) of the last forward pass, per token."""
        if self.last_gate_logits is None:
            return None
        return _GATE_FNS[self.gate](self.last_gate_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.w_out(self.act(self.w_gate(x)) * self.w_in(x))
        # |phi(g) * r|_1 = |phi(g)| * |r|_1: taking the norm of the ungated residual keeps no extra
        # activation for the backward (r is saved by the gating product anyway)
        l1 = residual.abs().mean(-1)
        if self.block_gate is not None:
            logits = self.block_gate(x).squeeze(-1)
            self.last_gate_logits = logits
            gate = _GATE_FNS[self.gate](logits)
            residual = gate.unsqueeze(-1) * residual
            l1 = gate.abs() * l1
        self.last_residual_l1 = l1
        return residual

    def extra_repr(self) -> str:
        return (f"gate={self.gate}, gate_init={self.gate_init}, placement={self.placement}, "
                f"activation={self.activation}")


def adapter_hook(mlp: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the backbone FFN: add the adapter's residual to the FFN output.

    A hook (rather than a wrapper module) keeps every backbone parameter name unchanged, so HF
    checkpoints, PEFT target names and Lightning checkpoints still line up.

    Stacked stages (nr_lightning.extension.stack): the frozen earlier stages live in the ModuleList
    `mlp.nrl_stages` and the newest in `mlp.nrl_adapter`; their residuals are added in stage order,
    out = F(x) + A_0(x) + ... + A_k(x), or weighted per token by a router `mlp.nrl_router` if present.
    """
    adapter: ResidualAdapter = mlp.nrl_adapter
    earlier = mlp._modules.get("nrl_stages")
    if earlier is None:  # single stage: the original, exact code path
        x = args[0] if adapter.placement == "parallel" else output
        return output + adapter(x)
    router = mlp._modules.get("nrl_router")
    weights = router(args[0]) if router is not None else None  # (..., n_stages)
    out = output
    for k, a in enumerate([*earlier, adapter]):
        r = a(args[0] if a.placement == "parallel" else output)
        out = out + (r if weights is None else weights[..., k:k + 1] * r)
    return out

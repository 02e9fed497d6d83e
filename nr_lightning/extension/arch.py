"""Where the FFN lives in each supported architecture: the single place to add a new family.

Every family we support uses the same gated FFN, `down(act(gate(x)) * up(x))`, with the three
projections named `gate_proj`, `up_proj`, `down_proj`. What differs is the activation
(SiLU for Llama/Mistral/Qwen2, tanh-GELU for Gemma) and the config field that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..registry import SUPPORTED_FFNS  # FFN class name -> family; adding an architecture = one line there

FFN_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FFNInfo:
    """The FFN of one decoder layer."""

    layer: int
    name: str  # qualified module name inside the model, e.g. "model.layers.3.mlp"
    module: nn.Module
    d_model: int
    d_ffn: int
    activation: str  # transformers ACT2FN key, e.g. "silu", "gelu_pytorch_tanh"


def _base_model(model: nn.Module) -> nn.Module:
    """Unwrap a PEFT model to the underlying transformers model."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _linear(module: nn.Module | None) -> nn.Module | None:
    """The plain nn.Linear of a projection, looking through a PEFT LoRA wrapper."""
    return getattr(module, "base_layer", module)


def activation_name(config) -> str:
    """The backbone's FFN activation: the adapter follows it (SiLU for Llama, GELU for Gemma)."""
    for key in ("hidden_activation", "hidden_act"):
        act = getattr(config, key, None)
        if act:
            return act
    raise ValueError(f"cannot tell the FFN activation of {type(config).__name__}: no hidden_act/hidden_activation")


def find_ffns(model: nn.Module) -> list[FFNInfo]:
    """Return the FFN of every decoder layer, or raise naming the unsupported class."""
    base = _base_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else getattr(base, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"unsupported model class {type(base).__name__}: no decoder `layers` found; supported FFN "
                         f"classes: {', '.join(SUPPORTED_FFNS)}")
    config = base.config
    act = activation_name(config)
    infos = []
    module_names = {id(m): n for n, m in base.named_modules()}
    for i, layer in enumerate(layers):
        mlp = getattr(layer, "mlp", None)
        cls = type(mlp).__name__
        if mlp is None or cls not in SUPPORTED_FFNS:
            raise ValueError(f"unsupported FFN class {cls} in {type(base).__name__} layer {i}; supported: "
                             f"{', '.join(SUPPORTED_FFNS)}. Add the class to SUPPORTED_FFNS in "
                             f"nr_lightning/registry.py if its FFN has gate_proj/up_proj/down_proj.")
        if not all(isinstance(_linear(getattr(mlp, p, None)), nn.Linear) for p in FFN_PROJECTIONS):
            raise ValueError(f"{cls} in layer {i} lacks nn.Linear {FFN_PROJECTIONS}; cannot extend it")
        gate = _linear(mlp.gate_proj)
        infos.append(FFNInfo(layer=i, name=module_names[id(mlp)], module=mlp, d_model=gate.in_features,
                             d_ffn=gate.out_features, activation=act))
    return infos


def embedding_parameters(model: nn.Module) -> set[int]:
    """ids of the input embedding and (untied) output head parameters: excluded from the budget denominator."""
    base = _base_model(model)
    ids = {id(p) for p in base.get_input_embeddings().parameters()}
    head = base.get_output_embeddings()
    if head is not None:
        ids |= {id(p) for p in head.parameters()}
    return ids

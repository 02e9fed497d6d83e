"""The one registry of names: extension methods, gates, inits, placements, supported model families,
sequence strategies and merges. Config validation, the extension API, the memory planner, the sequence runner and
evaluation all import these tuples, so adding a name is one edit here (plus its implementation)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .methods.base import Method

# Extension methods (paper §3-4): full finetuning, LoRA, and the three residual-adapter variants. Each is one
# class in nr_lightning/methods/<name>.py; adding a method is that file and one line here (plus its YAML in
# experiments/method/). Named by string and imported on first use: the registry stays torch-free and below
# every module that asks it.
METHOD_CLASSES: dict[str, str] = {
    "finetune": "nr_lightning.methods.finetune:FineTune",
    "lora": "nr_lightning.methods.lora:LoRA",
    "adapters": "nr_lightning.methods.adapters:Adapters",
    "sigmoid": "nr_lightning.methods.sigmoid:Sigmoid",
    "neutral": "nr_lightning.methods.neutral:Neutral",
}
METHODS = tuple(METHOD_CLASSES)
DEFAULT_METHOD = "neutral"
ADAPTER_METHODS = ("adapters", "sigmoid", "neutral")  # a gated residual adapter in every FFN block
# Each adapter method's gate and init when the config leaves them None (its alpha/beta/lr: experiments/method/).
METHOD_DEFAULTS: dict[str, dict[str, str]] = {
    "adapters": {"gate": "none", "init": "he"},
    "sigmoid": {"gate": "sigmoid", "init": "low_variance"},
    "neutral": {"gate": "elu", "init": "low_variance"},
}
GATES = ("elu", "relu", "sigmoid", "none")  # the adapter's block gate (neutral: elu, sigmoid: sigmoid)
INITS = ("low_variance", "he")  # the adapter's init (neutral residues: low variance)
PLACEMENTS = ("parallel", "serial")  # the adapter beside or after the FFN
# The block gate w_b's own init (docs/method.md): he = the standard init the paper departs from only for W_in and
# W_gate (Sec. 3), the default; low_variance = the adapter's low variance (the behaviour before the option).
GATE_INITS = ("he", "low_variance")
# How English is mixed into batches (docs/data.md): random draws at rate p, or exactly round(p*B) per batch.
MIXINGS = ("random", "stratified")

# FFN class name -> model family: the architectures an extension can be added to (gate/up/down FFNs).
SUPPORTED_FFNS: dict[str, str] = {
    "LlamaMLP": "llama",
    "MistralMLP": "mistral",
    "Qwen2MLP": "qwen2",
    "Qwen3MLP": "qwen3",
    "GemmaMLP": "gemma",
    "Gemma2MLP": "gemma2",
    "Gemma3MLP": "gemma3",
}
# config.model_type values whose CausalLM forward is exactly `lm_head(decoder(...).last_hidden_state)` (plus
# Gemma-2/3's optional final soft-capping): evaluation can then run the head on the scored positions only.
HEAD_ONLY_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                                   "smollm3"})

# Sequential knowledge addition (docs/sequence.md).
STRATEGIES = ("stack", "olora", "continue", "merge", "moe", "joint")
ROUTERS = ("gates", "learned")
MERGE_METHODS = ("linear", "ties", "dare", "dare_ties", "magnitude")


def method_class(name: str) -> type[Method]:
    """The class of extension method ``name`` (ValueError naming the valid choices for an unknown one)."""
    if name not in METHOD_CLASSES:
        raise ValueError(f"unknown method {name!r}; valid choices: {', '.join(METHODS)}")
    module, _, cls = METHOD_CLASSES[name].partition(":")
    return getattr(import_module(module), cls)

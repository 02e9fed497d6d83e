"""Merging per-stage extensions trained independently from the same backbone (docs/sequence.md).

Task vectors tau_k (what stage k adds to the backbone) are merged with PEFT's merge utilities
(`peft.utils.merge_utils`) and added to the backbone:

Default weights: w_k = 1/K (the average) for linear, dare and magnitude; w_k = 1 for ties and dare_ties
(their disjoint merge already averages the entries that agree in sign).

- linear:     sum_k w_k tau_k
- ties:       trim each tau_k to its top-`density` magnitudes, elect a per-entry sign, average the agreeing
              entries (disjoint merge), weighted by w_k
- dare:       drop each entry of tau_k with probability 1 - density, rescale the rest by 1/density, sum w_k tau_k
- dare_ties:  DARE's random drop, then TIES' sign election and disjoint merge
- magnitude:  TIES' trim without the sign election (task arithmetic on pruned tau_k)

What tau_k is, per method:
- LoRA: the full-rank delta B_k A_k * (alpha / r) of every target projection. Merging the dense deltas is
  exact for `linear` and is what TIES/DARE were defined on (PEFT's `add_weighted_adapter` with
  `ties`/`dare_*` instead prunes A and B separately, which does not prune the product).
- finetune: theta_k - theta_0 for every backbone weight.
- adapters / neutral residues: the residual A_k(x) = W_out(act(W_gate x) * W_in x) is not linear in its
  weights, and independently trained adapters have unaligned hidden units (any permutation of them is the
  same function), so averaging or sign-electing adapter *weights* is not meaningful. What is meaningful:
  keep the stages side by side (the model computes F(x) + sum_k w_k phi_k(g_k(x)) A_k(x)), which is exact
  and equals a single adapter of width sum_k h_k for ungated adapters. `linear` scales stage k's W_out by
  w_k (the residual is linear in W_out); `dare` applies DARE to each stage's W_out (its task vector from a
  zero init) before the weighting. `ties`/`dare_ties`/`magnitude` have no shared coordinates to elect signs
  over across stages and are refused for adapters.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft.utils import merge_utils
from torch import nn

from ..registry import MERGE_METHODS, method_class
from .api import CONFIG_FILE, WEIGHTS_FILE, load_weights, weights_problem
from .arch import _base_model

ADAPTER_MERGES = ("linear", "dare")

__all__ = ["ADAPTER_MERGES", "MERGE_METHODS", "lora_deltas", "merge_adapter_stages", "merge_stages",
           "merge_task_tensors"]


def merge_task_tensors(tensors: list[torch.Tensor], method: str = "linear", weights: list[float] | None = None,
                       density: float = 0.5, seed: int | None = 0,
                       majority_sign_method: str = "total") -> torch.Tensor:
    """Merge same-shaped task tensors with PEFT's merge utilities. DARE draws from a generator seeded
    with `seed` (the global RNG state is restored afterwards)."""
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}; valid choices: {', '.join(MERGE_METHODS)}")
    if not tensors:
        raise ValueError("nothing to merge")
    if weights is None:  # TIES' disjoint merge already averages the agreeing entries
        weights = [1.0 if method in ("ties", "dare_ties") else 1.0 / len(tensors)] * len(tensors)
    w = torch.tensor(weights, dtype=tensors[0].dtype, device=tensors[0].device)
    if len(w) != len(tensors):
        raise ValueError(f"{len(w)} weights for {len(tensors)} task tensors")
    if method == "linear":
        return merge_utils.task_arithmetic(list(tensors), w)
    if method == "magnitude":
        return merge_utils.magnitude_prune(list(tensors), w, density)
    if method == "ties":
        return merge_utils.ties(list(tensors), w, density, majority_sign_method)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if method == "dare":
            return merge_utils.dare_linear(list(tensors), w, density)
        return merge_utils.dare_ties(list(tensors), w, density, majority_sign_method)


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    problem = weights_problem(path)  # checksum recorded at save time
    if problem:
        raise ValueError(problem)
    return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")), load_weights(path / WEIGHTS_FILE)


def lora_deltas(tensors: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Base-model weight name -> dense LoRA delta scaling * B @ A, from a saved LoRA state dict."""
    out = {}
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        b = tensors[name.replace(".lora_A.", ".lora_B.")]
        module = name.split(".lora_A.")[0].removeprefix("base_model.model.")
        out[f"{module}.weight"] = scaling * (b.float() @ a.float())
    return out


@torch.no_grad()
def merge_stages(backbone: nn.Module, paths: list[str | Path], method: str = "linear",
                 weights: list[float] | None = None, density: float = 0.5, seed: int | None = 0) -> nn.Module:
    """Merge independently trained single-stage extensions (folders written by save_extension) into `backbone`.

    LoRA and finetune: merged task vectors are added to the backbone's weights; returns the plain backbone.
    Adapter methods: see `merge_adapter_stages` (returns a stacked model).
    """
    metas = [_read(Path(p)) for p in paths]
    kinds = {m["method"] for m, _ in metas}
    if len(kinds) != 1:
        raise ValueError(f"cannot merge extensions of different methods {sorted(kinds)}")
    kind = kinds.pop()
    if method_class(kind).adapter:
        return merge_adapter_stages(backbone, paths, method, weights, density, seed)
    base = _base_model(backbone)
    state = base.state_dict()
    vectors = [method_class(kind).task_vector(t, m, state) for m, t in metas]
    if any(v is None for v in vectors):
        raise ValueError(f"cannot merge method {kind!r}")
    params = dict(base.named_parameters())
    for name in vectors[0]:
        merged = merge_task_tensors([v[name] for v in vectors], method, weights, density, seed)
        target = params.get(name)
        if target is None:  # tied copy (finetune: lm_head tied to the embeddings) - the parameter carries it
            continue
        target.add_(merged.to(target.dtype))
    return backbone


@torch.no_grad()
def merge_adapter_stages(backbone: nn.Module, paths: list[str | Path], method: str = "linear",
                         weights: list[float] | None = None, density: float = 0.5,
                         seed: int | None = 0) -> nn.Module:
    """Adapters side by side with stage k's output scaled by w_k (linear), after DARE on W_out (dare)."""
    from .arch import find_ffns
    from .stack import load_stages, scale_stages, stage_adapters

    if method not in ADAPTER_MERGES:
        raise ValueError(f"merge {method!r} is not meaningful for adapters (unaligned hidden units, non-linear in "
                         f"their weights); valid choices: {', '.join(ADAPTER_MERGES)} (see docs/sequence.md)")
    model = load_stages(backbone, list(paths))
    for p in model.parameters():
        p.requires_grad_(False)
    k = len(paths)
    weights = [1.0 / k] * k if weights is None else list(weights)
    if method == "dare":
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for info in find_ffns(model):
                for a in stage_adapters(info.module):
                    w = a.w_out.weight
                    w.copy_(merge_utils.prune(w, density, method="random", rescale=True))
    return scale_stages(model, weights)

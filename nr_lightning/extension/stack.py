"""Stacked adapter stages: one extension per stage of a sequence, earlier stages frozen.

    model = extend(backbone, "neutral", budget=0.1)       # stage 0: mlp.nrl_adapter
    ... train on language 1 ...
    add_stage(model)                                       # stage 0 -> mlp.nrl_stages[0] (frozen),
    ... train on language 2 ...                            # fresh stage 1 -> mlp.nrl_adapter (trainable)

The newest stage always sits at `mlp.nrl_adapter`, so every single-stage tool (save_extension,
parameter_report, local_losses, gate statistics, adapter-only checkpoints) acts on the trainable stage
unchanged. The hook adds the stages' residuals in order, out = F(x) + sum_k phi_k(g_k(x)) A_k(x): with
neutral-residue gates this *is* MoE-style mixing (each stage's block gate decides, per token, whether its
expert contributes). `add_router` replaces the plain sum by a learned softmax over stages.

A new stage's W_out starts at zero, so right after `add_stage` the model computes exactly (bit for bit)
what it computed before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import file_sha256, write_json_atomic
from ..registry import method_class
from .adapter import ResidualAdapter
from .api import (
    ADAPTER_METHODS,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ExtensionConfig,
    backbone_non_embedding,
    extension_config,
    load_extension,
    load_weights,
    solve_width,
    weights_problem,
)
from .arch import _base_model, find_ffns

STACK_FILE = "sequence.json"

__all__ = ["StageRouter", "add_router", "add_stage", "load_stages", "load_stack", "n_stages", "save_stages",
           "scale_stages", "stage_adapters", "stage_configs"]


class StageRouter(nn.Module):
    """Per-token softmax over the stages of one FFN (zero-initialised: uniform weights 1/K at start)."""

    def __init__(self, d_model: int, n_stages: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, n_stages, bias=True)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.proj(x).float(), dim=-1).to(x.dtype)


def stage_adapters(mlp: nn.Module) -> list[ResidualAdapter]:
    """The adapters of one FFN in stage order (frozen earlier stages, then the newest)."""
    earlier = mlp._modules.get("nrl_stages")
    return [*(earlier or []), mlp.nrl_adapter]


def n_stages(model: nn.Module) -> int:
    """Number of adapter stages of an extended model (1 for a plain `extend`)."""
    return len(stage_adapters(find_ffns(model)[0].module))


def stage_configs(model: nn.Module) -> list[ExtensionConfig]:
    """ExtensionConfig of every stage, oldest first (the last one is `model.nrl_config`)."""
    return [*getattr(model, "nrl_stage_configs", []), extension_config(model)]


def add_stage(model: nn.Module, budget: float | None = None, gate: str | None = None, init: str | None = None,
              init_divisor: float | None = None, placement: str | None = None, width: int | None = None,
              method: str | None = None, gate_init: str | None = None) -> nn.Module:
    """Freeze the current adapter stage(s) and install a fresh trainable stage on every FFN.

    Options default to the current stage's (method, gate, init, placement, budget). The new stage's
    W_out is zero, so the model's outputs are unchanged until it trains. Returns `model` (modified in place).
    """
    cfg = extension_config(model)
    method = method or cfg.method
    if cfg.method not in ADAPTER_METHODS or method not in ADAPTER_METHODS:
        raise ValueError(f"stacking needs an adapter method {ADAPTER_METHODS}, got {cfg.method!r} -> {method!r}; "
                         "LoRA stages are merged into the backbone instead (see nr_lightning.sequence)")
    if getattr(model, "nrl_has_router", False):
        raise ValueError("this model has a stage router; add stages before add_router()")
    kind = method_class(method)
    same = method == cfg.method
    gate = gate if gate is not None else (cfg.gate if same else kind.default_gate)
    init = init if init is not None else (cfg.init if same else kind.default_init)
    placement = placement or cfg.placement
    gate_init = gate_init or getattr(cfg, "gate_init", "he")
    ffns = find_ffns(model)
    n_layers, d = len(ffns), ffns[0].d_model
    budget = cfg.budget if budget is None else budget
    n_nonemb = backbone_non_embedding(model)
    width = width or solve_width(budget, n_nonemb, n_layers, d, gated=gate != "none")
    divisor = float(n_layers) if init_divisor is None else float(init_divisor)
    new = ExtensionConfig(method=method, budget=budget, gate=gate, init=init, init_divisor=divisor, gate_init=gate_init,
                          placement=placement, lora_alpha_ratio=cfg.lora_alpha_ratio, width=width,
                          activation=ffns[0].activation, backbone=dict(cfg.backbone))
    ref = next(model.parameters())
    for info in ffns:
        mlp = info.module
        old = mlp.nrl_adapter
        old.requires_grad_(False)
        if mlp._modules.get("nrl_stages") is None:
            mlp.nrl_stages = nn.ModuleList()
        mlp.nrl_stages.append(old)
        adapter = ResidualAdapter(d, width, info.activation, gate, init, divisor, placement, gate_init=gate_init)
        mlp.nrl_adapter = adapter.to(device=ref.device, dtype=ref.dtype)
    model.nrl_stage_configs = [*getattr(model, "nrl_stage_configs", []), cfg]
    model.nrl_config = new
    return model


def add_router(model: nn.Module) -> nn.Module:
    """Give every FFN a learned softmax router over its stages (the only trainable weights afterwards)."""
    ffns = find_ffns(model)
    k = n_stages(model)
    if k < 2:
        raise ValueError("a router needs at least two stages")
    for p in model.parameters():
        p.requires_grad_(False)
    ref = next(model.parameters())
    for info in ffns:
        info.module.nrl_router = StageRouter(info.d_model, k).to(device=ref.device, dtype=ref.dtype)
    model.nrl_has_router = True
    return model


@torch.no_grad()
def scale_stages(model: nn.Module, weights: list[float]) -> nn.Module:
    """Multiply stage k's output by weights[k] (exact: the residual is linear in W_out)."""
    for info in find_ffns(model):
        stages = stage_adapters(info.module)
        if len(weights) != len(stages):
            raise ValueError(f"{len(weights)} weights for {len(stages)} stages")
        for a, w in zip(stages, weights):
            a.w_out.weight.mul_(float(w))
    return model


def _stage_state(model: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Stage k's weights under single-stage names (`....mlp.nrl_adapter.*`), as save_extension writes them."""
    out = {}
    for info in find_ffns(model):
        a = stage_adapters(info.module)[k]
        for n, t in a.state_dict().items():
            out[f"{info.name}.nrl_adapter.{n}"] = t
    return out


def save_stages(model: nn.Module, path: str | Path) -> Path:
    """Write every stage to `path/stage_k/` (the save_extension format) plus `path/sequence.json`."""
    path = Path(path)
    cfgs = stage_configs(model)
    names = []
    for k, cfg in enumerate(cfgs):
        d = path / f"stage_{k}"
        d.mkdir(parents=True, exist_ok=True)
        tensors = {n: t.detach().contiguous().cpu() for n, t in _stage_state(model, k).items()}
        save_file(tensors, str(d / WEIGHTS_FILE), metadata={"format": "nr-lightning", "version": str(FORMAT_VERSION)})
        write_json_atomic(d / CONFIG_FILE, {"format_version": FORMAT_VERSION, **asdict(cfg),
                                            "weights_sha256": file_sha256(d / WEIGHTS_FILE)})
        names.append(f"stage_{k}")
    router = {n: t.detach().cpu().contiguous() for n, t in _base_model(model).state_dict().items()
              if ".nrl_router." in n}
    if router:
        save_file(router, str(path / "router.safetensors"))
    meta = {"format": "nr-lightning-stack", "mode": "stack", "extensions": names, "router": bool(router)}
    write_json_atomic(path / STACK_FILE, meta)
    return path


def _read_config(path: Path) -> ExtensionConfig:
    meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    known = {f.name for f in fields(ExtensionConfig)}
    return ExtensionConfig(**{k: v for k, v in meta.items() if k in known})


def load_stages(backbone: nn.Module, paths: list[str | Path]) -> nn.Module:
    """Rebuild a stacked model from single-stage extension folders (oldest first) and load their weights.

    Each folder is what save_extension wrote (e.g. independently trained extensions: MoE-style mixing).
    The last stage is trainable, earlier ones frozen, as after `add_stage`.
    """
    if not paths:
        raise ValueError("no extension folders given")
    model = load_extension(backbone, paths[0])
    for p in paths[1:]:
        p = Path(p)
        cfg = _read_config(p)
        add_stage(model, budget=cfg.budget, gate=cfg.gate, init=cfg.init, init_divisor=cfg.init_divisor,
                  placement=cfg.placement, width=cfg.width, method=cfg.method)
        problem = weights_problem(p)  # checksum recorded at save time
        if problem:
            raise ValueError(problem)
        tensors = load_weights(p / WEIGHTS_FILE)
        missing, unexpected = _base_model(model).load_state_dict(tensors, strict=False)
        missing = [k for k in missing if ".nrl_adapter." in k]
        if unexpected or missing:
            raise ValueError(f"{p}: weights do not match the stage (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    return model


def load_stack(backbone: nn.Module, path: str | Path) -> nn.Module:
    """Load what save_stages (or a `nr_lightning.sequence` run with strategy=stack) wrote at `path`."""
    path = Path(path)
    meta = json.loads((path / STACK_FILE).read_text(encoding="utf-8"))
    model = load_stages(backbone, [path / e for e in meta["extensions"]])
    if meta.get("router"):
        add_router(model)
        tensors = load_file(str(path / "router.safetensors"))
        _base_model(model).load_state_dict(tensors, strict=False)
    return model

"""The public extension API: extend a backbone, report its budget, compute local losses, save/load.

    model = extend(backbone, method="neutral", budget=0.2)
    out = model(input_ids=ids)                         # fills the adapters' per-token caches
    losses = local_losses(model, domain)               # {"sparsity": ..., "gate_bce": ...}

`extend` modifies the backbone in place (adapters are forward hooks on the FFNs; LoRA goes
through PEFT and returns a PeftModel) and freezes everything that is not the extension.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import file_sha256, write_json_atomic
from ..registry import ADAPTER_METHODS, DEFAULT_METHOD, METHODS, method_class
from .adapter import GATE_INITS, GATES, INITS, PLACEMENTS, ResidualAdapter
from .arch import _base_model, _linear, embedding_parameters, find_ffns

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "extension.json", "extension.safetensors"


@dataclass
class ExtensionConfig:
    """Everything needed to rebuild an extension on a fresh backbone (saved next to its weights)."""

    method: str
    budget: float | None = 0.2
    gate: str | None = None
    init: str | None = None
    init_divisor: float | None = None  # None = number of layers
    gate_init: str = "he"  # block gate w_b: he | low_variance (extensions saved before the option: weights decide)
    placement: str = "parallel"
    lora_alpha_ratio: float = 2.0  # LoRA alpha = ratio * rank
    # Solved from the budget (filled by extend):
    width: int | None = None
    rank: int | None = None
    activation: str | None = None
    backbone: dict = field(default_factory=dict)


def _choose(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")


# Parameter-name markers of extension weights (never part of the backbone): the newest adapter stage,
# frozen earlier stages and stage routers (nr_lightning.extension.stack), LoRA.
EXTENSION_MARKERS = (".nrl_adapter.", ".nrl_stages.", ".nrl_router.", "lora_")


def is_extension_name(name: str) -> bool:
    """True for parameter names that belong to an extension rather than to the backbone."""
    return any(m in name for m in EXTENSION_MARKERS)


def _count(params) -> int:
    return sum(p.numel() for p in params)


def backbone_non_embedding(model: nn.Module) -> int:
    """Backbone parameters minus input embeddings and output head: the budget's denominator."""
    base = _base_model(model)
    emb = embedding_parameters(base)
    seen: set[int] = set()
    total = 0
    for name, p in base.named_parameters():
        if id(p) in emb or id(p) in seen or is_extension_name(name):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def solve_width(budget: float, n_nonemb: int, n_layers: int, d_model: int, gated: bool) -> int:
    """Adapter width h with L*(3*d*h + gate) closest to budget * N_nonemb (README, the extension API)."""
    gate_params = (d_model + 1) if gated else 0
    return max(1, round((budget * n_nonemb - n_layers * gate_params) / (n_layers * 3 * d_model)))


def solve_rank(budget: float, n_nonemb: int, n_layers: int, d_model: int, d_ffn: int) -> int:
    """LoRA rank r with L*3*r*(d+f) closest to budget * N_nonemb (gate, up and down projections)."""
    return max(1, round(budget * n_nonemb / (n_layers * 3 * (d_model + d_ffn))))


def extend(backbone: nn.Module, method: str = DEFAULT_METHOD, budget: float = 0.2, gate: str | None = None,
           init: str | None = None, init_divisor: float | None = None, placement: str = "parallel",
           lora_alpha_ratio: float = 2.0, width: int | None = None, rank: int | None = None,
           gate_init: str = "he") -> nn.Module:
    """Extend `backbone` with one of METHODS and freeze everything else. Returns the model to train.

    `budget` is a fraction of the backbone's non-embedding parameters, solved into the adapter
    width or LoRA rank (or pass `width`/`rank` to fix them). `gate`/`init` default per method;
    `gate_init` is the block gate's own init (he | low_variance, docs/method.md).
    """
    _choose("method", method, METHODS)
    _choose("placement", placement, PLACEMENTS)
    kind = method_class(method)
    if kind.adapter:
        gate = kind.default_gate if gate is None else gate
        init = kind.default_init if init is None else init
        _choose("gate", gate, GATES)
        _choose("init", init, INITS)
        _choose("gate_init", gate_init, GATE_INITS)
    elif gate is not None or init is not None:
        raise ValueError(f"gate/init apply to the adapter methods {ADAPTER_METHODS}, not to {method!r}")
    if not kind.trains_backbone and width is None and rank is None and not (budget and 0 < budget <= 10):
        raise ValueError(f"budget must be a positive fraction of the backbone's non-embedding parameters, got {budget}")
    if getattr(backbone, "nrl_config", None) is not None:
        raise ValueError("this model is already extended; extend a fresh backbone (see nr_lightning.sequence for stacking)")

    ffns = find_ffns(backbone)
    n_layers, d, f = len(ffns), ffns[0].d_model, ffns[0].d_ffn
    n_nonemb = backbone_non_embedding(backbone)
    cfg = ExtensionConfig(method=method, budget=budget, gate=gate, init=init, placement=placement, gate_init=gate_init,
                          lora_alpha_ratio=lora_alpha_ratio, activation=ffns[0].activation,
                          backbone={"class": type(backbone).__name__, "layers": n_layers, "d_model": d, "d_ffn": f,
                                    "non_embedding_params": n_nonemb})

    model = kind.apply(backbone, cfg, ffns, width=width, rank=rank, init_divisor=init_divisor)
    model.nrl_config = cfg
    return model


def extension_config(model: nn.Module) -> ExtensionConfig:
    cfg = getattr(model, "nrl_config", None)
    if cfg is None:
        raise ValueError("model was not built by nr_lightning.extend(); call extend(backbone, method=...) first")
    return cfg


def adapters(model: nn.Module) -> list[ResidualAdapter]:
    """The residual adapters of an extended model, one per layer, in layer order.

    With stacked stages these are the newest (trainable) stage's; frozen earlier stages are skipped.
    """
    return [m for n, m in _base_model(model).named_modules()
            if isinstance(m, ResidualAdapter) and ".nrl_stages." not in f".{n}."]


def extension_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> tensor of the weights that make up the extension (what save_extension writes)."""
    return method_class(extension_config(model).method).weights(model)


def parameter_report(model: nn.Module) -> dict:
    """Budget and trainable counts, with the denominator spelled out."""
    cfg = extension_config(model)
    n_nonemb = backbone_non_embedding(model)
    trainable = _count(p for p in model.parameters() if p.requires_grad)
    base = _base_model(model)
    kind = method_class(cfg.method)
    extension = kind.extension_count(model)
    total_backbone = _count({id(p): p for n, p in base.named_parameters() if not is_extension_name(n)}.values())
    return {
        "method": cfg.method,
        "backbone_total": total_backbone,
        "backbone_non_embedding": n_nonemb,
        "denominator": "backbone non-embedding parameters (all weights except input embeddings and output head)",
        "extension": extension,
        "trainable": trainable,
        "budget": kind.budget_numerator(extension, trainable) / n_nonemb,
        "budget_requested": cfg.budget,
        "width": cfg.width,
        "rank": cfg.rank,
        "gate": cfg.gate,
        "init": cfg.init,
        "placement": cfg.placement,
    }


def local_losses(model: nn.Module, domain: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Local losses from the last forward pass (docs/method.md, local losses).

    domain: (batch,) or (batch, seq), 0 = original domain (English), 1 = new language.
    sparsity: mean over layers of the mean over original-domain tokens of ||phi(g(x)) A(x)||_1 / d.
    gate_bce: mean over layers of BCE(sigmoid(g(x)), domain) over all tokens (gated adapters only).
    Methods without adapters (or without a gate) return zeros.
    """
    layers = adapters(model)
    ref = next(model.parameters())
    zero = torch.zeros((), device=ref.device, dtype=torch.float32)
    if not layers or layers[0].last_residual_l1 is None:
        return {"sparsity": zero, "gate_bce": zero.clone()}
    shape = layers[0].last_residual_l1.shape  # (batch, seq)
    dom = domain.to(ref.device)
    dom = dom[:, None].expand(shape) if dom.dim() == 1 else dom
    if dom.shape != shape:
        raise ValueError(f"domain has shape {tuple(domain.shape)}; expected (batch,) or {tuple(shape)}")
    valid = torch.ones(shape, dtype=torch.bool, device=dom.device) if mask is None else mask.bool().to(dom.device)
    original = (dom == 0) & valid
    n_orig = original.sum()
    sparsity = zero
    if n_orig > 0:
        per_layer = [(a.last_residual_l1.float() * original).sum() / n_orig for a in layers]
        sparsity = torch.stack(per_layer).mean()
    gate_bce = zero.clone()
    if layers[0].last_gate_logits is not None and valid.any():
        target = dom.float()[valid]
        per_layer = [F.binary_cross_entropy_with_logits(a.last_gate_logits.float()[valid], target) for a in layers]
        gate_bce = torch.stack(per_layer).mean()
    return {"sparsity": sparsity, "gate_bce": gate_bce}


def gate_spectra(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """Singular values per layer of each adapter's W_gate and of the backbone FFN's gate_proj (paper Fig. 3)."""
    out: dict[str, list[torch.Tensor]] = {"backbone": [], "adapter": []}
    for info in find_ffns(model):
        weight = _linear(info.module.gate_proj).weight
        out["backbone"].append(torch.linalg.svdvals(weight.detach().float()))
        adapter = getattr(info.module, "nrl_adapter", None)
        if adapter is not None:
            out["adapter"].append(torch.linalg.svdvals(adapter.w_gate.weight.detach().float()))
    return out


def save_extension(model: nn.Module, path: str | Path) -> Path:
    """Write the extension's weights (safetensors) and config (json) to directory `path`; nothing of the backbone."""
    cfg = extension_config(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {n: t.detach().contiguous().cpu() for n, t in extension_parameters(model).items()}
    tensors = method_class(cfg.method).dedupe(tensors)
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "nr-lightning", "version": str(FORMAT_VERSION)})
    tmp.replace(path / WEIGHTS_FILE)
    # the weights' checksum, beside them: load_extension (evaluate, export) refuses a file that changed since
    meta = {"format_version": FORMAT_VERSION, **asdict(cfg), "weights_sha256": file_sha256(path / WEIGHTS_FILE)}
    write_json_atomic(path / CONFIG_FILE, meta)
    return path


def weights_problem(path: str | Path) -> str | None:
    """Why the extension saved at ``path`` cannot be trusted (checksum mismatch), or None. Runs without a
    recorded checksum (written before it existed) pass."""
    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{path / CONFIG_FILE} is unreadable ({e})"
    want = meta.get("weights_sha256") if isinstance(meta, dict) else None
    if want and file_sha256(path / WEIGHTS_FILE) != want:
        return (f"{path / WEIGHTS_FILE} does not match the SHA-256 recorded in {CONFIG_FILE} when it was saved "
                f"(damaged or changed since)")
    return None


def load_weights(weights_file: str | Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with one-line errors: an unreadable (empty, truncated) file or a
    non-finite weight is a ValueError naming the file."""
    try:
        tensors = load_file(str(weights_file))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type (SafetensorError) and OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{weights_file} is not a readable safetensors file ({first}): the save was cut short or "
                         f"the file is damaged; train again or restore it") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{weights_file}: weight {name} holds NaN or inf values: the run diverged or the file "
                             f"is damaged; use an earlier checkpoint")
    return tensors


def nonfinite_weight(state: dict) -> str | None:
    """The first key of a state dict whose floating-point tensor holds NaN or inf, or None: weights written after
    a run diverged (a resume and an evaluation both refuse them)."""
    return next((k for k, v in state.items()
                 if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def extend_like(backbone: nn.Module, method: Any) -> nn.Module:
    """`extend` with a run's method settings (a config's `method` section): what training, the sequential
    setting and the evaluation of a training checkpoint build, so the three cannot disagree."""
    m = method
    return extend(backbone, method=m.name, budget=m.budget, gate=m.gate, init=m.init, init_divisor=m.init_divisor,
                  placement=m.placement, lora_alpha_ratio=m.lora_alpha_ratio, gate_init=m.gate_init)


def load_extension(backbone: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild the extension saved at `path` on `backbone` and load its weights."""
    path = Path(path)
    cfg_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: `path` must be a directory written by save_extension()")
    meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    known = {f.name for f in fields(ExtensionConfig)}
    cfg = ExtensionConfig(**{k: v for k, v in meta.items() if k in known})
    ffns = find_ffns(backbone)
    want = cfg.backbone
    got = {"layers": len(ffns), "d_model": ffns[0].d_model, "d_ffn": ffns[0].d_ffn}
    mismatch = {k: (want.get(k), v) for k, v in got.items() if want.get(k) not in (None, v)}
    if mismatch:
        raise ValueError(f"extension at {path} was built for a different backbone: (saved, given) = {mismatch}")
    model = extend(backbone, method=cfg.method, budget=cfg.budget or 0.2,
                   gate=cfg.gate if method_class(cfg.method).adapter else None,
                   init=cfg.init if method_class(cfg.method).adapter else None, init_divisor=cfg.init_divisor,
                   placement=cfg.placement, lora_alpha_ratio=cfg.lora_alpha_ratio, width=cfg.width, rank=cfg.rank,
                   gate_init=cfg.gate_init)
    problem = weights_problem(path)
    if problem:
        raise ValueError(problem)
    method_class(cfg.method).load_weights(model, load_weights(weights_file), weights_file)
    return model

"""Export a trained run to the formats other tools load (safetensors only).

    python -m nr_lightning export run=runs/<name> out=DIR [format=auto|peft|hf|extension]

- ``peft`` (LoRA runs): a PEFT adapter directory with a clean copy of the backbone in ``DIR/base_model``;
  ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(DIR/base_model), DIR)`` loads it from
  anywhere, ``AutoPeftModelForCausalLM.from_pretrained(DIR)`` where ``base_model_name_or_path`` resolves
  (the backbone's hub id, or ``base_model`` relative to the working directory: PEFT does not resolve it
  against DIR).
- ``hf``: a Hugging Face model directory for ``AutoModelForCausalLM.from_pretrained(DIR)``. LoRA is merged
  into the weights; finetune is saved as is; vanilla adapters (no block gate, parallel placement) become the
  backbone's own architecture with a wider FFN (no custom code): the adapter has the FFN's form
  ``W_out(act(W_gate x) * W_in x)`` (docs/export.md), so stacking its rows under ``gate_proj`` /
  ``up_proj`` and its columns beside ``down_proj`` gives exactly ``F(x) + A(x)``. Gated methods (sigmoid,
  neutral), serial adapters and stacked stages have no stock equivalent: their directory carries a small
  modelling file (``modeling_nrl.py``, torch + transformers only) named by ``auto_map``, loaded with
  ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``.
- ``extension``: our own format (the run's ``extension/`` plus the backbone it extends and the tokenizer),
  loaded with ``model, tokenizer = nr_lightning.extension.export.load_exported(DIR)``.

``format=auto`` picks peft for LoRA, hf otherwise. Every export writes a model card (README.md).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from .. import keyvalue
from ..errors import ConfigError, run_cli
from ..io import checksum_problem, write_checksums, write_json_atomic

FORMATS = ("auto", "peft", "hf", "extension")
BACKBONE_FILE = "backbone.json"  # extension format: which backbone the extension extends
REMOTE_CODE = Path(__file__).resolve().parent / "hf_remote" / "modeling_nrl.py"  # copied into gated hf exports
BASE_DIR = "base_model"  # peft format: the clean backbone beside the adapter


@dataclass
class ExportArgs:
    run: str | None = None  # a run directory written by nr_lightning.train
    out: str | None = None  # output directory (created; must be empty or absent)
    format: str = "auto"  # auto | peft | hf | extension


def parse(argv: list[str]) -> ExportArgs:
    args = keyvalue.parse(ExportArgs, argv, example="run=runs/x format=hf out=export/x")
    if not args.run or not args.out:
        raise ConfigError("give run=runs/<name> (a finished training run) and out=DIR (where to write the export)")
    if args.format not in FORMATS:
        raise ConfigError(f"unknown format {args.format!r}; valid choices: {', '.join(FORMATS)}")
    return args


def auto_format(method: str, gate: str | None = None, placement: str = "parallel") -> str:
    """peft for LoRA, hf otherwise (plain, or with the modelling file for gated/serial/stacked adapters)."""
    from types import SimpleNamespace

    from ..registry import method_class

    return method_class(method).export_format(SimpleNamespace(method=method, gate=gate, placement=placement))


def plain_hf_reason(model: nn.Module) -> str | None:
    """Why the extension cannot become a plain HF model without custom code (None when it can)."""
    from ..registry import method_class
    from .api import extension_config

    if any(".nrl_stages." in n or ".nrl_router." in n for n, _ in model.named_parameters()):
        return "stacked extension stages (and their router) have no plain Hugging Face equivalent"
    cfg = extension_config(model)
    return method_class(cfg.method).hf_representable(model, cfg)


@torch.no_grad()
def widen_ffns(model: nn.Module) -> nn.Module:
    """Fold ungated parallel adapters into the FFNs they extend (in place); returns the plain HF model.

    down([act(G x); act(W_gate x)] * [U x; W_in x]) = down(act(G x) * U x) + W_out(act(W_gate x) * W_in x).
    """
    from .arch import find_ffns

    why = plain_hf_reason(model)
    if why:
        raise ConfigError(f"{why}; export format=hf (loaded with trust_remote_code=True) or format=extension")
    width = None
    for info in find_ffns(model):
        mlp = info.module
        a = mlp.nrl_adapter
        new = {"gate_proj": a.w_gate.weight, "up_proj": a.w_in.weight}
        for name, extra in new.items():
            lin: nn.Linear = getattr(mlp, name)
            lin.weight = nn.Parameter(torch.cat([lin.weight, extra.to(lin.weight.dtype)], 0), requires_grad=False)
            if lin.bias is not None:  # the adapter has no bias: its new rows get zero
                lin.bias = nn.Parameter(torch.cat([lin.bias, lin.bias.new_zeros(extra.shape[0])]), requires_grad=False)
            lin.out_features = lin.weight.shape[0]
        down: nn.Linear = mlp.down_proj
        down.weight = nn.Parameter(torch.cat([down.weight, a.w_out.weight.to(down.weight.dtype)], 1),
                                   requires_grad=False)
        down.in_features = down.weight.shape[1]
        mlp.nrl_hook.remove()
        del mlp.nrl_adapter, mlp.nrl_hook
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = down.in_features
        width = down.in_features
    model.config.intermediate_size = width
    del model.nrl_config
    return model


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is a file: out= names the directory to create (nothing was overwritten)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: choose another out=DIR (nothing was overwritten)")
    out.mkdir(parents=True, exist_ok=True)


def _load_run(run: Path):
    """(model, tokenizer, run config) of a finished run: one extension, or stacked stages (sequence.json)."""
    from ..evaluation.evaluate import EvalRun, load_model

    if not (run / "extension" / "sequence.json").is_file():
        return load_model(EvalRun(run=str(run)))
    from ..backbone import load_backbone
    from ..config import from_dict
    from .stack import load_stack

    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}/config.yaml not found: run= must be a directory written by nr_lightning.train")
    run_cfg = from_dict(OmegaConf.to_container(OmegaConf.load(run / "config.yaml")))
    backbone, tok = load_backbone(run_cfg.backbone.name, seed=run_cfg.seed)
    model = load_stack(backbone, run / "extension").eval().requires_grad_(False)
    return model, tok, run_cfg


def export(run: str | Path, out: str | Path, format: str = "auto") -> dict:
    """Export `run` to `out`; returns {"format", "out", "method", "loader", ...}. Writes a model card (README.md)."""
    from ..registry import method_class
    from .api import extension_config
    from .model_card import write_model_card

    run, out = Path(run), Path(out)
    if out.exists() and not out.is_dir():  # before the model loads
        _prepare_out(out)
    model, tok, run_cfg = _load_run(run)
    cfg = extension_config(model)
    fmt = auto_format(cfg.method, cfg.gate, cfg.placement) if format == "auto" else format
    if fmt == "peft" and method_class(cfg.method).export_format(cfg) != "peft":
        raise ConfigError(f"format=peft holds LoRA adapters; this run's method is {cfg.method!r}: use format=hf "
                          f"or format=extension")
    _prepare_out(out)
    if fmt == "extension":
        info = _export_extension(run, out, run_cfg)
    elif fmt == "peft":
        info = export_peft(model, tok, run_cfg.backbone.name, out)
    elif plain_hf_reason(model) is None:
        info = export_hf_plain(model, tok, out)
    else:
        info = export_hf_remote(model, tok, out)
    info = {"format": fmt, "out": str(out), "method": cfg.method, "run": str(run), **info}
    write_model_card(out, run, run_cfg, info)
    write_checksums(out)  # SHA256SUMS: `sha256sum -c SHA256SUMS` (or load_exported) proves the weights intact
    return info


def _hub_id(name: str) -> str | None:
    """`name` when the backbone is a hub id (resolves anywhere with the hub or its cache), else None."""
    from ..backbone import PRESETS

    return None if name in PRESETS or Path(name).expanduser().exists() else name


def export_peft(model: nn.Module, tok, backbone_name: str, out: Path) -> dict:
    """A PEFT adapter directory; the backbone beside it in DIR/base_model unless it is a hub id.

    ``base_model_name_or_path`` is the hub id, or ``base_model``: PEFT resolves it against the working
    directory (never against DIR), so the load call that works from anywhere names the base explicitly."""
    hub = _hub_id(backbone_name)
    model.peft_config["default"].base_model_name_or_path = hub or BASE_DIR
    # LoRA targets the FFN only: no embedding to save (and no lookup of the base path's config on the hub)
    model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    tok.save_pretrained(str(out))
    info: dict = {"base_model": hub or BASE_DIR}
    if hub is None:
        base = model.unload()  # the backbone's own modules back in place of the LoRA wrappers (not merged)
        base.save_pretrained(str(out / BASE_DIR), safe_serialization=True)
        tok.save_pretrained(str(out / BASE_DIR))
        info["loader"] = (f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{out}/{BASE_DIR}'), "
                          f"'{out}')")
    else:
        info["loader"] = f"AutoPeftModelForCausalLM.from_pretrained('{out}')"
    return info


def export_hf_plain(model: nn.Module, tok, out: Path) -> dict:
    """A stock HF directory: LoRA merged, finetune as is, vanilla parallel adapters folded into wider FFNs."""
    from ..registry import method_class
    from .api import extension_config

    model = method_class(extension_config(model).method).to_hf(model)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return {"intermediate_size": model.config.intermediate_size,
            "loader": f"AutoModelForCausalLM.from_pretrained('{out}')"}


def export_hf_remote(model: nn.Module, tok, out: Path) -> dict:
    """A HF directory whose config names modeling_nrl.py (auto_map): the backbone family's stock class plus the
    gated adapters, for ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``.

    The parameter names are the framework's own (``...mlp.nrl_adapter.w_gate.weight``, ``...mlp.nrl_stages.0...``,
    ``...mlp.nrl_router.proj...``), so the weights are the framework model's state dict as is."""
    from .stack import stage_configs

    base_type = model.config.model_type
    stages = [{"method": c.method, "width": c.width, "gate": c.gate or "none", "placement": c.placement,
               "activation": c.activation} for c in stage_configs(model)]
    router = any(".nrl_router." in n for n, _ in model.named_parameters())
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config.update({"model_type": f"nrl_{base_type}", "architectures": ["NRLForCausalLM"],
                   "auto_map": {"AutoConfig": "modeling_nrl.NRLConfig",
                                "AutoModelForCausalLM": "modeling_nrl.NRLForCausalLM"},
                   "nrl_stages": stages, "nrl_router": router})
    write_json_atomic(out / "config.json", config)
    code = REMOTE_CODE.read_text(encoding="utf-8")
    marker = 'BASE_MODEL_TYPE = "llama"'
    assert marker in code, "modeling_nrl.py lost its BASE_MODEL_TYPE line"
    (out / REMOTE_CODE.name).write_text(code.replace(marker, f"BASE_MODEL_TYPE = {base_type!r}", 1), encoding="utf-8")
    return {"remote_code": REMOTE_CODE.name, "stages": len(stages), "router": router,
            "loader": f"AutoModelForCausalLM.from_pretrained('{out}', trust_remote_code=True)"}


def _export_extension(run: Path, out: Path, run_cfg) -> dict:
    shutil.copytree(run / "extension", out, dirs_exist_ok=True)
    write_json_atomic(out / BACKBONE_FILE, {"name": run_cfg.backbone.name, "seed": run_cfg.seed,
                                            "dtype": run_cfg.backbone.dtype})
    from ..backbone import load_tokenizer

    load_tokenizer(run_cfg.backbone.name).save_pretrained(str(out))
    return {"loader": f"model, tokenizer = nr_lightning.extension.export.load_exported({str(out)!r})"}


def load_exported(path: str | Path):
    """(model, tokenizer) from a ``format=extension`` export (the backbone is rebuilt from backbone.json)."""
    from ..backbone import load_backbone
    from .api import load_extension
    from .stack import load_stack

    path = Path(path)
    if not (path / BACKBONE_FILE).is_file():
        raise FileNotFoundError(f"{path / BACKBONE_FILE} not found: load_exported reads a format=extension export; "
                                f"hf/peft exports load with transformers/PEFT directly")
    problem = checksum_problem(path)
    if problem:
        raise ValueError(problem)
    meta = json.loads((path / BACKBONE_FILE).read_text(encoding="utf-8"))
    backbone, tok = load_backbone(meta["name"], dtype=getattr(torch, meta.get("dtype", "float32")),
                                  seed=meta.get("seed", 0))
    model = load_stack(backbone, path) if (path / "sequence.json").is_file() else load_extension(backbone, path)
    return model.eval().requires_grad_(False), tok


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if keyvalue.help_requested(argv):
        print(__doc__)
        print(keyvalue.keys_help(ExportArgs))
        return {}
    args = parse(argv)
    info = export(args.run, args.out, args.format)
    print(json.dumps(info, indent=2))
    return info


def cli() -> None:
    run_cli(main)  # one `error:` line, exit 2; --debug: the traceback


if __name__ == "__main__":
    cli()

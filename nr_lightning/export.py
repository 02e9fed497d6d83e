"""Export a trained run to the formats other tools load (safetensors only).

    python -m nr_lightning.export run=runs/<name> out=DIR [format=auto|peft|hf|extension]

- ``peft`` (LoRA runs): a PEFT adapter directory; ``PeftModel.from_pretrained(backbone, DIR)`` loads it
  (and ``AutoPeftModelForCausalLM.from_pretrained(DIR)``, whose base path the adapter config names).
- ``hf``: a plain Hugging Face model directory, ``AutoModelForCausalLM.from_pretrained(DIR)`` with no
  custom code. LoRA is merged into the weights; finetune is saved as is; vanilla adapters (no block gate,
  parallel placement) become the backbone's own architecture with a wider FFN: the adapter has the FFN's
  form ``W_out(act(W_gate x) * W_in x)`` (docs/evaluation.md), so stacking its rows under ``gate_proj`` /
  ``up_proj`` and its columns beside ``down_proj`` gives exactly ``F(x) + A(x)`` with
  ``intermediate_size = d_ffn + width``.
- ``extension``: our own format (the run's ``extension/`` plus the backbone it extends and the tokenizer),
  the one format that represents a block gate (sigmoid, neutral) and stacked stages. Load it with
  ``model, tokenizer = nr_lightning.export.load_exported(DIR)``.

``format=auto`` picks peft for LoRA, hf for finetune and vanilla adapters, extension otherwise.
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

from . import keyvalue
from .errors import ConfigError, run_cli
from .io import write_json_atomic

FORMATS = ("auto", "peft", "hf", "extension")
BACKBONE_FILE = "backbone.json"  # extension format: which backbone the extension extends


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


def auto_format(method: str, gate: str | None, placement: str = "parallel") -> str:
    from types import SimpleNamespace

    from .registry import method_class

    return method_class(method).export_format(SimpleNamespace(method=method, gate=gate, placement=placement))


def _check_hf_representable(model: nn.Module) -> None:
    """Raise naming the reason when the extension cannot become a plain HF model."""
    from .extension import extension_config
    from .registry import method_class

    cfg = extension_config(model)
    if any(".nrl_stages." in n or ".nrl_router." in n for n, _ in model.named_parameters()):
        raise ConfigError("stacked extension stages (and their router) have no plain Hugging Face equivalent; "
                          "use format=extension")
    why = method_class(cfg.method).hf_representable(model, cfg)
    if why:
        raise ConfigError(why)


@torch.no_grad()
def widen_ffns(model: nn.Module) -> nn.Module:
    """Fold ungated parallel adapters into the FFNs they extend (in place); returns the plain HF model.

    down([act(G x); act(W_gate x)] * [U x; W_in x]) = down(act(G x) * U x) + W_out(act(W_gate x) * W_in x).
    """
    from .extension import find_ffns

    _check_hf_representable(model)
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


def _backbone_source(name: str) -> str | None:
    """A path or hub id the backbone can be loaded from by transformers (None for the random `tiny` preset)."""
    if name == "smollm2-135m":
        from .backbone import smollm2_dir

        return str(smollm2_dir())
    return None if name == "tiny" else name


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: choose another out=DIR (nothing was overwritten)")
    out.mkdir(parents=True, exist_ok=True)


def export(run: str | Path, out: str | Path, format: str = "auto") -> dict:
    """Export `run` to `out`; returns {"format", "out", "method", ...}."""
    from .evaluation.evaluate import EvalRun, load_model
    from .extension import extension_config
    from .registry import method_class

    run, out = Path(run), Path(out)
    stack = run / "extension" / "sequence.json"
    if stack.is_file():
        return _export_extension(run, out, None)
    model, tok, run_cfg = load_model(EvalRun(run=str(run)))
    cfg = extension_config(model)
    fmt = auto_format(cfg.method, cfg.gate, cfg.placement) if format == "auto" else format
    if fmt == "peft" and method_class(cfg.method).export_format(cfg) != "peft":
        raise ConfigError(f"format=peft holds LoRA adapters; this run's method is {cfg.method!r}: use format=hf "
                          f"(finetune, vanilla adapters) or format=extension")
    if fmt == "extension":
        return _export_extension(run, out, run_cfg)
    if fmt == "hf":
        _check_hf_representable(model)
    _prepare_out(out)
    info = {"format": fmt, "out": str(out), "method": cfg.method, "run": str(run)}
    if fmt == "peft":
        base_dir = _backbone_source(run_cfg.backbone.name)
        if base_dir is None:  # a random preset exists nowhere on disk: ship it next to the adapter
            base_dir = str(out / "base_model")
            model.get_base_model().save_pretrained(base_dir, safe_serialization=True)
            tok.save_pretrained(base_dir)
        model.peft_config["default"].base_model_name_or_path = base_dir
        model.save_pretrained(str(out), safe_serialization=True)
        info["base_model"] = base_dir
    else:
        model = method_class(cfg.method).to_hf(model)
        model.save_pretrained(str(out), safe_serialization=True)
        info["intermediate_size"] = model.config.intermediate_size
    tok.save_pretrained(str(out))
    return info


def _export_extension(run: Path, out: Path, run_cfg) -> dict:
    from .config import from_dict

    if run_cfg is None:
        run_cfg = from_dict(OmegaConf.to_container(OmegaConf.load(run / "config.yaml")))
    _prepare_out(out)
    shutil.copytree(run / "extension", out, dirs_exist_ok=True)
    write_json_atomic(out / BACKBONE_FILE, {"name": run_cfg.backbone.name, "seed": run_cfg.seed,
                                            "dtype": run_cfg.backbone.dtype})
    from .backbone import load_tokenizer

    load_tokenizer(run_cfg.backbone.name).save_pretrained(str(out))
    return {"format": "extension", "out": str(out), "run": str(run),
            "loader": f"model, tokenizer = nr_lightning.export.load_exported({str(out)!r})"}


def load_exported(path: str | Path):
    """(model, tokenizer) from a ``format=extension`` export (the backbone is rebuilt from backbone.json)."""
    from .backbone import load_backbone
    from .extension import load_extension, load_stack

    path = Path(path)
    if not (path / BACKBONE_FILE).is_file():
        raise FileNotFoundError(f"{path / BACKBONE_FILE} not found: load_exported reads a format=extension export; "
                                f"hf/peft exports load with transformers/PEFT directly")
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

"""Train one extension run: `python -m nr_lightning.train method=neutral lang=fr trainer.max_steps=50`.

Reads top to bottom: compose + validate the config (fails before anything loads), prepare the run
directory, load the backbone and extend it, build the mixed-language data, then fit with
checkpoints, TensorBoard curves and a final `save_extension`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from .config import ConfigError, RunConfig, compose, to_dict, to_yaml

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def run_dir_for(cfg: RunConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir).expanduser()
    name = cfg.name or f"{cfg.method.name}-{cfg.lang}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.runs_root).expanduser() / name


def prepare_run_dir(path: Path, resuming: bool, min_free_gb: float = 1.0) -> None:
    """Create the run directory; refuse unwritable or nearly full disks before any training starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {path} is not writable ({e.strerror}); set run_dir=PATH or runs_root=PATH "
                          f"to a writable location") from None
    free = shutil.disk_usage(path).free / 2**30
    if free < min_free_gb:
        raise ConfigError(f"only {free:.2f} GiB free under {path}: checkpoints need at least {min_free_gb} GiB; "
                          f"free space or set runs_root=PATH elsewhere")
    if not resuming and (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir()):
        raise ConfigError(f"{path} already holds checkpoints of an earlier run: resume it with ckpt_path=last, "
                          f"or choose another name=... (nothing was overwritten)")


def banner(cfg: RunConfig, report: dict, dm_info: dict, run_dir: Path) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"nr-lightning: {cfg.method.name} → {cfg.lang}", show_header=False)
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.trainer.accumulate_grad_batches
    rows = [
        ("backbone", f"{cfg.backbone.name} ({report['backbone_total']:,} params, "
                     f"{report['backbone_non_embedding']:,} non-embedding)"),
        ("method", f"{cfg.method.name}  gate={report['gate']} init={report['init']} width={report['width']} "
                   f"rank={report['rank']}"),
        ("trainable", f"{report['trainable']:,} = {report['budget']:.2%} of non-embedding "
                      f"(requested {cfg.method.budget:.0%})" if cfg.method.name != "finetune" else
         f"{report['trainable']:,} (all)"),
        ("losses", f"CE + {cfg.method.alpha}·sparsity + {cfg.method.beta}·gate_bce"),
        ("optimizer", f"AdamW lr={cfg.method.lr:g} β=({cfg.optim.beta1}, {cfg.optim.beta2}) wd={cfg.optim.weight_decay} "
                      f"{cfg.optim.schedule} warm-up {cfg.optim.warmup_steps}"),
        ("data", f"learn={dm_info.get('learn')} retain={dm_info.get('retain')} p(English)={cfg.data.p}"),
        ("steps", f"{cfg.trainer.max_steps} × {tokens_per_step:,} tokens = "
                  f"{cfg.trainer.max_steps * tokens_per_step:,} tokens (per device)"),
        ("precision", f"{cfg.trainer.precision} on {cfg.trainer.accelerator}"),
        ("run dir", str(run_dir)),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console = Console(file=sys.stderr)
    console.print(t)
    return "\n".join(f"{k}: {v}" for k, v in rows)


def build(cfg: RunConfig):
    """Backbone + extension + data module, as the run will use them."""
    import torch

    from . import extend
    from .backbone import load_backbone
    from .data import MixedLanguageDataModule

    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    backbone, tokenizer = load_backbone(cfg.backbone.name, dtype=getattr(torch, DTYPES[cfg.backbone.dtype]),
                                        seed=cfg.seed, trust_remote_code=cfg.backbone.trust_remote_code)
    m = cfg.method
    model = extend(backbone, method=m.name, budget=m.budget, gate=m.gate, init=m.init, init_divisor=m.init_divisor,
                   placement=m.placement, lora_alpha_ratio=m.lora_alpha_ratio)
    dm = MixedLanguageDataModule(cfg.data, tokenizer)
    return model, tokenizer, dm


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        print("Config groups: method=, lang=, backbone=, trainer=, experiment= (files in experiments/<group>/).")
        print("Every field of nr_lightning/config.py:RunConfig can be set as a dotted key, e.g. data.p=0.5.")
        return {}
    cfg = compose(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    resuming = cfg.ckpt_path is not None
    run_dir = run_dir_for(cfg)
    prepare_run_dir(run_dir, resuming)
    if cfg.trainer.dry_run:
        from .plan import dry_run

        return dry_run(cfg)

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from .callbacks import ForgettingCurves, GateSpectra, GateStatistics
    from .module import ExtensionModule

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    model, tokenizer, dm = build(cfg)
    dm.setup("fit")  # fail on missing / empty data before training starts
    module = ExtensionModule(model, cfg, languages=dm.languages)
    info = dm.describe() if hasattr(dm, "describe") else {}
    text = banner(cfg, module.report, info, run_dir)
    (run_dir / "plan.txt").write_text(text + "\n")

    ev = cfg.eval
    heldout = {}
    for name in dm.heldout_sources():
        if name.endswith("_indomain"):
            continue
        heldout[name] = dm.heldout_texts(name, max_docs=ev.max_docs)
    callbacks: list = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step{step:06d}", auto_insert_metric_name=False,
                        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps, save_last=True, save_top_k=-1),
        ForgettingCurves(heldout, tokenizer, every_n_steps=ev.every_n_steps, max_length=ev.max_length,
                         batch_size=ev.batch_size, at_start=ev.at_start and not resuming,
                         out_file=run_dir / "curves.json"),
    ]
    if ev.gate_stats and cfg.method.name in ("adapters", "sigmoid", "neutral"):
        batches = {}
        for name, texts in heldout.items():
            enc = tokenizer(texts[:4], return_tensors="pt", truncation=True, max_length=128, padding="max_length")
            batches[name] = enc["input_ids"]
        callbacks += [GateStatistics(batches, {k: 0 if k == "en" else 1 for k in batches}, ev.every_n_steps),
                      GateSpectra(ev.every_n_steps)]
    if sys.stderr.isatty():
        callbacks.append(RichProgressBar())
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="tb", default_hp_metric=False)
    t = cfg.trainer
    trainer = L.Trainer(
        max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, precision=t.precision, accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=cfg.optim.grad_clip or None, log_every_n_steps=t.log_every_n_steps, logger=logger,
        callbacks=callbacks, enable_checkpointing=True, default_root_dir=str(run_dir), num_sanity_val_steps=0,
        limit_val_batches=0, detect_anomaly=t.detect_anomaly, use_distributed_sampler=False,
        enable_progress_bar=True, enable_model_summary=False,
    )
    if t.compile:
        module.model = torch.compile(module.model)
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)

    result = {"run_dir": str(run_dir), "config": to_dict(cfg), "parameters": module.report,
              "global_step": trainer.global_step}
    if trainer.is_global_zero:
        from . import save_extension

        save_extension(model, run_dir / "extension")
        forgetting = next(c for c in callbacks if isinstance(c, ForgettingCurves))
        result["curves"] = forgetting.history
        result["final_bpb"] = forgetting.final
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"[nr-lightning] done: {run_dir} final bpb {json.dumps(result['final_bpb'])}", file=sys.stderr)
    return result


def cli() -> None:
    from .data.sources import DataSourceError

    try:
        main()
    except (ConfigError, DataSourceError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()

"""Evaluate a trained run (or a bare backbone): held-out bits-per-byte and multiple-choice benchmarks.

The library: ``evaluate(EvalRun(...))`` returns every number as a dict. The command line
(``python -m nr_lightning.evaluate``, ``nrl evaluate``) is nr_lightning/evaluation/cli.py.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ..config import ConfigError, RunConfig, from_dict


@dataclass
class EvalRun:
    run: str | None = None  # a run directory written by nr_lightning.train (uses its extension/ and config.yaml)
    ckpt: str | None = None  # run= only: score this training checkpoint of the run (e.g. checkpoints/step000040.ckpt, relative to the run) instead of its final extension/
    backbone: str | None = None  # evaluate a bare backbone instead (preset, local dir or hub id)
    langs: list[str] | None = None  # held-out sets to score; default: the run's languages (+ en forgetting set)
    tasks: list[str] | None = None  # task names (nr_lightning.evaluation.TASKS) or JSONL paths
    limit: int | None = None  # items per task, and held-out documents per language unless max_docs is given (quick checks)
    max_docs: int | None = 200  # held-out documents per language (None: all; 0: no bpb pass, downstream only)
    max_length: int = 1024  # context window for bpb (sliding window stride = max_length)
    batch_size: int = 8  # sequences per forward pass
    shots: int | None = None  # override every task's default shots
    normalization: str | None = None  # override every task's default normalisation
    out: str | None = None  # output JSON (default <run>/eval.json)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    data: dict = field(default_factory=dict)  # data overrides (e.g. data.new.heldout=...) for held-out sources
    seed: int = 0  # bare backbone only: the seed of a random preset (`tiny`)
    baseline: bool = True  # run= only: also evaluate the bare backbone (cached) and print every Δ against it


def check_args(ev: EvalRun) -> None:
    """Everything the evaluation will need, checked before a model is loaded or a number computed: the run
    directory's files and the task names (an unknown task used to surface only after the bpb pass)."""
    from . import TASKS

    if ev.ckpt and not ev.run:
        raise ConfigError("ckpt= is a checkpoint of a training run: give run=runs/<name> with it")
    if ev.run:
        run = Path(ev.run)
        for need, what in (("config.yaml", "a directory written by nr_lightning.train"),
                           ("extension/extension.json", "a finished run (resume it with ckpt_path=last)")):
            if not (run / need).is_file() and not (ev.ckpt and need.startswith("extension")):
                raise FileNotFoundError(f"{run / need} not found: run= must be {what}")
        if ev.ckpt and not checkpoint_path(ev).is_file():
            raise FileNotFoundError(f"ckpt={ev.ckpt}: {checkpoint_path(ev)} not found; the run's checkpoints: "
                                    f"{', '.join(sorted(p.name for p in (run / 'checkpoints').glob('*.ckpt'))) or 'none'}")
    for task in ev.tasks or []:
        if task not in TASKS and not (str(task).endswith(".jsonl") and Path(task).is_file()):
            raise ConfigError(f"unknown task {task!r}; registered tasks: {', '.join(sorted(TASKS))} "
                              f"(or the path of an existing .jsonl file)")
        if task not in TASKS:  # a task file of the user's: every item is checked now, not after the bpb pass
            from .tasks import load_jsonl

            try:
                load_jsonl(task)
            except UnicodeDecodeError as e:
                raise ConfigError(f"task file {task}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def checkpoint_path(ev: EvalRun) -> Path:
    """`ckpt=` as a path: as given if it exists, else relative to the run directory."""
    p = Path(ev.ckpt)
    return p if p.is_file() or p.is_absolute() else Path(ev.run) / p


def load_checkpoint_weights(model, path: Path, method: str) -> int:
    """Load the weights of a Lightning checkpoint written by nr_lightning.train into `model` (the run's backbone,
    extended as the run was: `extend_like`) and return its step. Only plain tensors are read (weights_only),
    and a checkpoint of another method, with missing extension weights or non-finite values is refused: an
    evaluation of damaged weights prints no number. The checkpoint format is Lightning's (a `state_dict` whose
    keys are the LightningModule's, `model.` + the parameter's name); no library loads it into a bare model."""
    import pickle

    import torch

    from ..extension import nonfinite_weight

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"ckpt={path} is not a checkpoint written by nr_lightning.train or is damaged ({first}); "
                          f"pass another one from {path.parent}") from None
    written_by = (ckpt.get("nrl") or {}).get("method")
    if written_by and written_by != method:
        raise ConfigError(f"ckpt={path} was written by a method={written_by} run, the run's config says "
                          f"method={method}: pass a checkpoint of this run")
    state = {k.removeprefix("model."): v for k, v in (ckpt.get("state_dict") or {}).items()}
    bad = nonfinite_weight(state)
    if bad is not None:
        raise ConfigError(f"ckpt={path} holds non-finite weights ({bad}): the run had diverged; evaluate an "
                          f"earlier checkpoint")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = trained - set(state), set(state) - set(model.state_dict())
    if missing or unexpected or not state:
        raise ConfigError(f"ckpt={path} does not fit the run's model (missing {sorted(missing)[:3]}, unexpected "
                          f"{sorted(unexpected)[:3]}): was it written by another run?")
    model.load_state_dict(state, strict=False)  # a frozen backbone is not in adapter checkpoints: it is the run's
    return int(ckpt.get("global_step", -1))


def load_model(ev: EvalRun):
    """(model, tokenizer, run config or None)."""

    from .. import load_extension
    from ..backbone import load_backbone

    run_cfg: RunConfig | None = None
    if ev.run:
        run = Path(ev.run)
        if not (run / "config.yaml").is_file():
            raise FileNotFoundError(f"{run}/config.yaml not found: run= must be a directory written by "
                                    f"nr_lightning.train")
        run_cfg = from_dict(OmegaConf.to_container(OmegaConf.load(run / "config.yaml")))
        model, tok = load_backbone(ev.backbone or run_cfg.backbone.name, seed=run_cfg.seed)
        if ev.ckpt:
            from ..extension import extend_like

            model = extend_like(model, run_cfg.method)
            step = load_checkpoint_weights(model, checkpoint_path(ev), run_cfg.method.name)
            print(f"  weights of {checkpoint_path(ev)} (step {step})", file=sys.stderr)
            model.eval().requires_grad_(False)
            return model, tok, run_cfg
        if not (run / "extension" / "extension.json").is_file():
            raise FileNotFoundError(f"{run}/extension not found: the run did not finish (resume it with "
                                    f"ckpt_path=last) or was not written by nr_lightning.train")
        model = load_extension(model, run / "extension")
    else:
        model, tok = load_backbone(ev.backbone, seed=ev.seed)
    model.eval().requires_grad_(False)  # never flip the global grad mode: callers may train afterwards
    return model, tok, run_cfg


def load_model_config(ev: EvalRun):
    """(None, None, run config) of ``ev.run`` without loading any weights."""
    return None, None, from_dict(OmegaConf.to_container(OmegaConf.load(Path(ev.run) / "config.yaml")))


def default_tasks(langs: list[str]) -> list[str]:
    from . import TASKS

    return [name for name, spec in TASKS.items() if spec.lang in langs and spec.fixture.is_file()]


def evaluate(ev: EvalRun) -> dict:
    import torch

    from ..data import DataConfig, MixedLanguageDataModule, open_source
    from . import bits_per_byte, multiple_choice

    check_args(ev)
    if ev.threads:
        torch.set_num_threads(ev.threads)
    run_cfg = from_dict(OmegaConf.to_container(OmegaConf.load(Path(ev.run) / "config.yaml"))) if ev.run else None
    data_cfg = run_cfg.data if run_cfg else DataConfig()
    if ev.data:
        data_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(data_cfg), ev.data))
    if ev.langs:
        data_cfg.learn = [x for x in ev.langs if x != "en"]
        data_cfg.retain = ["en"]
    dm = MixedLanguageDataModule(data_cfg, None)
    for name, spec in dm.heldout_sources().items():  # missing held-out files fail before the model loads
        if not name.endswith("_indomain") and ev.max_docs != 0:
            open_source(spec).files()
    model, tok, run_cfg = load_model(ev)
    dm = MixedLanguageDataModule(data_cfg, tok)
    result: dict = {"run": ev.run, "ckpt": str(checkpoint_path(ev)) if ev.ckpt else None, "backbone": ev.backbone or (run_cfg.backbone.name if run_cfg else None),
                    "config": OmegaConf.to_container(OmegaConf.structured(run_cfg)) if run_cfg else None,
                    "eval_args": OmegaConf.to_container(OmegaConf.structured(ev)), "bpb": {}, "tasks": {},
                    "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in dm.heldout_sources():
        if name.endswith("_indomain") or ev.max_docs == 0:
            continue
        texts = dm.heldout_texts(name, max_docs=ev.max_docs)
        t0 = time.perf_counter()
        result["bpb"][name] = bits_per_byte(model, tok, texts, max_length=ev.max_length, batch_size=ev.batch_size)
        print(f"  bpb {name:<4} {result['bpb'][name]:.4f}  ({len(texts)} docs, {time.perf_counter() - t0:.1f} s)",
              file=sys.stderr)
    langs = sorted({*dm.languages})
    tasks = default_tasks(langs) if ev.tasks is None else ev.tasks
    for task in tasks:
        t0 = time.perf_counter()
        r = multiple_choice(model, tok, task, shots=ev.shots, normalization=ev.normalization, limit=ev.limit,
                            batch_size=ev.batch_size)
        result["tasks"][task] = r
        print(f"  {task:<18} acc {r['acc']:.3f} acc_norm {r['acc_norm']:.3f} (n={r['n']}, "
              f"{time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    by_lang: dict[str, list[float]] = {}
    for task, r in result["tasks"].items():
        lang = task.rsplit("_", 1)[-1] if task.rsplit("_", 1)[-1] in ("en", "fr", "de") else "other"
        by_lang.setdefault(lang, []).append(r["acc_norm"])
    result["task_average"] = {k: sum(v) / len(v) for k, v in by_lang.items()}
    return result


if __name__ == "__main__":  # `python -m nr_lightning.evaluation.evaluate`: the command line lives in cli.py
    import runpy

    runpy.run_module("nr_lightning.evaluation.cli", run_name="__main__", alter_sys=True)

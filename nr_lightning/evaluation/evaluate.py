"""Evaluate a trained run (or a bare backbone): held-out bits-per-byte and multiple-choice benchmarks.

    python -m nr_lightning.evaluate run=runs/neutral-fr tasks=[arc_challenge_fr,mmlu_en] limit=20
    python -m nr_lightning.evaluate backbone=smollm2-135m langs=[fr,en] out=runs/backbone-fr/eval.json

Writes one JSON with every number plus the run's config (default: <run>/eval.json) and prints a table.
`tasks` defaults to every registered task in English and the run's languages that has a local fixture;
`tasks=[]` skips downstream tasks; `max_docs=0` skips the bpb pass (a downstream-only evaluation, written with
`out=<run>/eval_tasks.json` beside a full `eval.json`). `limit=N` also caps the held-out documents per
language at N unless `max_docs` is given (a quick check stays quick).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import ConfigError, RunConfig, from_dict
from ..io import write_json_atomic


@dataclass
class EvalRun:
    run: str | None = None  # a run directory written by nr_lightning.train (uses its extension/ and config.yaml)
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


def parse(argv: list[str]) -> EvalRun:
    dotted = []
    for a in argv:
        if a.startswith("--limit"):
            a = a.lstrip("-")
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not key=value (e.g. run=runs/x tasks=[mmlu_fr] limit=20)")
        dotted.append(a)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(EvalRun), OmegaConf.from_dotlist(dotted))
        ev: EvalRun = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad argument: {str(e).splitlines()[0]}; valid keys: "
                          f"{', '.join(EvalRun.__dataclass_fields__)}") from None
    if not ev.run and not ev.backbone:
        raise ConfigError("give run=runs/<name> (a trained run) or backbone=<preset|path> (a bare backbone)")
    from ..config import check_range

    for key, low, what in (("max_docs", 0, "documents per language; 0: no bpb pass"), ("limit", 1, "items per task"),
                           ("max_length", 1, "tokens"), ("batch_size", 1, "sequences"), ("shots", 0, "examples"),
                           ("threads", 0, "threads; 0: torch's default"), ("seed", 0, "a seed")):
        check_range(key, getattr(ev, key), low, None, what)
    if ev.limit is not None and not any(a.split("=", 1)[0] == "max_docs" for a in dotted):
        ev.max_docs = ev.limit if ev.max_docs is None else min(ev.max_docs, ev.limit)  # a quick check is quick
    return ev


def check_args(ev: EvalRun) -> None:
    """Everything the evaluation will need, checked before a model is loaded or a number computed: the run
    directory's files and the task names (an unknown task used to surface only after the bpb pass)."""
    from . import TASKS

    if ev.run:
        run = Path(ev.run)
        for need, what in (("config.yaml", "a directory written by nr_lightning.train"),
                           ("extension/extension.json", "a finished run (resume it with ckpt_path=last)")):
            if not (run / need).is_file():
                raise FileNotFoundError(f"{run / need} not found: run= must be {what}")
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
    result: dict = {"run": ev.run, "backbone": ev.backbone or (run_cfg.backbone.name if run_cfg else None),
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


def table(result: dict) -> str:
    """Markdown table; accuracies carry lm-eval's standard error, and with a backbone row every metric its Δ."""
    d = result.get("delta")
    lines = ["| metric | value |" + (" Δ vs backbone |" if d else ""), "|---|---|" + ("---|" if d else "")]

    def delta(v: float | None, fmt: str) -> str:
        return "" if not d else (f" {v:+{fmt}} |" if v is not None else " – |")

    def task_delta(k: str) -> str:
        if not d:
            return ""
        dt = d["tasks"].get(k)
        if not dt:
            return " – |"
        paired = f" (paired p = {dt['paired']['p']:.2g})" if dt.get("paired") else ""
        return f" {dt['acc']:+.3f} / {dt['acc_norm']:+.3f}{paired} |"

    for k, v in result["bpb"].items():
        lines.append(f"| bpb {k} | {v:.4f} |" + delta(d and d["bpb"].get(k), ".4f"))
    for k, r in result["tasks"].items():
        se, sen = r.get("acc_stderr"), r.get("acc_norm_stderr")
        value = (f"{r['acc']:.3f} ± {se:.3f} / {r['acc_norm']:.3f} ± {sen:.3f}" if se is not None
                 else f"{r['acc']:.3f} / {r['acc_norm']:.3f}")
        lines.append(f"| {k} acc / acc_norm (n={r['n']}) | {value} |" + task_delta(k))
    for k, v in result.get("task_average", {}).items():
        lines.append(f"| task average {k} | {v:.3f} |" + delta(d and d["task_average"].get(k), ".3f"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from ..cli_help import key_table

        print(__doc__)
        print("Keys (key=default  doc):")
        print(key_table(EvalRun))
        return {}
    ev = parse(argv)
    result = evaluate(ev)
    if ev.run and ev.baseline:
        from .baseline import backbone_row, baseline_file, deltas

        _, _, run_cfg = load_model_config(ev)
        base = backbone_row(ev, run_cfg)
        result["baseline"] = {"file": str(baseline_file(ev, run_cfg)), "bpb": base["bpb"], "tasks": base["tasks"],
                              "task_average": base.get("task_average", {})}
        result["delta"] = deltas(result, base)
    out = Path(ev.out) if ev.out else (Path(ev.run) / "eval.json" if ev.run else Path("eval.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result, default=str)
    print(table(result))
    print(f"[nr-lightning] wrote {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    from ..errors import run_cli

    run_cli(main)

"""Evaluate a trained run (or a bare backbone): held-out bits-per-byte and multiple-choice benchmarks.

    python -m nr_lightning.evaluate run=runs/neutral-fr tasks=[arc_challenge_fr,mmlu_en] limit=20
    python -m nr_lightning.evaluate backbone=smollm2-135m langs=[fr,en] out=runs/backbone-fr/eval.json
    python -m nr_lightning.evaluate run=runs/neutral-fr ckpt=checkpoints/step000040.ckpt   # a step of the run

Writes one JSON with every number plus the run's config (default: <run>/eval.json, or <run>/eval_<ckpt>.json for
`ckpt=`, a training checkpoint's weights) and prints a table.
`tasks` defaults to every registered task in English and the run's languages that has a local fixture;
`tasks=[]` skips downstream tasks; `max_docs=0` skips the bpb pass (a downstream-only evaluation, written with
`out=<run>/eval_tasks.json` beside a full `eval.json`). `limit=N` also caps the held-out documents per
language at N unless `max_docs` is given (a quick check stays quick).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import keyvalue
from ..errors import ConfigError, run_cli
from ..io import write_json_atomic
from . import evaluate as lib  # the module, looked up at call time (tests and sweeps replace lib.evaluate)
from .evaluate import EvalRun


def parse(argv: list[str]) -> EvalRun:
    ev = keyvalue.parse(EvalRun, argv, example="run=runs/x tasks=[mmlu_fr] limit=20")
    if not ev.run and not ev.backbone:
        raise ConfigError("give run=runs/<name> (a trained run) or backbone=<preset|path> (a bare backbone)")
    from ..config import check_range

    for key, low, what in (("max_docs", 0, "documents per language; 0: no bpb pass"), ("limit", 1, "items per task"),
                           ("max_length", 1, "tokens"), ("batch_size", 1, "sequences"), ("shots", 0, "examples"),
                           ("threads", 0, "threads; 0: torch's default"), ("seed", 0, "a seed")):
        check_range(key, getattr(ev, key), low, None, what)
    if ev.limit is not None and not any(a.lstrip("+-").split("=", 1)[0] == "max_docs" for a in argv):
        ev.max_docs = ev.limit if ev.max_docs is None else min(ev.max_docs, ev.limit)  # a quick check is quick
    return ev


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
    if keyvalue.help_requested(argv):
        print(__doc__)
        print(keyvalue.keys_help(EvalRun))
        return {}
    ev = parse(argv)
    result = lib.evaluate(ev)
    if ev.run and ev.baseline:
        from .baseline import backbone_row, baseline_file, deltas

        _, _, run_cfg = lib.load_model_config(ev)
        base = backbone_row(ev, run_cfg)
        result["baseline"] = {"file": str(baseline_file(ev, run_cfg)), "bpb": base["bpb"], "tasks": base["tasks"],
                              "task_average": base.get("task_average", {})}
        result["delta"] = deltas(result, base)
    # a checkpoint's numbers never overwrite the finished run's eval.json
    default = f"eval_{Path(ev.ckpt).stem}.json" if ev.ckpt else "eval.json"
    out = Path(ev.out) if ev.out else (Path(ev.run) / default if ev.run else Path(default))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result, default=str)
    print(table(result))
    print(f"[nr-lightning] wrote {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    run_cli(main)

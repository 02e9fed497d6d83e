"""Expand a sweep file (experiments/paper/*.yaml) into runs; train them one after another or as a SLURM array.

    python -m nr_lightning.sweep experiments/paper/table2_english_ratio.yaml scale=cpu --dry-run
    python -m nr_lightning.sweep table2_english_ratio scale=cpu --evaluate          # local, then eval + report
    python -m nr_lightning.sweep table8_learning_rate scale=paper --slurm --sbatch-args="--partition=gpu"
    python -m nr_lightning.sweep --list                                             # the paper's sweep files

A sweep file (YAML) holds:
  description: one line
  base:   [overrides applied to every run]
  grid:   {key: [values], ...}   cartesian product; a list of such mappings is the union of their products;
          an axis may also map labels to override lists: {model: {en1b: [backbone.name=...], ...}}
  runs:   [[overrides], ...] or [{name: ..., overrides: [...]}, ...]   explicit rows (non-product grids)
  exclude: [{key: value, ...}]  drop the expanded runs whose labels match every key of one entry
  scales: {cpu: [overrides], paper: {overrides: [...], grid: {...}}}   per-scale overrides (+ axes)
  name:   "t2-{method}-p{data.p}"   run name template; `-{scale}` is appended unless the template has {scale}

Overrides are applied in the order base, scale, scale axes, grid axes / run row, name=, then the command
line's extra overrides. A placeholder {key} reads the run's label for `key` (an axis label or the last
`key=value` override), else the composed config (e.g. {method.lr}). Every run's config is composed and
validated before anything starts. A run is finished when <run dir>/metrics.json exists (skipped on a
rerun); an unfinished run with checkpoints resumes with ckpt_path=last.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ..config import EXPERIMENTS, REPO, ConfigError, RunConfig, compose
from ..training.train import earlier_outputs, run_dir_for

SWEEPS = EXPERIMENTS / "paper"
SBATCH_SCRIPT = EXPERIMENTS / "slurm" / "train.sbatch"  # the scale-out launcher; reads line i+1 of $NRL_SWEEP
SWEEP_KEYS = {"description", "base", "grid", "runs", "exclude", "scales", "name"}
RESERVED = ("name", "run_dir")  # set by the sweep itself; not accepted as extra overrides
Axis = list[tuple[str, list[str]]]  # [(label, overrides)]


@dataclass
class Scale:
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, Axis] = field(default_factory=dict)


@dataclass
class Sweep:
    path: Path
    description: str
    base: list[str]
    grids: list[dict[str, Axis]]
    rows: list[tuple[str | None, list[str]]]
    exclude: list[dict[str, str]]
    scales: dict[str, Scale]
    name: str

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class Run:
    name: str
    overrides: list[str]  # everything passed to nr_lightning.train, name= included
    labels: dict[str, str]
    cfg: RunConfig
    run_dir: Path

    def state(self) -> str:
        """done (metrics.json exists) | resume (checkpoints or other outputs, no metrics.json) | new."""
        if (self.run_dir / "metrics.json").is_file():
            return "done"
        ckpts = self.run_dir / "checkpoints"
        # outputs without a checkpoint (killed before the first one): ckpt_path=last restarts it from scratch,
        # where a plain start would be refused for the earlier outputs
        if ckpts.is_dir() and any(ckpts.glob("*.ckpt")) or earlier_outputs(self.run_dir):
            return "resume"
        return "new"

    def train_args(self, resume: bool | None = None) -> list[str]:
        """Overrides for nr_lightning.train; adds ckpt_path=last when resuming (unless one is given)."""
        resume = self.state() == "resume" if resume is None else resume
        has_ckpt = any(o.split("=", 1)[0].lstrip("+-") == "ckpt_path" for o in self.overrides)
        return [*self.overrides, "ckpt_path=last"] if resume and not has_ckpt else list(self.overrides)


class SweepError(ValueError):
    """A malformed sweep file or a sweep whose runs do not compose."""


# ----------------------------------------------------------------------------------------------- loading
def fmt(value: Any) -> str:
    """A YAML scalar as it appears in an override and in a run name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SweepError(f"{where}: expected a list of key=value strings, got {value!r}")
    for v in value:
        if "=" not in v:
            raise SweepError(f"{where}: {v!r} is not key=value")
    return list(value)


def _axis(key: str, values: Any, where: str) -> Axis:
    if isinstance(values, dict):  # named axis: label -> overrides
        return [(str(label), _str_list(ovr, f"{where}.{key}.{label}")) for label, ovr in values.items()]
    if not isinstance(values, list) or not values:
        raise SweepError(f"{where}.{key}: expected a non-empty list of values or a mapping label -> overrides")
    return [(fmt(v), [f"{key}={fmt(v)}"]) for v in values]


def _grid(node: Any, where: str) -> dict[str, Axis]:
    if not isinstance(node, dict):
        raise SweepError(f"{where}: expected a mapping key -> [values]")
    return {str(k): _axis(str(k), v, where) for k, v in node.items()}


def resolve_path(spec: str | Path) -> Path:
    """A sweep file path, or a bare name of a file in experiments/paper/."""
    p = Path(spec)
    for cand in (p, SWEEPS / p, SWEEPS / f"{p}.yaml"):
        if cand.is_file():
            return cand
    names = ", ".join(sorted(x.stem for x in SWEEPS.glob("*.yaml")))
    raise SweepError(f"sweep file {spec!r} not found; files in {SWEEPS}: {names}")


def load_sweep(spec: str | Path) -> Sweep:
    """Parse and check a sweep file (structure only; configs are checked by `expand`)."""
    path = resolve_path(spec)
    node = yaml.safe_load(path.read_text()) or {}
    if not isinstance(node, dict):
        raise SweepError(f"{path}: expected a mapping at the top level")
    unknown = set(node) - SWEEP_KEYS
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {sorted(SWEEP_KEYS)}")
    grid = node.get("grid")
    grids = [] if grid is None else [_grid(g, f"{path.name}: grid[{i}]") for i, g in enumerate(grid)] \
        if isinstance(grid, list) else [_grid(grid, f"{path.name}: grid")]
    rows: list[tuple[str | None, list[str]]] = []
    for i, r in enumerate(node.get("runs") or []):
        if isinstance(r, dict):
            if set(r) - {"name", "overrides"}:
                raise SweepError(f"{path.name}: runs[{i}] takes only name and overrides, got {sorted(r)}")
            rows.append((r.get("name"), _str_list(r.get("overrides"), f"{path.name}: runs[{i}]")))
        else:
            rows.append((None, _str_list(r, f"{path.name}: runs[{i}]")))
    scales: dict[str, Scale] = {}
    for s, v in (node.get("scales") or {}).items():
        if isinstance(v, dict):
            if set(v) - {"overrides", "grid"}:
                raise SweepError(f"{path.name}: scales.{s} takes overrides and grid, got {sorted(v)}")
            scales[str(s)] = Scale(_str_list(v.get("overrides"), f"scales.{s}"),
                                   _grid(v.get("grid") or {}, f"{path.name}: scales.{s}.grid"))
        else:
            scales[str(s)] = Scale(_str_list(v, f"{path.name}: scales.{s}"))
    exclude = []
    for e in node.get("exclude") or []:
        if not isinstance(e, dict):
            raise SweepError(f"{path.name}: exclude entries are mappings key -> value, got {e!r}")
        exclude.append({str(k): fmt(v) for k, v in e.items()})
    return Sweep(path=path, description=str(node.get("description", "")), base=_str_list(node.get("base"), "base"),
                 grids=grids, rows=rows, exclude=exclude, scales=scales,
                 name=str(node.get("name") or path.stem + "-{_index}"))


# --------------------------------------------------------------------------------------------- expanding
def _product(axes: dict[str, Axis]) -> list[tuple[dict[str, str], list[str]]]:
    """Cartesian product of axes -> [(labels, overrides)]."""
    out = []
    for combo in itertools.product(*axes.values()):
        labels = {k: label for k, (label, _) in zip(axes, combo)}
        overrides = [o for _, ovr in combo for o in ovr]
        out.append((labels, overrides))
    return out or [({}, [])]


def _labels_from(overrides: list[str]) -> dict[str, str]:
    out = {}
    for o in overrides:
        k, v = o.split("=", 1)
        out[k.lstrip("+-")] = v
    return out


PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def render_name(template: str, labels: dict[str, str], cfg: RunConfig, extra: dict[str, str]) -> str:
    """Fill {key} from labels, then extra ({scale}, {sweep}, {_index}), then the composed config."""
    structured = OmegaConf.structured(cfg)

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key in labels:
            return labels[key]
        if key in extra:
            return extra[key]
        value = OmegaConf.select(structured, key, default="__missing__")
        if value == "__missing__" or OmegaConf.is_config(value):
            raise SweepError(f"name template {template!r}: {{{key}}} is neither a label of the run "
                             f"({', '.join(sorted(labels))}) nor a config field")
        return fmt(value)

    name = PLACEHOLDER.sub(sub, template)
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", name).strip("_")


def expand(sweep: Sweep, scale: str, extra: list[str] | None = None, only: str | None = None) -> list[Run]:
    """Every run of the sweep at `scale`, composed and validated; raises SweepError listing every bad run."""
    extra = list(extra or [])
    if scale not in sweep.scales:
        raise SweepError(f"{sweep.path.name} has no scale {scale!r}; scales: {', '.join(sweep.scales)}")
    for o in extra:
        if "=" not in o:
            raise SweepError(f"extra override {o!r} is not key=value")
        if o.split("=", 1)[0].lstrip("+-") in RESERVED:
            raise SweepError(f"{o!r}: the sweep names its runs itself (use runs_root=PATH to move them)")
    sc = sweep.scales[scale]
    entries: list[tuple[str | None, dict[str, str], list[str]]] = []
    for grid in sweep.grids:
        entries += [(None, lab, ovr) for lab, ovr in _product(grid)]
    entries += [(n, {}, ovr) for n, ovr in sweep.rows]
    if not entries:
        entries = [(None, {}, [])]
    scale_axes = _product(sc.grid)
    runs: dict[str, Run] = {}
    composed: dict[tuple[str, ...], RunConfig] = {}
    errors: list[str] = []
    template = sweep.name if "{scale}" in sweep.name else sweep.name + "-{scale}"
    index = 0
    for (fixed, lab, ovr), (slab, sovr) in itertools.product(entries, scale_axes):
        overrides = [*sweep.base, *sc.overrides, *sovr, *ovr]
        labels = {**_labels_from(overrides), **slab, **lab}
        if any(all(labels.get(k) == v for k, v in ex.items()) for ex in sweep.exclude):
            continue
        key = tuple(overrides)
        if key in composed:  # the same run listed twice (e.g. by two grids): keep the first
            continue
        try:
            composed[key] = cfg = compose([*overrides, *extra])
        except ConfigError as e:
            errors.append(f"  {' '.join(overrides)}\n    -> {e}")
            continue
        info = {"scale": scale, "sweep": sweep.stem, "_index": str(index)}
        name = render_name(fixed, labels, cfg, info) if fixed else render_name(template, labels, cfg, info)
        if fixed and "{scale}" not in fixed:
            name = f"{name}-{scale}"
        index += 1
        cfg.name = name
        run = Run(name=name, overrides=[*overrides, f"name={name}", *extra], labels=labels, cfg=cfg,
                  run_dir=run_dir_for(cfg).resolve())
        if name in runs:
            if _labels_from(runs[name].overrides) != _labels_from(run.overrides):
                errors.append(f"  two different runs are both named {name!r}: add the differing key to the "
                              f"name template {sweep.name!r}")
            continue  # the same run listed twice (e.g. by two grids): keep one
        runs[name] = run
    if errors:
        raise SweepError(f"{sweep.path.name} (scale={scale}): {len(errors)} run(s) do not compose:\n"
                         + "\n".join(errors))
    out = list(runs.values())
    if only:
        out = [r for r in out if any(fnmatch.fnmatch(r.name, pat) for pat in only.split(","))]
    return out


# -------------------------------------------------------------------------------------------------- local
def _final_bpb(run: Run) -> dict:
    try:
        return json.loads((run.run_dir / "metrics.json").read_text()).get("final_bpb") or {}
    except (OSError, ValueError):
        return {}


def log(msg: str) -> None:
    print(f"[sweep] {msg}", file=sys.stderr, flush=True)


def train_one(args: list[str], in_process: bool) -> None:
    """One training run; raises on failure."""
    if in_process:
        from ..training.train import main as train_main

        train_main(args)
        return
    proc = subprocess.run([sys.executable, "-m", "nr_lightning.train", *args], cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"nr_lightning.train exited with status {proc.returncode}")


def run_local(runs: list[Run], in_process: bool = False, fail_fast: bool = False) -> list[dict]:
    """Train every unfinished run in order; returns one summary row per run."""
    rows = []
    for i, run in enumerate(runs, 1):
        state = run.state()
        row: dict[str, Any] = {"run": run.name, "status": state, "seconds": 0.0}
        if state == "done":
            log(f"{i}/{len(runs)} {run.name}: finished ({run.run_dir / 'metrics.json'} exists), skipped")
            row["status"] = "skipped"
        else:
            args = run.train_args()
            log(f"{i}/{len(runs)} {run.name}: {'resuming' if state == 'resume' else 'training'}: "
                f"python -m nr_lightning.train {shlex.join(args)}")
            t0 = time.perf_counter()
            try:
                train_one(args, in_process)
                row["status"] = "resumed" if state == "resume" else "trained"
            except (Exception, SystemExit) as e:  # one failed run must not stop the sweep
                row["status"] = "FAILED"
                row["error"] = f"{type(e).__name__}: {e}"
                log(f"{run.name} failed: {row['error']}")
                if in_process:
                    traceback.print_exc()
                if fail_fast:
                    rows.append(row)
                    break
            row["seconds"] = time.perf_counter() - t0
        bpb = _final_bpb(run)
        row["bpb_en"] = bpb.get("en")
        row["bpb_target"] = bpb.get(run.cfg.lang)
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    """Markdown table of a local sweep."""
    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| run | status | time (s) | bpb en | bpb target |", "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['status']} | {r['seconds']:.0f} | {f(r.get('bpb_en'))} | {f(r.get('bpb_target'))} |"
              for r in rows]
    return "\n".join(lines)


def evaluate_runs(runs: list[Run], eval_args: list[str], in_process: bool) -> None:
    """`nr_lightning.evaluate` on every finished run without an up-to-date eval.json, and on each bare backbone."""
    done = [r for r in runs if r.state() == "done"]
    jobs: list[tuple[str, list[str], Path]] = []
    for r in done:
        ev = r.run_dir / "eval.json"
        if ev.is_file() and ev.stat().st_mtime >= (r.run_dir / "metrics.json").stat().st_mtime:
            log(f"{r.name}: eval.json is up to date, skipped")
            continue
        jobs.append((r.name, [f"run={r.run_dir}", *eval_args], ev))
    seen = set()
    for r in done:  # the reference star of the report: the untouched backbone, once per backbone and language
        key = (r.cfg.backbone.name, r.cfg.lang)
        if key in seen:
            continue
        seen.add(key)
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", r.cfg.backbone.name)
        out = r.run_dir.parent / f"backbone-{label}-{r.cfg.lang}" / "eval.json"
        if out.is_file():
            continue
        d = r.cfg.data
        data = [f"data.{k}={v}" for k, v in (("new.heldout", d.new.heldout), ("en.heldout", d.en.heldout),
                                              ("heldout_en", d.heldout_en), ("corpora_dir", d.corpora_dir)) if v]
        jobs.append((f"backbone {r.cfg.backbone.name} ({r.cfg.lang})",
                     [f"backbone={r.cfg.backbone.name}", f"langs=[en,{r.cfg.lang}]", f"out={out}", *data,
                      *eval_args], out))
    for label, args, _ in jobs:
        log(f"evaluate {label}: python -m nr_lightning.evaluate {shlex.join(args)}")
        try:
            if in_process:
                from ..evaluation.evaluate import main as eval_main

                eval_main(args)
            else:
                rc = subprocess.run([sys.executable, "-m", "nr_lightning.evaluate", *args], cwd=REPO).returncode
                if rc:
                    raise RuntimeError(f"nr_lightning.evaluate exited with status {rc}")
        except (Exception, SystemExit) as e:
            log(f"evaluate {label} failed: {type(e).__name__}: {e}")


def report(runs: list[Run], out: Path) -> None:
    """nr_lightning.report over the sweep's finished runs (+ backbone references) into `out`."""
    from ..evaluation.report import main as report_main

    dirs = {r.run_dir for r in runs if r.state() == "done"}
    if not dirs:
        log("no finished run: no report")
        return
    refs = {p.parent for r in runs for p in r.run_dir.parent.glob(f"backbone-*-{r.cfg.lang}/eval.json")}
    report_main([*map(str, sorted(dirs | refs)), "--out", str(out)])


# -------------------------------------------------------------------------------------------------- slurm
def slurm_resources(runs: list[Run]) -> list[str]:
    """sbatch options (nodes, tasks, GPUs per node) shared by every run of the array."""
    shapes = set()
    for r in runs:
        t = r.cfg.trainer
        gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and t.devices not in (None, "auto"))
        n = int(t.devices) if isinstance(t.devices, int) or str(t.devices).isdigit() else 1
        shapes.add((t.num_nodes, n if gpu else 1, n if gpu else 0))
    if len(shapes) > 1:
        raise SweepError(f"the runs need different SLURM shapes {sorted(shapes)} (nodes, tasks, GPUs per node): "
                         f"one job array needs one shape; launch subsets with --only")
    nodes, tasks, gpus = shapes.pop()
    opts = [f"--nodes={nodes}", f"--ntasks-per-node={tasks}"]
    return opts + ([f"--gpus-per-node={gpus}"] if gpus else [])


def submit_slurm(sweep: Sweep, scale: str, runs: list[Run], script: Path, sbatch_args: list[str],
                 max_parallel: int | None, dry_run: bool) -> list[str] | None:
    """Write one line of overrides per unfinished run and submit them as one `sbatch --array` job.

    Contract of experiments/slurm/train.sbatch: array task i trains line i+1 of $NRL_SWEEP (comments and blank
    lines skipped, whitespace-split) and appends trainer.devices/num_nodes/accelerator and ckpt_path=last, so
    a requeued or resubmitted task resumes from its last checkpoint and a fresh one starts from scratch.
    """
    todo = [r for r in runs if r.state() != "done"]
    for r in runs:
        if r.state() == "done":
            log(f"{r.name}: finished, not submitted")
    if not todo:
        log("every run is finished: nothing to submit")
        return None
    for r in todo:
        bad = [o for o in r.overrides if o != o.strip() or any(c.isspace() for c in o)]
        if bad:
            raise SweepError(f"{r.name}: overrides with whitespace cannot go through the array file: {bad}")
    root = todo[0].run_dir.parent / "_sweeps"
    lines_file = root / f"{sweep.stem}-{scale}-{time.strftime('%Y%m%d-%H%M%S')}.overrides"
    header = f"# {sweep.path.name} scale={scale}: {len(todo)} run(s), array task i = line i+1 (comments skipped)"
    lines = [" ".join(r.overrides) for r in todo]
    array = f"0-{len(todo) - 1}" + (f"%{max_parallel}" if max_parallel else "")
    cmd = ["sbatch", f"--array={array}", f"--job-name=nrl-{sweep.stem}-{scale}",
           f"--export=ALL,NRL_SWEEP={lines_file},NRL_PYTHON={sys.executable}",
           f"--output={root / 'logs' / '%x_%A_%a.out'}", *slurm_resources(todo), *sbatch_args, str(script)]
    if dry_run:
        print(f"# {lines_file} (not written: --dry-run)")
        print("\n".join(lines))
        print("# " + shlex.join(cmd))
        return cmd
    if not script.is_file():
        raise SweepError(f"{script} not found: the array script (experiments/slurm/train.sbatch) is needed")
    if shutil.which("sbatch") is None:
        raise SweepError("sbatch not found on PATH: --slurm needs a SLURM login node (or run locally without it)")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    lines_file.write_text(header + "\n" + "\n".join(lines) + "\n")
    log(f"{len(todo)} array task(s), overrides in {lines_file}")
    log(shlex.join(cmd))
    proc = subprocess.run(cmd, env={**os.environ, "NRL_SWEEP": str(lines_file)}, cwd=REPO, capture_output=True,
                          text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        raise SweepError(f"sbatch failed (status {proc.returncode}): {proc.stderr.strip()}")
    return cmd


# ---------------------------------------------------------------------------------------------------- cli
def print_plan(sweep: Sweep, scale: str, runs: list[Run]) -> None:
    print(f"# {sweep.path.relative_to(REPO) if sweep.path.is_relative_to(REPO) else sweep.path}: "
          f"{sweep.description} (scale={scale}, {len(runs)} runs)")
    for r in runs:
        print(f"{r.name}  [{r.state()}]")
        print(f"    python -m nr_lightning.train {shlex.join(r.train_args())}")


def list_sweeps() -> None:
    for p in sorted(SWEEPS.glob("*.yaml")):
        s = load_sweep(p)
        print(f"{p.stem:<28} {s.description}  (scales: {', '.join(s.scales)})")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m nr_lightning.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", nargs="?", help="sweep file, or a name in experiments/paper/")
    ap.add_argument("overrides", nargs="*", help="scale=cpu|paper and extra key=value overrides for every run")
    ap.add_argument("--dry-run", action="store_true", help="print the expanded runs; launch nothing")
    ap.add_argument("--slurm", action="store_true", help="submit the unfinished runs as one SLURM job array")
    ap.add_argument("--evaluate", action="store_true", help="after a local sweep, evaluate every run (+ backbone)")
    ap.add_argument("--eval-args", default="", help="extra nr_lightning.evaluate arguments, e.g. 'tasks=[] limit=20'")
    ap.add_argument("--only", default=None, help="comma-separated glob(s) on run names, e.g. 't8-neutral-*'")
    ap.add_argument("--in-process", action="store_true", help="train in this process (default: one subprocess "
                                                              "per run, so a crash or OOM does not end the sweep)")
    ap.add_argument("--fail-fast", action="store_true", help="stop the local sweep at the first failed run")
    ap.add_argument("--sbatch-args", default="", help="extra sbatch options, e.g. '--partition=gpu --time=48:00:00'")
    ap.add_argument("--sbatch-script", default=str(SBATCH_SCRIPT), help="array script (line i+1 of $NRL_SWEEP)")
    ap.add_argument("--max-parallel", type=int, default=None, help="at most N array tasks at once (--array=0-M%%N)")
    ap.add_argument("--report-dir", default=None, help="report folder (default <runs_root>/_sweeps/<sweep>-<scale>)")
    ap.add_argument("--list", action="store_true", help="list the sweep files in experiments/paper/")
    args = ap.parse_intermixed_args(argv)
    if args.list or not args.sweep:
        list_sweeps()
        return []
    scale, extra = "cpu", []
    for o in args.overrides:
        if o.startswith("scale="):
            scale = o.split("=", 1)[1]
        else:
            extra.append(o)
    sweep = load_sweep(args.sweep)
    runs = expand(sweep, scale, extra, only=args.only)
    if not runs:
        raise SweepError(f"no run left after --only={args.only!r}")
    if args.slurm:
        submit_slurm(sweep, scale, runs, Path(args.sbatch_script), shlex.split(args.sbatch_args),
                     args.max_parallel, args.dry_run)
        return []
    if args.dry_run:
        print_plan(sweep, scale, runs)
        return []
    log(f"{sweep.stem} scale={scale}: {len(runs)} run(s), {sum(r.state() == 'done' for r in runs)} finished")
    rows = run_local(runs, in_process=args.in_process, fail_fast=args.fail_fast)
    print(f"\n## {sweep.stem} (scale={scale})\n\n{summary(rows)}\n")
    if args.evaluate:
        evaluate_runs(runs, shlex.split(args.eval_args), args.in_process)
    out = Path(args.report_dir) if args.report_dir else runs[0].run_dir.parent / "_sweeps" / f"{sweep.stem}-{scale}"
    report(runs, out)
    return rows


def cli() -> None:
    from ..errors import run_cli

    try:
        rows = run_cli(main)
    except BrokenPipeError:  # `... --dry-run | head`
        sys.stderr.close()
        sys.exit(0)
    if any(r["status"] == "FAILED" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    cli()

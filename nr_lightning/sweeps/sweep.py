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
  scales: {cpu: [overrides], paper: {overrides: [...], grid: {...}, evaluate: [...]}}   per-scale overrides
          (+ axes, + the nr_lightning.evaluate arguments that `--evaluate` uses at that scale)
  name:   "t2-{method}-p{data.p}"   run name template; `-{scale}` is appended unless the template has {scale}

Overrides are applied in the order base, scale, scale axes, grid axes / run row, name=, then the command
line's extra overrides. A placeholder {key} reads the run's label for `key` (an axis label or the last
`key=value` override), else the composed config (e.g. {method.lr}). Every run's config is composed and
validated before anything starts. A run is finished when <run dir>/metrics.json exists (skipped on a
rerun); an unfinished run with checkpoints resumes with ckpt_path=last. With --evaluate (and --archive) each
run is evaluated (and archived) as soon as it finishes, before the next one starts, so a sweep cut short by
the end of a session keeps complete results for every run it finished.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..config import REPO
from .runners import (
    SBATCH_SCRIPT,
    archive_run,
    evaluate_run,
    log,
    report,
    restore_archived,
    run_local,
    submit_slurm,
    summary,
)
from .spec import SWEEPS, Run, Sweep, SweepError, expand, load_sweep


# ---------------------------------------------------------------------------------------------------- cli
def print_runs(sweep: Sweep, scale: str, runs: list[Run]) -> None:
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
    ap.add_argument("--evaluate", action="store_true", help="evaluate each run as soon as it finishes (+ its backbone "
                                                            "once), with the scale's `evaluate` arguments")
    ap.add_argument("--eval-args", default="", help="extra nr_lightning.evaluate arguments, e.g. 'tasks=[] limit=20'")
    ap.add_argument("--archive", default=None, help="copy each finished (and evaluated) run's small files (configs, "
                                                    "curves, metrics, eval JSON; no weights) to DIR/<run>/; runs "
                                                    "found finished there are restored, not trained again")
    ap.add_argument("--retrain", action="store_true", help="with --archive: train the selected runs again even if the "
                                                           "archive holds them finished (e.g. to add an evaluation or "
                                                           "check that a row reproduces); their archived files are "
                                                           "replaced (git keeps the old ones) when the new run is done. A run finished in its "
                                                           "own directory is still skipped: move that away first")
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
    if args.max_parallel is not None and args.max_parallel < 1:
        raise SweepError(f"bad value --max-parallel={args.max_parallel}: at least 1 array task at once")
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
        print_runs(sweep, scale, runs)
        return []
    log(f"{sweep.stem} scale={scale}: {len(runs)} run(s), {sum(r.state() == 'done' for r in runs)} finished")
    again: set[str] = set()
    if args.retrain and not args.archive:
        raise SweepError("--retrain trains again the rows an --archive holds finished: give --archive DIR too "
                         "(a run finished in its own directory is skipped either way: move that directory away)")
    if args.archive and args.retrain:
        arch = Path(args.archive)
        again = {r.name for r in runs if r.state() == "new" and (arch / r.run_dir.name / "metrics.json").is_file()}
        log(f"--retrain: {len(again)} run(s) finished in the archive will be trained again, their archived files "
            f"replaced: {', '.join(sorted(again)) or '-'}")
        here = [str(r.run_dir) for r in runs if r.state() == "done"]
        if here:
            log(f"--retrain: finished here, so not trained again (move them away to retrain): {', '.join(here)}")
    elif args.archive:
        restore_archived(runs, Path(args.archive))
    eval_args = [*sweep.scales[scale].evaluate, *shlex.split(args.eval_args)]
    seen: set = set()

    def after(run: Run) -> None:
        if args.evaluate:
            evaluate_run(run, eval_args, args.in_process, seen, Path(args.archive) if args.archive else None)
        if args.archive:
            archive_run(run, Path(args.archive), replace=run.name in again)

    rows = run_local(runs, in_process=args.in_process, fail_fast=args.fail_fast,
                     after=after if args.evaluate or args.archive else None)
    print(f"\n## {sweep.stem} (scale={scale})\n\n{summary(rows)}\n")
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
    if any(r["status"] == "interrupted" for r in rows):
        sys.exit(3)  # as nr_lightning.train: preempted, checkpoint written; run the sweep again to resume


if __name__ == "__main__":
    cli()

"""Running an expanded sweep: one run after another on this machine (finished runs skipped, unfinished
ones resumed, each evaluated and archived as it finishes), then the report; or every unfinished run as one
SLURM job array through experiments/slurm/train.sbatch.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import EXPERIMENTS, REPO
from ..io import write_json_atomic
from ..paths import backbone_reference_dir
from .spec import Run, Sweep, SweepError

SBATCH_SCRIPT = EXPERIMENTS / "slurm" / "train.sbatch"  # the scale-out launcher; reads line i+1 of $NRL_SWEEP


# -------------------------------------------------------------------------------------------------- local
def _final_bpb(run: Run) -> dict:
    try:
        return json.loads((run.run_dir / "metrics.json").read_text(encoding="utf-8")).get("final_bpb") or {}
    except (OSError, ValueError):
        return {}


def log(msg: str) -> None:
    print(f"[sweep] {msg}", file=sys.stderr, flush=True)


PREEMPTED_EXIT = 3  # nr_lightning.train's status for "checkpoint written, resume with ckpt_path=last"


class Interrupted(RuntimeError):
    """The run was preempted (SIGUSR1/SIGTERM/SIGINT): it checkpointed; the next sweep resumes it."""


def train_one(args: list[str], in_process: bool) -> None:
    """One training run; raises Interrupted when it was preempted, another exception on failure."""
    if in_process:
        from ..training.train import main as train_main

        if train_main(args).get("preempted"):
            raise Interrupted("preempted: checkpoint written")
        return
    import signal

    from ..training.preemption import PREEMPTION_SIGNALS

    # The child runs in its own process group, and this process forwards each termination signal to it once:
    # a terminal's Ctrl+C or a `kill` of the sweep reaches the run exactly once (it checkpoints and exits 3)
    # instead of the sweep dying first and subprocess.run killing the run before its checkpoint.
    proc = subprocess.Popen([sys.executable, "-m", "nr_lightning.train", *args], cwd=REPO, process_group=0)

    def forward(signum: int, frame) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in PREEMPTION_SIGNALS}
    try:
        rc = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if rc == PREEMPTED_EXIT:
        raise Interrupted(f"nr_lightning.train was preempted (status {rc}): checkpoint written")
    if rc != 0:
        raise RuntimeError(f"nr_lightning.train exited with status {rc}")


def run_local(runs: list[Run], in_process: bool = False, fail_fast: bool = False,
              after: Callable[[Run], None] | None = None) -> list[dict]:
    """Train every unfinished run in order; returns one summary row per run. `after(run)` is called on each
    finished run (trained now or earlier) before the next one starts: evaluating and archiving there means a
    session that ends mid-sweep loses nothing of the runs that finished."""
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
            except Interrupted as e:  # a termination signal: stop the sweep; its next start resumes this run
                row["status"] = "interrupted"
                row["seconds"] = time.perf_counter() - t0
                log(f"{run.name} interrupted ({e}); run the sweep again to resume it")
                rows.append(row)
                break
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
        if after is not None and run.state() == "done":
            after(run)
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


def _reference_stamp(run: Run, args: list[str]) -> dict | None:
    """What identifies a backbone reference evaluation: the weights' fingerprint and the evaluate arguments."""
    from ..backbone import weights_sha256

    sha = weights_sha256(run.cfg.backbone.name)
    return {"weights_sha256": sha, "eval_args": args} if sha else None


def find_reference(archive: Path | None, stamp: dict | None) -> Path | None:
    """An archived evaluation (a run's `base_eval.json` or an `eval.json`) of the very same weights with the same
    evaluate arguments. The English base is rebuilt by every session, bit-identically on the same kind of CPU
    (docs/reproduction.md): its evaluation (half an hour with ARC-Easy) need not be recomputed then."""
    if archive is None or stamp is None or not archive.is_dir():
        return None
    for p in sorted(archive.glob("*/*.json")):
        if p.name not in ("base_eval.json", "eval.json"):
            continue
        try:
            ref = json.loads(p.read_text(encoding="utf-8")).get("reference")
        except (OSError, ValueError, AttributeError):
            continue
        if ref == stamp:
            return p
    return None


def _eval_jobs(run: Run, eval_args: list[str], seen: set,
               archive: Path | None = None) -> list[tuple[str, list[str], dict | None]]:
    """The evaluations a finished run still needs: its own (unless eval.json is newer than metrics.json) and,
    once per backbone and language (`seen`), the untouched backbone as the report's reference, unless `archive`
    holds an evaluation of the same weights with the same arguments (then copied, not recomputed). A job is
    (label, evaluate arguments, the stamp to record in its output or None)."""
    jobs: list[tuple[str, list[str], dict | None]] = []
    ev = run.run_dir / "eval.json"
    if not (run.run_dir / "extension" / "extension.json").is_file():
        # a row restored from --archive has its small files but no weights (never committed): keep its numbers
        log(f"{run.name}: no weights here (restored from the archive?): its eval.json is kept, not recomputed")
    elif ev.is_file() and ev.stat().st_mtime >= (run.run_dir / "metrics.json").stat().st_mtime:
        log(f"{run.name}: eval.json is up to date, skipped")
    else:
        jobs.append((run.name, [f"run={run.run_dir}", *eval_args], None))
    key = (run.cfg.backbone.name, run.cfg.lang)
    if key not in seen:
        seen.add(key)
        out = backbone_reference(run)
        if not out.is_file():
            d = run.cfg.data
            data = [f"data.{k}={v}" for k, v in (("new.heldout", d.new.heldout), ("en.heldout", d.en.heldout),
                                                  ("heldout_en", d.heldout_en), ("corpora_dir", d.corpora_dir)) if v]
            # `baseline` only applies to run= evaluations
            own = [a for a in eval_args if a.split("=", 1)[0] != "baseline"]
            args = [f"backbone={run.cfg.backbone.name}", f"langs=[en,{run.cfg.lang}]", *data, *own]
            stamp = _reference_stamp(run, args)
            found = find_reference(archive, stamp)
            if found is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, out)
                log(f"backbone {run.cfg.backbone.name} ({run.cfg.lang}): the same weights (sha256 "
                    f"{stamp['weights_sha256'][:12]}) were evaluated with the same arguments in {found}: reused")
            else:
                jobs.append((f"backbone {run.cfg.backbone.name} ({run.cfg.lang})", [*args, f"out={out}"],
                             stamp))
    return jobs


def stamp_reference(out: Path, stamp: dict) -> None:
    """Record in a backbone reference `eval.json` which weights and arguments produced it (`find_reference`)."""
    write_json_atomic(out, {**json.loads(out.read_text(encoding="utf-8")), "reference": stamp})


def evaluate_run(run: Run, eval_args: list[str], in_process: bool, seen: set, archive: Path | None = None) -> None:
    """Evaluate one finished run (and its backbone reference, once); a failure is logged, not raised."""
    for label, args, stamp in _eval_jobs(run, eval_args, seen, archive):
        log(f"evaluate {label}: python -m nr_lightning.evaluate {shlex.join(args)}")
        try:
            if in_process:
                from ..evaluation.cli import main as eval_main

                eval_main(args)
            else:
                rc = subprocess.run([sys.executable, "-m", "nr_lightning.evaluate", *args], cwd=REPO).returncode
                if rc:
                    raise RuntimeError(f"nr_lightning.evaluate exited with status {rc}")
            if stamp is not None:
                stamp_reference(Path(next(a.split("=", 1)[1] for a in args if a.startswith("out="))), stamp)
        except (Exception, SystemExit) as e:
            log(f"evaluate {label} failed: {type(e).__name__}: {e}")


# The small files of a finished run: enough to rebuild every table and curve without the weights
ARCHIVED = ("config.yaml", "plan.txt", "metrics.json", "curves.json", "gates.json", "losses.jsonl", "eval*.json",
            "train.log", "eval*.log")


def machine_label() -> str:
    """This machine in a few words (cores, CPU model, the ISA that decides bf16 speed), for archived results."""
    cpu, isa = "CPU", ""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        cpu = next((x.split(":", 1)[1].strip() for x in info.splitlines() if x.startswith("model name")), cpu)
        flags = set(next((x for x in info.splitlines() if x.startswith("flags")), "").split())
        isa = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "")
    except OSError:
        pass
    return f"{os.cpu_count()}-vCPU {cpu}" + (f" ({isa})" if isa else "")


def backbone_reference(run: Run) -> Path:
    """Where `--evaluate` writes the untouched backbone's eval.json for this run's backbone and language."""
    return backbone_reference_dir(run.run_dir.parent, run.cfg.backbone.name, run.cfg.lang) / "eval.json"


def restore_archived(runs: list[Run], dest: Path) -> None:
    """Copy back into its run directory each new run that `dest` holds finished (`metrics.json`): a fresh
    checkout then skips the rows an earlier session archived instead of training them again."""
    for run in runs:
        src = dest / run.run_dir.name
        if run.state() == "new" and (src / "metrics.json").is_file():
            shutil.copytree(src, run.run_dir, dirs_exist_ok=True)  # copy2 keeps mtimes: eval.json stays current
            log(f"{run.name}: finished in the archive {src}, restored (not trained again)")


def archive_run(run: Run, dest: Path, replace: bool = False) -> Path:
    """Copy a finished run's small files (ARCHIVED; never weights or checkpoints) to dest/<run name>/, and the
    evaluation of the backbone it started from as `base_eval.json`, labelled with this machine: a rebuilt base
    is not bit-identical on another CPU, so each archived run keeps its own reference (docs/reproduction.md).
    That base's downstream-only evaluation (`eval_tasks.json` beside it) goes along as `base_eval_tasks.json`.
    `replace` (a row trained again, `--retrain`): first remove the files archived before, so that none of the
    old run's (a companion `eval_tasks.json`, its base) is read as the new run's."""
    out = dest / run.run_dir.name
    if replace and out.is_dir():
        old = sorted(f.name for f in out.iterdir() if f.is_file())
        for name in old:
            (out / name).unlink()
        log(f"{run.name}: trained again, its earlier archived files removed: {', '.join(old) or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for pattern in ARCHIVED:
        for f in sorted(run.run_dir.glob(pattern)):
            if f.is_file():
                shutil.copy2(f, out / f.name)
                copied.append(f.name)
    ref = backbone_reference(run)
    if ref.is_file() and not (out / "base_eval.json").is_file():
        base = json.loads(ref.read_text(encoding="utf-8"))
        # a reference reused from the archive keeps the label of the machine that computed it
        base.setdefault("label", f"{machine_label()}, {time.strftime('%Y-%m-%d', time.localtime(ref.stat().st_mtime))}")
        write_json_atomic(out / "base_eval.json", base, indent=1)
        copied.append("base_eval.json")
    tasks = ref.with_name("eval_tasks.json")  # the base's downstream-only evaluation, for the paired tests
    if tasks.is_file() and (out / "base_eval.json").is_file() and not (out / "base_eval_tasks.json").is_file():
        same = json.loads((out / "base_eval.json").read_text(encoding="utf-8")).get("bpb") == \
            json.loads(ref.read_text(encoding="utf-8")).get("bpb")
        if same:  # only a base of the same weights: one rebuilt on another CPU is not this run's base
            shutil.copy2(tasks, out / "base_eval_tasks.json")
            copied.append("base_eval_tasks.json")
    log(f"{run.name}: archived {', '.join(copied) or 'nothing'} -> {out}")
    return out


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
    lines_file.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    log(f"{len(todo)} array task(s), overrides in {lines_file}")
    log(shlex.join(cmd))
    proc = subprocess.run(cmd, env={**os.environ, "NRL_SWEEP": str(lines_file)}, cwd=REPO, capture_output=True,
                          text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        raise SweepError(f"sbatch failed (status {proc.returncode}): {proc.stderr.strip()}")
    return cmd

"""One table of every run and the learning-vs-forgetting trade-off plot (paper Figure 1).

    python -m nr_lightning.report runs/*                    # -> runs/report.md, runs/report.csv, runs/tradeoff.png
    python -m nr_lightning.report runs/* --out docs/results
    python -m nr_lightning.report runs/seq-* --out docs/results/sequence   # sequences -> sequences.md

A run contributes its final held-out bpb (metrics.json, or eval.json when `make eval` ran, which wins)
and its downstream task averages (eval.json). Δ columns: from the run's own eval.json (`baseline=true`), else
against the backbone row given alongside that was scored the same way (the sweep's `--evaluate`). A run
directory named `backbone*` or an eval.json with no run (a bare backbone) is drawn as the reference star.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..registry import METHODS, method_class

COLUMNS = ["run", "method", "lang", "p", "budget", "lr", "steps", "bpb_en", "bpb_target", "bpb_sum",
           "tasks_en", "tasks_target", "Δbpb_en", "Δbpb_target", "Δtasks_en", "Δtasks_target"]


def _read_json(path: Path) -> dict:
    """A results file, or a ValueError naming it (a truncated metrics.json used to surface as a bare traceback)."""
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({type(e).__name__}: {e}): restore it or leave the run out") from None
    if not isinstance(out, dict):
        raise ValueError(f"{path} holds a {type(out).__name__}, not a JSON object: restore it or leave the run out")
    return out


def _check_weights(ext: Path) -> None:
    """The run's extension weights still match the checksum recorded when they were saved (no torch needed)."""
    from ..io import file_sha256

    meta, weights = ext / "extension.json", ext / "extension.safetensors"
    if not meta.is_file() or not weights.is_file():
        return
    want = _read_json(meta).get("weights_sha256")
    if want and file_sha256(weights) != want:
        raise ValueError(f"{weights} does not match the SHA-256 recorded in extension.json when it was saved "
                         f"(damaged or changed since): its results cannot be trusted; restore it or leave the run out")


def collect(run_dir: Path) -> dict | None:
    """A row for one run directory, or None if it holds no results yet."""
    metrics = run_dir / "metrics.json"
    evalf = run_dir / "eval.json"
    if not metrics.is_file() and not evalf.is_file():
        return None
    m = _read_json(metrics) if metrics.is_file() else {}
    e = _read_json(evalf) if evalf.is_file() else {}
    _check_weights(run_dir / "extension")
    cfg = m.get("config") or e.get("config") or {}
    method = (cfg.get("method") or {}).get("name") or ("backbone" if e.get("backbone") and not e.get("run") else "?")
    ev = e.get("eval_args") or {}
    lang = cfg.get("lang") or next((k for k in (e.get("bpb") or {}) if k != "en"), None) or \
        next((k for k in (m.get("final_bpb") or {}) if k != "en"), None) or \
        next((k for k in (ev.get("langs") or []) if k != "en"), "?")
    bpb = dict(m.get("final_bpb") or {})
    bpb.update(e.get("bpb") or {})
    avg = e.get("task_average") or {}
    row = {
        "run": run_dir.name, "method": method, "lang": lang,
        "p": (cfg.get("data") or {}).get("p"), "budget": (cfg.get("method") or {}).get("budget"),
        "lr": _effective_lr(cfg), "steps": m.get("global_step"),
        "bpb_en": bpb.get("en"), "bpb_target": bpb.get(lang),
        "tasks_en": avg.get("en"), "tasks_target": avg.get(lang),
    }
    delta = e.get("delta") or {}  # against the backbone's own row (make eval; nr_lightning.evaluation.baseline)
    row.update({"Δbpb_en": (delta.get("bpb") or {}).get("en"), "Δbpb_target": (delta.get("bpb") or {}).get(lang),
                "Δtasks_en": (delta.get("task_average") or {}).get("en"),
                "Δtasks_target": (delta.get("task_average") or {}).get(lang)})
    row["bpb_sum"] = row["bpb_en"] + row["bpb_target"] if row["bpb_en"] is not None and row["bpb_target"] is not None \
        else None
    # what fill_deltas matches a run to its backbone row by: the same weights, scored the same way (the held-out
    # files are not compared: a backbone evaluation names them as data overrides, a run reads its config)
    row["_ref"] = (e.get("backbone") or (cfg.get("backbone") or {}).get("name"), lang,
                   tuple(sorted(e.get("tasks") or {})),
                   *(str(ev.get(k)) for k in ("limit", "max_docs", "max_length", "shots", "normalization", "seed")))
    row["_own_delta"] = bool(e.get("delta"))
    if method in METHODS and method_class(method).trains_backbone:
        row["budget"] = None
    return row


def fill_deltas(rows: list[dict]) -> None:
    """Δ columns of runs evaluated without their own baseline (the sweep's `--evaluate` scores the backbone once
    instead, `baseline=false`): against the backbone row of this report with the same backbone, language, tasks
    and evaluation settings (limit, documents, window, shots, normalisation, seed). A run whose eval.json has
    its own Δ (`baseline=true`) keeps it whole."""
    refs = {r["_ref"]: r for r in rows if r["method"] == "backbone"}
    for r in rows:
        ref = refs.get(r["_ref"])
        if ref is None or ref is r or r["_own_delta"]:
            continue
        for d, c in (("Δbpb_en", "bpb_en"), ("Δbpb_target", "bpb_target"), ("Δtasks_en", "tasks_en"),
                     ("Δtasks_target", "tasks_target")):
            if r.get(c) is not None and ref.get(c) is not None:
                r[d] = r[c] - ref[c]


def _effective_lr(cfg: dict) -> float | None:
    """The optimizer's peak lr: method.lr x optim.lr_multiplier."""
    lr = (cfg.get("method") or {}).get("lr")
    return None if lr is None else lr * ((cfg.get("optim") or {}).get("lr_multiplier") or 1.0)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and 0 < abs(v) < 0.01:
        return f"{v:.3g}"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:.1f}"
    return str(v)


def _fmt_delta(v) -> str:
    return "–" if v is None else f"{v:+.4f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt_delta(r.get(c)) if c.startswith("Δ") else _fmt(r.get(c)) for c in COLUMNS)
              + " |" for r in rows]
    return "\n".join(lines) + "\n"


MARKERS = {"backbone": ("*", "black"), **{m: method_class(m).plot_style for m in METHODS}}


def lr_curves(rows: list[dict]) -> list[list[dict]]:
    """Runs that differ only by learning rate (same method, language, p, budget), sorted by lr: the
    paper's Figure 1 draws each such group as one trade-off curve. Groups of one run are left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] != "backbone" and r.get("lr") is not None and r["bpb_en"] is not None \
                and r["bpb_target"] is not None:
            groups.setdefault((r["method"], r["lang"], r["p"], r["budget"]), []).append(r)
    return [sorted(g, key=lambda r: r["lr"]) for g in groups.values() if len({r["lr"] for r in g}) > 1]


def tradeoff_plot(rows: list[dict], path: Path) -> Path:
    """x = target-language bpb, y = English bpb (lower-left is better); one marker per method, and runs
    that differ only by lr joined in lr order and labelled with their peak lr (Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    seen = set()
    for r in rows:
        if r["bpb_en"] is None or r["bpb_target"] is None:
            continue
        marker, color = MARKERS.get(r["method"], ("x", "gray"))
        label = r["method"] if r["method"] not in seen else None
        seen.add(r["method"])
        ax.scatter(r["bpb_target"], r["bpb_en"], marker=marker, color=color, s=110 if marker == "*" else 45,
                   label=label, zorder=3)
    for curve in lr_curves(rows):
        color = MARKERS.get(curve[0]["method"], ("x", "gray"))[1]
        ax.plot([r["bpb_target"] for r in curve], [r["bpb_en"] for r in curve], color=color, alpha=0.6, zorder=2)
        for r in curve:
            ax.annotate(f"{r['lr']:.0e}", (r["bpb_target"], r["bpb_en"]), fontsize=6, color=color,
                        xytext=(3, 3), textcoords="offset points")
    langs = sorted({r["lang"] for r in rows if r["lang"] not in (None, "?")})
    ax.set_xlabel(f"held-out {'/'.join(langs) or 'target'} bits per byte (learning →  lower)")
    ax.set_ylabel("English other-domain bits per byte (forgetting → lower)")
    ax.set_title("Learning vs forgetting")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sequence_markdown(dirs: list[Path]) -> str | None:
    """One comparison table of sequence runs (folders holding forgetting.json): the final row of each
    forgetting matrix, each stage language's forgetting (final minus right after its stage), English drift
    vs the backbone and the final sum. None when no folder is a sequence."""
    mats = []
    for d in dirs:
        f, meta = d / "forgetting.json", d / "sequence.json"
        if f.is_file():
            m = json.loads(f.read_text(encoding="utf-8"))
            opts = (json.loads(meta.read_text(encoding="utf-8")).get("sequence") or {}) if meta.is_file() else {}
            mats.append((d.name, m, opts))
    if not mats:
        return None
    cols = list(dict.fromkeys(c for _, m, _ in mats for c in m["columns"]))
    stages = [c for c in cols if c != "en"]
    head = ["sequence", "strategy", "method", "done", *[f"{c} final" for c in cols],
            *[f"forgot {c}" for c in stages[:-1]], "en drift", "sum final"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m, opts in mats:
        final = dict(zip(m["columns"], m["bpb"][-1]))
        strat = m.get("strategy", "?")
        extra = [f"replay={opts['replay']}" if opts.get("replay") else "",
                 f"merge={opts.get('merge')}" if strat == "merge" else "",
                 f"λ={opts.get('olora_lambda')}" if strat == "olora" else "",
                 f"router={opts.get('router')}" if strat == "moe" else ""]
        strat = " ".join([strat, *[e for e in extra if e]])
        vals = [final.get(c) for c in cols]
        cells = [name, strat, m.get("method", "?"), f"{len(m['bpb'])}/{len(m.get('stages', stages))}",
                 *[_fmt(v) for v in vals], *[_fmt(m["forgetting"].get(c)) for c in stages[:-1]],
                 _fmt(m.get("en_drift")), _fmt(sum(v for v in vals if v is not None))]
        lines.append("| " + " | ".join(cells) + " |")
    base = mats[0][1]["baseline"]
    lines.append("| backbone | – | – | – | " + " | ".join(_fmt(base.get(c)) for c in cols) + " | "
                 + " | ".join("–" for _ in stages[:-1]) + " | 0 | " + _fmt(sum(base.get(c, 0) for c in cols)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="nrl report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run directories (e.g. runs/*)")
    ap.add_argument("--out", default=None, help="output folder (default: the runs' common parent)")
    args = ap.parse_args(argv)
    dirs = [Path(r) for r in args.runs if Path(r).is_dir()]
    rows = [r for r in (collect(d) for d in sorted(dirs)) if r]
    seq_md = sequence_markdown(sorted(dirs))
    out = Path(args.out) if args.out else (dirs[0].parent if dirs else Path("."))
    if seq_md is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sequences.md").write_text(seq_md, encoding="utf-8")
        print(seq_md)
        print(f"[nr-lightning] wrote {out / 'sequences.md'}", file=sys.stderr)
    if not rows:
        if seq_md is not None:
            return []
        print("error: no run with metrics.json or eval.json among the given directories "
              f"({len(dirs)} directories); train with `make train` first", file=sys.stderr)
        sys.exit(2)
    fill_deltas(rows)
    rows.sort(key=lambda r: (r["lang"] or "", r["method"] != "backbone", r["method"], r["run"]))
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows)
    (out / "report.md").write_text(md, encoding="utf-8")
    with open(out / "report.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({c: r.get(c) for c in COLUMNS} for r in rows)
    png = tradeoff_plot(rows, out / "tradeoff.png")
    print(md)
    print(f"[nr-lightning] wrote {out / 'report.md'}, {out / 'report.csv'}, {png}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    from ..errors import run_cli

    run_cli(main)

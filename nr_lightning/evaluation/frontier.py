"""Learning-vs-forgetting frontiers over the learning rate (paper Figure 1, Table 8; docs/reproduction.md).

A *point* is one curve evaluation of one run: forgetting = PubMed bpb minus the same run's step-0 PubMed bpb
(its base, on the same documents), learning = French bpb. All points come from the in-training curves, so every
point of every run is scored on one consistent document set (the first ``eval.max_docs`` documents of each set).
A method's *envelope* is the lower convex hull of its Pareto front (all its points over learning rates and steps)
joined by straight lines. A segment between two checkpoints is what their mixture (the average of their next-token
distributions) reaches at worst on both axes at once: by Jensen's inequality a mixture's cross-entropy is at most
the mixed cross-entropies. The hull is the tightest envelope with that meaning, and unlike a polyline through every
Pareto point, one more evaluation can only lower it. Beyond its largest forgetting the envelope stays flat: a
method that never forgot that much offers its best French at less forgetting. ``at_forgetting`` reads the envelope
at a matched forgetting budget; ``best_point`` reads the same budget without interpolation (the best single trained
checkpoint), the conservative reading beside it.

The module imports no torch; :mod:`nr_lightning.evaluation.reproduction` builds the rows (``collect``) and calls :func:`write`.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..registry import METHODS, method_class

BUDGETS = (0.005, 0.01, 0.02)  # matched-forgetting budgets in PubMed bpb (docs/reproduction.md)
EXTREME_BUDGET = 0.01  # downstream runs only at each method's point that learns most within this forgetting


def group_label(r: dict) -> str:
    """The frontier a run belongs to: its method and any ablation, not its learning rate or seed."""
    bits = [r["method"]]
    kind = method_class(r["method"]) if r["method"] in METHODS else None
    if r.get("gate_init") == "low_variance" and kind is not None and kind.default_gate not in (None, "none"):
        bits.append("w_b low-var")  # an ablation of the block gate's init: methods with a block gate only
    if kind is not None and kind.sparsity_loss and r.get("alpha") is not None and not r.get("alpha"):
        bits.append("α=0")
    return ", ".join(bits)


def points(r: dict) -> list[dict]:
    """The run's curve as frontier points (step, lr, forgetting Δ against its step 0, French bpb)."""
    curve = [c for c in r["curve"] if c.get("en") is not None and c.get("new") is not None]
    if not curve:
        return []
    ref = curve[0]["en"]
    return [{"run": r["run"], "lr": r.get("lr"), "step": c["step"], "forget": c["en"] - ref, "new": c["new"],
             "final": i == len(curve) - 1} for i, c in enumerate(curve)]


def pareto(pts: list[dict]) -> list[dict]:
    """The Pareto front (no other point forgets less *and* learns more), sorted by forgetting."""
    front: list[dict] = []
    for p in sorted(pts, key=lambda p: (p["forget"], p["new"])):
        if not front or p["new"] < front[-1]["new"]:
            front.append(p)
    return front


def envelope(pts: list[dict]) -> list[dict]:
    """The lower convex hull of the Pareto front, sorted by forgetting: a front point above the segment joining
    its neighbours is dropped (that segment, the two checkpoints' mixture, does at least as well)."""
    hull: list[dict] = []
    for p in pareto(pts):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the segment a-p (cross product <= 0): not a vertex of the lower hull
            if (b["forget"] - a["forget"]) * (p["new"] - a["new"]) - (b["new"] - a["new"]) * (p["forget"] - a["forget"]) > 0:
                break
            hull.pop()
        hull.append(p)
    return hull


def at_forgetting(front: list[dict], budget: float) -> tuple[float | None, bool]:
    """French bpb on the envelope at forgetting = ``budget`` (linear between front points), and whether the
    budget lies beyond the method's reach (its largest forgetting on the front is below it: flat there)."""
    if not front or budget < front[0]["forget"]:
        return None, False
    for a, b in zip(front, front[1:]):
        if a["forget"] <= budget <= b["forget"]:
            t = (budget - a["forget"]) / (b["forget"] - a["forget"]) if b["forget"] > a["forget"] else 0.0
            return a["new"] + t * (b["new"] - a["new"]), False
    return front[-1]["new"], True


def best_point(pts: list[dict], budget: float) -> dict | None:
    """The trained point (step > 0) with the lowest French bpb among those that forgot at most ``budget``: the
    matched-forgetting reading of one checkpoint, with no interpolation."""
    within = [p for p in pts if p["step"] > 0 and p["forget"] <= budget + 1e-9]  # Δ is a difference: rounding
    return min(within, key=lambda p: p["new"]) if within else None


def extreme(pts: list[dict], budget: float = EXTREME_BUDGET) -> dict | None:
    """The method's frontier extreme: its best point within ``budget``; the one point per method that downstream
    tasks are run on."""
    return best_point(pts, budget)


def seed_noise(rows: list[dict]) -> dict[str, dict]:
    """Per frontier group: the largest difference between seeds of the same run at its final curve point."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if points(r):
            by.setdefault((group_label(r), r.get("lr")), []).append(points(r)[-1])
    out: dict[str, dict] = {}
    for (label, _), finals in by.items():
        if len(finals) < 2:
            continue
        d = {"forget": max(p["forget"] for p in finals) - min(p["forget"] for p in finals),
             "new": max(p["new"] for p in finals) - min(p["new"] for p in finals)}
        o = out.setdefault(label, {"forget": 0.0, "new": 0.0})
        out[label] = {k: max(o[k], d[k]) for k in d}
    return out


def frontiers(rows: list[dict], budgets: tuple[float, ...] = BUDGETS) -> dict[str, dict]:
    """Every frontier group: its points (lowest seed of each lr), envelope, matched-forgetting French, the
    spread of its final points over learning rates, and where its reach ends."""
    groups: dict[str, dict[float | None, dict]] = {}
    for r in rows:  # one run per (group, lr): the lowest seed, so the envelope is not a best-of-seeds
        g = groups.setdefault(group_label(r), {})
        if points(r) and (r.get("lr") not in g or (r.get("seed") or 0) < (g[r.get("lr")].get("seed") or 0)):
            g[r.get("lr")] = r
    noise = seed_noise(rows)
    out: dict[str, dict] = {}
    for label, by_lr in groups.items():
        pts = [p for r in by_lr.values() for p in points(r)]
        if not pts:
            continue
        front = envelope(pts)
        finals = [p for p in pts if p["final"]]
        out[label] = {
            "method": next(iter(by_lr.values()))["method"], "lrs": sorted(lr for lr in by_lr if lr is not None),
            "points": pts, "envelope": front,
            "matched": {f"{b:+.3f}": {**dict(zip(("new", "beyond_reach"), at_forgetting(front, b))),
                                      "best_point": (best_point(pts, b) or {}).get("new")} for b in budgets},
            "reach": {"forget": max(p["forget"] for p in pts), "best_new": min(p["new"] for p in pts)},
            "final_spread": {"forget": max(p["forget"] for p in finals) - min(p["forget"] for p in finals),
                             "new": max(p["new"] for p in finals) - min(p["new"] for p in finals)},
            "finals": sorted(({"lr": p["lr"], "forget": p["forget"], "new": p["new"], "run": p["run"]}
                              for p in finals), key=lambda p: p["lr"] or 0),
            "seed_noise": noise.get(label),
            "extreme": extreme(pts),
        }
    return out


def cost(steps: list[dict], eval_every: int = 0) -> dict | None:
    """Training cost of one run from its ``losses.jsonl`` lines (step, tokens, time): wall minutes (curve
    evaluations included) and tokens/s over training steps only (the median step interval, so evaluation
    pauses do not count). A run stopped and resumed has a pause between two steps that is neither training nor
    a curve evaluation (one that does not end on a multiple of `eval_every`): such a pause, when longer than 30
    median steps, counts as one median step, so a requeue's wait does not count as training time. Slower steps
    (a checkpoint written, another job on the CPU: up to ~20 median steps in the archived rows) still count."""
    if len(steps) < 3:
        return None
    gaps = [(b["time"] - a["time"], b["step"]) for a, b in zip(steps, steps[1:]) if b["step"] == a["step"] + 1]
    if not gaps:
        return None
    med = statistics.median(g for g, _ in gaps)
    evaluated = (lambda step: eval_every > 0 and step % eval_every == 0)  # noqa: E731
    wall = sum(g if g <= 30 * med or evaluated(step) else med for g, step in gaps)
    return {"wall_min": wall / 60, "s_per_step": med,
            "tok_s": steps[-1].get("tokens", 0) / med if med > 0 else None}


def _f(v: float | None, fmt: str = "{:.4f}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def signed(v: float) -> str:
    """A forgetting Δ with its sign, 4 decimals; one that rounds to zero prints +0.0000, never -0.0000."""
    return f"{0.0 if abs(v) < 5e-5 else v:+.4f}"


def table(fr: dict[str, dict], budgets: tuple[float, ...] = BUDGETS) -> str:
    """Markdown: per frontier group, French bpb at each matched forgetting, reach, stability, seed noise."""
    head = ["group", "lrs (effective)"] + [f"Fr bpb at Δ PubMed ≤ {b:+.3f}: envelope (best point)" for b in budgets] + \
        ["reach: max Δ / best Fr", "final points over lrs: Δ spread / Fr spread", "seed noise (Δ / Fr)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, f in sorted(fr.items(), key=lambda kv: kv[0]):
        cells = []
        for b in budgets:
            m = f["matched"][f"{b:+.3f}"]
            cells.append("–" if m["new"] is None else _f(m["new"]) + f" ({_f(m.get('best_point'))})"
                         + (", reach ends" if m["beyond_reach"] else ""))
        sn = f["seed_noise"]
        lines.append("| " + " | ".join([
            label, ", ".join(f"{lr:.0e}" for lr in f["lrs"]) or "–", *cells,
            f"{signed(f['reach']['forget'])} / {f['reach']['best_new']:.4f}",
            f"{f['final_spread']['forget']:.4f} / {f['final_spread']['new']:.4f}" if len(f["lrs"]) > 1 else "one lr",
            "–" if not sn else f"{sn['forget']:.4f} / {sn['new']:.4f}"]) + " |")
    return "\n".join(lines) + "\n"


def finals_table(fr: dict[str, dict], rows: list[dict]) -> str:
    """Markdown: every run's final curve point with its learning rate and training cost."""
    by_run = {r["run"]: r for r in rows}
    lines = ["| group | lr (effective) | run | Δ PubMed (curve docs) | Fr bpb (curve docs) | train wall min | "
             "s/step (median) | tok/s | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for label, f in sorted(fr.items()):
        for p in f["finals"]:
            r = by_run.get(p["run"], {})
            c = r.get("cost") or {}
            lines.append(f"| {label} | {_f(p['lr'], '{:.0e}')} | {p['run']} | {signed(p['forget'])} | {p['new']:.4f} | "
                         f"{_f(c.get('wall_min'), '{:.0f}')} | {_f(c.get('s_per_step'), '{:.1f}')} | "
                         f"{_f(c.get('tok_s'), '{:.0f}')} | {r.get('machine') or '–'} |")
    return "\n".join(lines) + "\n"


def curves_table(fr: dict[str, dict]) -> str:
    """Markdown: every frontier point, one row per (group, lr) and one column per curve step after step 0,
    each cell "Δ PubMed / French bpb" ("–" where that run has no evaluation at that step)."""
    steps = sorted({p["step"] for f in fr.values() for p in f["points"] if p["step"] > 0})
    lines = ["| run | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for label, f in sorted(fr.items()):
        for lr in sorted({p["lr"] for p in f["points"]}, key=lambda lr: lr or 0):
            at = {p["step"]: p for p in f["points"] if p["lr"] == lr}
            cells = [f"{signed(at[s]['forget'])} / {at[s]['new']:.4f}" if s in at else "–" for s in steps]
            lines.append(f"| {label}, lr {_f(lr, '{:.0e}')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(fr: dict[str, dict], path: Path, markers: dict[str, tuple[str, str]] | None = None) -> Path:
    """Figure 1 style: forgetting (x) against French bpb (y), every curve point faint, each run's final point
    labelled with its learning rate, each method's envelope as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = markers or {}
    # Two panels: every point, and the small-forgetting region where the methods' envelopes overlap.
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8))
    # a method's ablations share its colour: each gets its own dash pattern, the method itself a solid line
    ablations = sorted(label for label, f in fr.items() if label != f["method"])
    dashes = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    for ax, zoom in zip(axes, (False, True)):
        for label, f in sorted(fr.items()):
            marker, color = markers.get(f["method"], ("x", "gray"))
            ls = "-" if label == f["method"] else dashes[ablations.index(label) % len(dashes)]
            ax.scatter([p["forget"] for p in f["points"]], [p["new"] for p in f["points"]], marker=marker, s=12,
                       color=color, alpha=0.35)
            env = f["envelope"]
            ax.plot([p["forget"] for p in env], [p["new"] for p in env], linestyle=ls, color=color, lw=1.6, label=label)
            for p in f["finals"]:
                edge = None if marker in ("x", "+", "1", "2", "3", "4", "|", "_") else "black"  # unfilled: no edge
                ax.scatter([p["forget"]], [p["new"]], marker=marker, s=40, color=color, edgecolor=edge, lw=0.6)
                if p["lr"] is not None and (not zoom or p["forget"] <= 2 * BUDGETS[-1]):
                    ax.annotate(f"{p['lr']:.0e}", (p["forget"], p["new"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
        for b in BUDGETS:
            ax.axvline(b, color="gray", ls=":", lw=0.8)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("forgetting: Δ PubMed bpb against the run's step 0 (←better)")
        if zoom:
            inside = [p for f in fr.values() for p in f["points"] if p["forget"] <= 1.5 * BUDGETS[-1]]
            ax.set_xlim(min(-0.002, *(p["forget"] for p in inside)) - 0.001, 1.5 * BUDGETS[-1])
            ys = [p["new"] for p in inside if p["step"] > 0] or [p["new"] for p in inside]
            ax.set_ylim(min(ys) - 0.02, max(ys) + 0.02)
            ax.set_title("zoom: Δ ≤ +0.03 (dotted: matched-forgetting budgets)", fontsize=9)
        else:
            ax.set_ylabel("learning: French bpb (↓better)")
            ax.set_title("every curve point (large markers: final points, labelled with the effective lr;\n"
                         "lines: each method's envelope, the lower convex hull)", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write(rows: list[dict], out: Path, markers: dict[str, tuple[str, str]] | None = None) -> dict[str, dict]:
    """``frontier.md`` (matched forgetting, final points and cost, curves), ``frontier.json`` (every number) and
    ``frontier.png`` under ``out``."""
    fr = frontiers(rows)
    if not fr:
        return fr
    text = ("## Matched forgetting\n\n" + table(fr) + "\n## Final points and training cost\n\n"
            + finals_table(fr, rows)
            + "\n## Curves (Δ PubMed / French bpb on the curve documents, by training step)\n\n" + curves_table(fr))
    (out / "frontier.md").write_text(text, encoding="utf-8")
    (out / "frontier.json").write_text(json.dumps(fr, indent=1, default=str), encoding="utf-8")
    plot(fr, out / "frontier.png", markers)
    return fr

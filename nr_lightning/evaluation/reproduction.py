"""Tables and plots of the reproduction protocol (docs/reproduction.md) from its run directories.

    nrl reproduction runs/repro-* --base runs/repro-base/eval.json --out docs/results/repro

Writes `table.md` (final held-out bpb on real PubMed and French, their deltas against the English base, the sum,
ARC-Easy accuracy with its standard error), `curves.png` (English vs French bpb over steps, paper Figure 1
style), `gates.md` (block-gate mean and residual norm per domain at the last step) and `runs.json` (every
number above). A run's final numbers come from its `eval.json` (every held-out document) when
`python -m nr_lightning.evaluate` ran on it, else from the last point of `curves.json` (the in-training subset);
the table says which.

The English base is rebuilt on each machine that runs the protocol, and bf16 on another CPU does not give
the same weights bit for bit (docs/reproduction.md). A run directory may therefore hold `base_eval.json`: the
`eval.json` of the base that run started from, with a `label` (which machine, which build). Its deltas are
taken against that base, the table lists every base, and says which base each run used.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from ..io import write_json_atomic
from ..paths import backbone_reference_dir
from ..registry import METHODS, method_class
from . import frontier

TASKS = ("arc_easy_en", "arc_easy_fr")


def _load(path: Path) -> dict | list | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_eval(path: Path) -> dict | None:
    """An ``eval.json``, with the downstream tasks of its companion ``<stem>_tasks.json`` merged in.

    The companion is a downstream-only evaluation (``python -m nr_lightning.evaluate ... max_docs=0
    out=<run>/eval_tasks.json``), so accuracies can be added later without recomputing, or overwriting, the
    full-set bpb. ``base_eval.json`` pairs with ``base_eval_tasks.json`` the same way.
    """
    ev = _load(path)
    extra = _load(path.with_name(f"{path.stem}_tasks.json"))
    if ev is None or not extra:
        return ev
    return {**ev, "tasks": {**(ev.get("tasks") or {}), **(extra.get("tasks") or {})}}


def task_results(ev: dict | None) -> dict:
    """ARC-Easy of one evaluation: acc_norm, its standard error and the per-item results the paired test needs."""
    tasks = {}
    for t in TASKS:
        r = ((ev or {}).get("tasks") or {}).get(t)
        if r:
            acc = r.get("acc_norm", r.get("acc"))
            tasks[t] = {"acc": acc, "se": r.get("acc_norm_stderr") or math.sqrt(acc * (1 - acc) / max(1, r["n"])),
                        "n": r["n"], **{k: r.get(k) for k in ("correct", "items_sha256", "shots", "normalization")}}
    return tasks


def collect(run: Path) -> dict | None:
    """One run's numbers, or None when it has not finished."""
    metrics, curves = _load(run / "metrics.json"), _load(run / "curves.json")
    if not metrics or not curves:
        return None
    cfg = metrics.get("config") or {}
    ev = load_eval(run / "eval.json") or {}
    lang = cfg.get("lang", "fr")
    final = ev.get("bpb") or {}
    source = "eval.json (all documents)" if final else f"curves.json ({cfg.get('eval', {}).get('max_docs')} docs)"
    last = curves[-1]
    en = final.get("en", last.get("eval/bpb_en"))
    new = final.get(lang, last.get(f"eval/bpb_{lang}"))
    tasks = task_results(ev)
    # downstream of one training checkpoint (`evaluate ckpt=checkpoints/stepN.ckpt` writes eval_stepN.json)
    step_tasks = {int(m.group(1)): task_results(_load(f)) for f in sorted(run.glob("eval_step*.json"))
                  if (m := re.fullmatch(r"eval_step(\d+)", f.stem))}
    gates = _load(run / "gates.json") or []
    own_base = load_eval(run / "base_eval.json")
    steps = []
    if (run / "losses.jsonl").is_file():  # first to last training step (evaluations included, loading not)
        steps = [json.loads(line) for line in (run / "losses.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    spent = frontier.cost(steps, eval_every=(cfg.get("eval") or {}).get("every_n_steps") or 0)
    m = cfg.get("method") or {}
    lr = m.get("lr") * (cfg.get("optim") or {}).get("lr_multiplier", 1.0) if m.get("lr") is not None else None
    return {"run": run.name, "method": m.get("name"), "gate_init": m.get("gate_init"), "alpha": m.get("alpha"),
            "seed": cfg.get("seed"), "lang": lang, "steps": metrics.get("global_step"), "en": en, "new": new,
            "sum": en + new if en is not None and new is not None else None, "source": source,
            "start": {"en": curves[0].get("eval/bpb_en"), "new": curves[0].get(f"eval/bpb_{lang}")},
            "curve": [{"step": h["step"], "en": h.get("eval/bpb_en"), "new": h.get(f"eval/bpb_{lang}"),
                       "en_dev": h.get("eval/bpb_en_dev")} for h in curves],
            "tasks": tasks, "step_tasks": step_tasks, "backbone": (cfg.get("backbone") or {}).get("name"), "gates": gates[-1] if gates else None, "train_minutes": spent and spent["wall_min"],
            "base": own_base, "lr": lr, "cost": spent, "machine": (own_base or {}).get("label")}


def _gated(method: str) -> bool:
    """The method has a block gate w_b by default (its init is an ablation axis)."""
    return method in METHODS and method_class(method).default_gate not in (None, "none")


def _no_sparsity(r: dict) -> bool:
    """A run of a method defined by its sparsity loss, with that loss off (the alpha=0 ablation)."""
    return r["method"] in METHODS and method_class(r["method"]).sparsity_loss and not r.get("alpha")


def _label(r: dict) -> str:
    """The row's name: method, ablation and seed, and its effective lr where another row shares that name."""
    return r.get("label") or _kind(r)


def name_rows(rows: list[dict]) -> list[dict]:
    """Give each row its `label`: rows of the same method and ablation at several learning rates (the frontier's
    grid) are told apart by their effective lr."""
    lrs: dict[str, set] = {}
    for r in rows:
        lrs.setdefault(_kind(r), set()).add(r.get("lr"))
    for r in rows:
        several = len(lrs[_kind(r)]) > 1 and r.get("lr") is not None
        r["label"] = _kind(r) + (f", lr {r['lr']:.0e}" if several else "")
    return rows


def _kind(r: dict) -> str:
    bits = [r["method"]]
    if _gated(r["method"]) and r.get("gate_init") == "low_variance":
        bits.append("w_b low-var")
    if _no_sparsity(r):
        bits.append("α=0")
    if r.get("seed"):
        bits.append(f"seed {r['seed']}")
    return ", ".join(bits)


def _d(v: float | None, ref: float | None) -> str:
    return "–" if v is None or ref is None else f"{v - ref:+.3f}"


def _acc(t: dict | None) -> str:
    """One `task_results` entry as ``acc ± se``."""
    return "–" if not t else f"{t['acc']:.3f} ± {t['se']:.3f}"


def _paired(task: dict, base: dict | None, name: str) -> str:
    """`` (p = …)``: McNemar's exact test against the base on the same items, when both kept them."""
    from .multiple_choice import paired_test

    test = paired_test(task, ((base or {}).get("tasks") or {}).get(name) or {})
    return "" if test is None else f" (p = {test['p']:.2g})"


def table(rows: list[dict], base: dict | list[dict] | None) -> str:
    """Final numbers and deltas; each run's delta is against its own base (`base_eval.json`), else the first
    of `base` (one eval, or several: every build of the base is listed, with or without runs of its own)."""
    given = base if isinstance(base, list) else [base] if base else []
    bases: list[dict] = []  # distinct bases, in order of first use; the --base ones first
    for b in [*given, *(r.get("base") for r in rows)]:
        if b and b.get("bpb") and all(b["bpb"] != o["bpb"] for o in bases):
            bases.append(b)
    many = len(bases) > 1

    def letter(b: dict) -> str:
        return chr(65 + bases.index(b))

    def which(b: dict | None) -> dict | None:  # the listed base of the same weights, for its letter
        return next((o for o in bases if b and o["bpb"] == b.get("bpb")), None)

    lines = ["| run | En PubMed bpb (Δ vs base) | Fr bpb (Δ) | sum | ARC-Easy en | ARC-Easy fr | steps | train min "
             "| numbers from |" + (" base |" if many else ""), "|---|---|---|---|---|---|---|---|---|" + ("---|" if many else "")]
    for b in bases:
        en, new, bt = b["bpb"].get("en"), b["bpb"].get("fr"), task_results(b)
        name = "English base" + (f" {letter(b)}" if many else "") + (f" ({b['label']})" if b.get("label") else "")
        lines.append(f"| {name} | {en:.4f} | {new:.4f} | {en + new:.4f} | {_acc(bt.get(TASKS[0]))} | "
                     f"{_acc(bt.get(TASKS[1]))} | 0 | – | eval.json |" + (f" {letter(b)} |" if many else ""))
    for r in rows:
        b = base_of(r, given)  # the one rule that pairs a row with a base (also the extremes table's)
        b = b if b and b.get("bpb") else None
        tk = [_acc(r["tasks"][t]) + _paired(r["tasks"][t], b, t) if t in r["tasks"] else "–" for t in TASKS]
        from_eval = b is not None and r["source"].startswith("eval")
        ref_en = b["bpb"].get("en") if from_eval else r["start"]["en"]
        ref_new = b["bpb"].get("fr") if from_eval else r["start"]["new"]
        tag = "–" if b is None else letter(which(b))
        lines.append(f"| {_label(r)} | {r['en']:.4f} ({_d(r['en'], ref_en)}) | {r['new']:.4f} ({_d(r['new'], ref_new)}) "
                     f"| {r['sum']:.4f} | {tk[0]} | {tk[1]} | {r['steps']} | "
                     f"{'–' if r['train_minutes'] is None else round(r['train_minutes'])} | {r['source']} |"
                     + (f" {tag} |" if many else ""))
    return "\n".join(lines) + "\n"


def gates_table(rows: list[dict]) -> str:
    lines = ["| run | gate mean En | gate mean Fr | residual ‖φ·A‖₁/d En | residual Fr | Fr/En residual |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        g = r.get("gates")
        if not g or "en" not in g or r["lang"] not in g:
            continue
        en, new = g["en"], g[r["lang"]]
        ratio = new["residual_l1"] / en["residual_l1"] if en["residual_l1"] else float("inf")
        lines.append(f"| {_label(r)} | {en['gate_mean']:.3f} | {new['gate_mean']:.3f} | {en['residual_l1']:.2e} | "
                     f"{new['residual_l1']:.2e} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


DOWNSTREAM_ARGS = "'tasks=[arc_easy_en,arc_easy_fr]' max_docs=0 max_length=512"  # as the rows' evaluations


def base_of(r: dict, bases: list[dict]) -> dict | None:
    """A run's base evaluation, for its deltas and paired tests (`table`, `extremes_table`): a given evaluation of
    the same weights (same bpb) with downstream results (it may keep the per-item results an older
    `base_eval.json` lacks), else its own `base_eval.json`; without its own, the first given base."""
    own = r.get("base")
    if own is None:
        return bases[0] if bases else None
    return next((b for b in [*bases, own] if b.get("bpb") == own.get("bpb") and b.get("tasks")), own)


def extremes_table(fr: dict[str, dict], rows: list[dict], bases: list[dict] | None = None) -> str:
    """Markdown: ARC-Easy at each method's frontier extreme (`frontier.extreme`: the point that learns most French
    within +0.01 PubMed forgetting), paired against the run's base, and the commands that compute what is missing:
    a mid-run point is a training checkpoint of the run (`evaluate ckpt=`), the final point the run itself."""
    by_run = {r["run"]: r for r in rows}
    lines = ["| group | run | step | Δ PubMed / Fr bpb (curve docs) | ARC-Easy en | ARC-Easy fr |",
             "|---|---|---|---|---|---|"]
    todo: list[str] = []
    for label, f in sorted(fr.items()):
        p, r = f.get("extreme"), by_run.get((f.get("extreme") or {}).get("run"))
        if p is None or r is None:
            continue
        tasks = r["tasks"] if p["final"] else r["step_tasks"].get(p["step"], {})
        b = base_of(r, bases or [])
        cells = [f"{tasks[t]['acc']:.3f} ± {tasks[t]['se']:.3f}" + _paired(tasks[t], b, t) if t in tasks
                 else "not run" for t in TASKS]
        lines.append(f"| {label} | {_label(r)} | {p['step']}{' (final)' if p['final'] else ''} | "
                     f"{frontier.signed(p['forget'])} / {p['new']:.4f} | {cells[0]} | {cells[1]} |")
        if any(t not in tasks for t in TASKS):
            where = f"runs/{r['run']}"
            todo.append(f"python -m nr_lightning.evaluate run={where} {DOWNSTREAM_ARGS} baseline=false "
                        + (f"out={where}/eval_tasks.json" if p["final"] else f"ckpt=checkpoints/step{p['step']:06d}.ckpt"))
        if b is not None and any(t not in (b.get("tasks") or {}) for t in TASKS) and r.get("backbone"):
            ref = backbone_reference_dir("runs", r["backbone"], r["lang"])
            todo.append(f"python -m nr_lightning.evaluate backbone={r['backbone']} langs=[en,{r['lang']}] "
                        f"{DOWNSTREAM_ARGS} out={ref}/eval_tasks.json   # the base, for the paired test")
    text = "\n".join(lines) + "\n"
    if todo:
        text += ("\nNot run yet (the checkpoints are in the training machine's runs/; `make repro-lr` archives "
                 "the results):\n\n```bash\n" + "\n".join(dict.fromkeys(todo)) + "\n```\n")
    return text


def curves_plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import MARKERS

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for r in rows:
        pts = [(c["new"], c["en"]) for c in r["curve"] if c["new"] is not None and c["en"] is not None]
        marker, color = MARKERS.get(r["method"], ("x", "gray"))
        style = "--" if r.get("seed") or r.get("gate_init") == "low_variance" or _no_sparsity(r) else "-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=marker, color=color, ms=4, label=_label(r))
    if rows:
        s = rows[0]["start"]
        ax.plot([s["new"]], [s["en"]], "*", color="black", ms=12, label="English base (step 0)")
    ax.set_xlabel("French held-out bpb (learning →, lower is better)")
    ax.set_ylabel("PubMed bpb (forgetting ↑)")
    ax.invert_xaxis()
    ax.set_title("Learning vs forgetting over steps (in-training subsets)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def base_curve(meta: dict, out: Path) -> str:
    """The English base's build curve (nrl_base.json): a table and a plot of held-out bpb over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = meta["curve"]
    keys = [("eval/bpb_en_indomain", "English Wikipedia, in-domain"), ("eval/bpb_en", "PubMed dev (50)"),
            ("eval/bpb_fr", "French")]
    lines = ["| step | " + " | ".join(k[1] for k in keys) + " | selection sum |", "|---" * (len(keys) + 2) + "|"]
    for h in curve:
        mark = " **(chosen)**" if h["step"] == meta["selected_step"] else ""
        lines.append(f"| {h['step']}{mark} | " + " | ".join(f"{h[k]:.4f}" for k, _ in keys) +
                     f" | {h['eval/bpb_en'] + h['eval/bpb_en_indomain']:.4f} |")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, label in keys:
        ax.plot([h["step"] for h in curve], [h[k] for h in curve], marker="o", ms=3, label=label)
    ax.axvline(meta["selected_step"], color="gray", ls=":", label=f"chosen step {meta['selected_step']}")
    ax.set_xlabel("continued-pretraining step (8 × 256 English tokens)")
    ax.set_ylabel("held-out bits per byte")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "base_curve.png", dpi=130)
    plt.close(fig)
    text = "\n".join(lines) + "\n"
    (out / "base_curve.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="nrl reproduction", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, nargs="+", default=[],
                    help="eval.json of the English base (python -m nr_lightning.evaluate backbone=smollm2-135m-en "
                         "...); several: every build is listed, the first is the reference of runs without their "
                         "own base_eval.json")
    ap.add_argument("--out", type=Path, default=Path("runs/repro-report"))
    ap.add_argument("--base-meta", type=Path, help="nrl_base.json of the English base: its build curve is drawn too")
    a = ap.parse_args(argv)
    rows = name_rows([r for r in (collect(p) for p in sorted(a.runs) if p.is_dir()) if r])
    bases = [b for b in (load_eval(p) for p in a.base) if b]
    base = bases[0] if bases else None
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "table.md").write_text(table(rows, bases), encoding="utf-8")
    (a.out / "gates.md").write_text(gates_table(rows), encoding="utf-8")
    write_json_atomic(a.out / "runs.json", {"base": base and {"bpb": base.get("bpb"), "tasks": base.get("tasks")},
                                            "bases": [{"label": b.get("label"), "bpb": b.get("bpb"),
                                                       "tasks": b.get("tasks")} for b in bases],
                                            "runs": rows}, indent=1, default=str)
    if rows:
        from .report import MARKERS

        curves_plot(rows, a.out / "curves.png")
        fr = frontier.write(rows, a.out, MARKERS)
        if fr:
            with (a.out / "frontier.md").open("a", encoding="utf-8") as fh:
                fh.write(f"\n## Downstream at each method's extreme (most French within "
                         f"{frontier.EXTREME_BUDGET:+.2f} PubMed)\n\n" + extremes_table(fr, rows, bases))
            print((a.out / "frontier.md").read_text(encoding="utf-8"))
    if a.base_meta and a.base_meta.is_file():
        print(base_curve(json.loads(a.base_meta.read_text(encoding="utf-8")), a.out))
    print(table(rows, bases))
    print(gates_table(rows))
    return rows


if __name__ == "__main__":
    main()

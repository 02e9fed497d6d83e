"""The sweep file grammar: load a sweep YAML (base, grid, runs, exclude, scales, name), expand it into
runs (grid products, explicit rows, scale overrides and axes), name them and compose each run's config.

The format is described in :mod:`nr_lightning.sweeps.sweep` (its ``--help``) and experiments/paper/README.md.
A :class:`Run` knows its run directory and whether it is new, to resume or done.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ..config import EXPERIMENTS, ConfigError, RunConfig, compose
from ..training.train import earlier_outputs, run_dir_for

SWEEPS = EXPERIMENTS / "paper"
SWEEP_KEYS = {"description", "base", "grid", "runs", "exclude", "scales", "name"}
RESERVED = ("name", "run_dir")  # set by the sweep itself; not accepted as extra overrides
Axis = list[tuple[str, list[str]]]  # [(label, overrides)]


@dataclass
class Scale:
    overrides: list[str] = field(default_factory=list)
    grid: dict[str, Axis] = field(default_factory=dict)
    evaluate: list[str] = field(default_factory=list)  # nr_lightning.evaluate arguments of `--evaluate` at this scale


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
    try:
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = " ".join(str(e).split())[:200]
        raise SweepError(f"{path}: not valid YAML ({first}); fix the file") from None
    if not isinstance(node, dict):
        raise SweepError(f"{path}: expected a mapping at the top level, got a {type(node).__name__}")
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
            if set(v) - {"overrides", "grid", "evaluate"}:
                raise SweepError(f"{path.name}: scales.{s} takes overrides, grid and evaluate, got {sorted(v)}")
            scales[str(s)] = Scale(_str_list(v.get("overrides"), f"scales.{s}"),
                                   _grid(v.get("grid") or {}, f"{path.name}: scales.{s}.grid"),
                                   _str_list(v.get("evaluate"), f"{path.name}: scales.{s}.evaluate"))
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
    label_keys: set[str] = set()
    for (fixed, lab, ovr), (slab, sovr) in itertools.product(entries, scale_axes):
        overrides = [*sweep.base, *sc.overrides, *sovr, *ovr]
        labels = {**_labels_from(overrides), **slab, **lab}
        label_keys |= set(labels)
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
    unknown = sorted({k for ex in sweep.exclude for k in ex} - label_keys)
    if unknown:  # an exclude on a misspelt axis used to exclude nothing, silently
        raise SweepError(f"{sweep.path}: exclude names {', '.join(map(repr, unknown))}, which no run has as an axis "
                         f"or override; axes: {', '.join(sorted(label_keys)) or 'none'}")
    if errors:
        raise SweepError(f"{sweep.path.name} (scale={scale}): {len(errors)} run(s) do not compose:\n"
                         + "\n".join(errors))
    out = list(runs.values())
    if only:
        # a pattern may name the run as the sweep file does (repro-lora) or as its directory is (repro-lora-cpu)
        out = [r for r in out if any(fnmatch.fnmatch(r.name, pat) or fnmatch.fnmatch(r.name.removesuffix(f"-{scale}"), pat)
                                     for pat in only.split(","))]
    return out

"""The backbone's own row: the same evaluation on the bare backbone, computed once and cached.

A run's numbers mean little without the model it started from; ``make eval`` prints every metric's Δ
against this row. The cache key is everything that changes the backbone's numbers (backbone, seed,
held-out sources, tasks, limits, shots, normalisation) and the SHA-256 of every file the evaluation reads
(held-out texts, task files, backbone weights), so a cached row is reused only when it is the same evaluation
of the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from omegaconf import OmegaConf

from ..io import write_json_atomic
from .multiple_choice import paired_test


def files_read(ev, run_cfg) -> dict[str, str]:
    """path -> SHA-256 of every file the backbone's evaluation reads (held-out texts, task files, the backbone's
    weights): a file whose content changed gives another cache key, not a stale row."""
    from ..backbone import weights_sha256
    from ..data import MixedLanguageDataModule, open_source
    from ..io import file_sha256
    from .evaluate import default_tasks
    from .tasks import TASKS

    data = OmegaConf.to_object(OmegaConf.structured(run_cfg.data))
    if ev.langs:  # as evaluate() does
        data.learn, data.retain = [x for x in ev.langs if x != "en"], ["en"]
    dm = MixedLanguageDataModule(data, None)
    paths: list[Path] = []
    if ev.max_docs != 0:
        for name, spec in dm.heldout_sources().items():
            if not name.endswith("_indomain") and not open_source(spec).is_hf:
                paths += open_source(spec).files()
    for task in (default_tasks(sorted(dm.languages)) if ev.tasks is None else ev.tasks):
        spec = TASKS.get(task)
        fixture = spec.fixture if spec is not None else Path(task)
        if fixture is not None and fixture.is_file():
            paths.append(fixture)
    out = {str(p): file_sha256(p) for p in paths}
    weights = weights_sha256(ev.backbone or run_cfg.backbone.name)
    if weights:
        out["backbone weights"] = weights
    return out


def _key(ev, run_cfg) -> dict:
    data = OmegaConf.to_container(OmegaConf.structured(run_cfg.data))
    return {"backbone": ev.backbone or run_cfg.backbone.name, "seed": run_cfg.seed, "data": data,
            "files": files_read(ev, run_cfg),
            **{k: v for k, v in asdict(ev).items() if k in ("langs", "tasks", "limit", "max_docs", "max_length",
                                                             "shots", "normalization")}}


def _file_for(key: dict) -> Path:
    from ..backbone import cache_dir

    blob = json.dumps(key, sort_keys=True, default=str)
    return cache_dir() / "baselines" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"


def baseline_file(ev, run_cfg) -> Path:
    return _file_for(_key(ev, run_cfg))


def backbone_row(ev, run_cfg) -> dict:
    """The backbone's eval result for the evaluation `ev` of a run with config `run_cfg` (cached)."""
    from .evaluate import evaluate

    key = _key(ev, run_cfg)
    path = _file_for(key)
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    bare = replace(ev, run=None, backbone=ev.backbone or run_cfg.backbone.name, seed=run_cfg.seed, out=None,
                   data=OmegaConf.to_container(OmegaConf.structured(run_cfg.data)), baseline=False)
    result = evaluate(bare)
    result["cache_key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result, default=str)
    return result


def deltas(result: dict, base: dict) -> dict:
    """Run minus backbone for every bpb, accuracy and task average both hold (per task, also McNemar's exact
    test on the items when both evaluations kept them: ``paired``)."""
    out: dict = {"bpb": {}, "tasks": {}, "task_average": {}}
    for k, v in result.get("bpb", {}).items():
        if k in base.get("bpb", {}):
            out["bpb"][k] = v - base["bpb"][k]
    for k, r in result.get("tasks", {}).items():
        b = base.get("tasks", {}).get(k)
        if b:
            out["tasks"][k] = {"acc": r["acc"] - b["acc"], "acc_norm": r["acc_norm"] - b["acc_norm"]}
            paired = paired_test(r, b)  # item by item: resolves smaller differences than the two stderrs
            if paired is not None:
                out["tasks"][k]["paired"] = paired
    for k, v in result.get("task_average", {}).items():
        if k in base.get("task_average", {}):
            out["task_average"][k] = v - base["task_average"][k]
    return out

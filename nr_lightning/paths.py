"""Where things live: the checkout, its experiment configs, the cache, and the English base backbone.

Torch-free and importing nothing of the package, so every module (config, backbone, data, the recipes) can ask it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["ENGLISH_BASE", "EXPERIMENTS", "REPO", "backbone_reference_dir", "base_dir", "cache_dir", "is_built"]

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
ENGLISH_BASE = "smollm2-135m-en"  # the backbone preset built by `make backbone-en` (nr_lightning/training/english_base.py)


def cache_dir() -> Path:
    """Where converted backbones and prepared corpora live (never committed)."""
    env = os.environ.get("NRL_CACHE")
    if env:
        return Path(env).expanduser()
    return REPO / ".cache"


def base_dir() -> Path:
    """The English base backbone's HF directory (built or not)."""
    return cache_dir() / "backbones" / ENGLISH_BASE


def is_built() -> bool:
    d = base_dir()
    return (d / "model.safetensors").is_file() and (d / "nrl_base.json").is_file()


def backbone_reference_dir(runs_root: Path | str, backbone: str, lang: str) -> Path:
    """Where a sweep keeps the evaluation of an untouched backbone for one language (`backbone-<name>-<lang>`)."""
    return Path(runs_root) / f"backbone-{re.sub(r'[^A-Za-z0-9._-]+', '_', backbone)}-{lang}"

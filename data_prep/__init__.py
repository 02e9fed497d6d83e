"""CommonCrawl → training shards (the paper's data pipeline, docs/data_prep.md) on HF datatrove.

Steps: WARC/WET/JSONL reading → Resiliparse HTML→text → fastText language ID → exact
paragraph dedup across the whole run → fastText quality filter → sharded jsonl.gz/parquet.
Only the steps datatrove lacks are written here (see ``data_prep.steps``); the executors
(local, SLURM, Ray) are datatrove's, so scaling out is configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Project cache (gitignored): ``DATA_PREP_CACHE`` (e.g. node-local disk), else ``NRL_CACHE`` (the cache
    the rest of the framework uses), else ``<repo>/.cache``."""
    env = os.environ.get("DATA_PREP_CACHE") or os.environ.get("NRL_CACHE")
    return Path(env).expanduser() if env else REPO_ROOT / ".cache"

"""Atomic file writes shared by the data cache, the baseline cache, the sweep archive and the continual runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None) -> None:
    """Write ``obj`` as JSON through a temporary file and a rename, so a reader never sees half a file.

    The temporary name carries the process id: two ranks or two sweep processes writing the same cache
    entry each rename a complete file of their own instead of interleaving into one.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False, default=default) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

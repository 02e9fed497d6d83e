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


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex), streamed: the content key of caches, resumes and weight checksums."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


CHECKSUMS_FILE = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` checks an export with the stock tool


def write_checksums(folder: str | Path, pattern: str = "*.safetensors") -> Path:
    """Write ``SHA256SUMS`` (the ``sha256sum`` format) for the weight files under ``folder``."""
    folder = Path(folder)
    lines = [f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}" for p in sorted(folder.rglob(pattern))]
    out = folder / CHECKSUMS_FILE
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, out)
    return out


def checksum_problem(folder: str | Path) -> str | None:
    """Why the files listed in ``folder/SHA256SUMS`` do not match it (None: they match, or there is no list)."""
    folder = Path(folder)
    sums = folder / CHECKSUMS_FILE
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        p = folder / name.strip()
        if not p.is_file():
            return f"{p} is missing (listed in {sums})"
        if file_sha256(p) != digest.strip():
            return f"{p} does not match its SHA-256 in {sums} (damaged or changed after it was written)"
    return None

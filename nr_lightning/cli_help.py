"""`--help` key listings: every key of a config dataclass with its default and its one-line doc.

The docs are the comments already beside the fields (an inline ``# ...``, the comment lines above a field, or
an attribute docstring below it), read from the source with ``ast``: a second copy of them would drift.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import textwrap
from typing import Any


def _field_docs(cls: type) -> dict[str, str]:
    """field name -> first line of its doc (inline comment, comment lines above, or docstring below)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = src.splitlines()
    body = ast.parse(src).body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        line = lines[node.lineno - 1]
        doc = line.split("  # ", 1)[1].strip() if "  # " in line else ""
        if not doc:
            above, j = [], node.lineno - 2
            while j >= 0 and lines[j].strip().startswith("#"):
                above.insert(0, lines[j].strip().lstrip("#").strip())
                j -= 1
            doc = " ".join(above)
        nxt = body[i + 1] if i + 1 < len(body) else None
        if not doc and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) \
                and isinstance(nxt.value.value, str):
            doc = " ".join(nxt.value.value.split())
        docs[node.target.id] = re.split(r"\.\s+(?=[A-Z`(])", doc)[0].rstrip(".")
    return docs


def describe(cls: type, values: dict[str, Any] | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every leaf field of dataclass `cls` (nested dataclasses recursed)."""
    docs = _field_docs(cls)
    hints = {f.name: f for f in dataclasses.fields(cls)}
    inst = cls() if values is None else None
    out = []
    for name, f in hints.items():
        value = values.get(name) if values is not None else getattr(inst, name)
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if isinstance(sub, type) and dataclasses.is_dataclass(sub):
            nested = value if isinstance(value, dict) else dataclasses.asdict(value) if value is not None else None
            out += describe(sub, nested, f"{prefix}{name}.")
            continue
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        shown = "null" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out.append((f"{prefix}{name}", shown, docs.get(name, "")))
    return out


def key_table(cls: type, values: dict[str, Any] | None = None, width: int = 110) -> str:
    """The keys of `cls` as aligned `key=default  doc` lines."""
    rows = describe(cls, values)
    left = [f"  {k}={v}" for k, v, _ in rows]
    pad = min(max(len(s) for s in left) + 2, 52)
    lines = []
    for s, (_, _, doc) in zip(left, rows):
        line = s.ljust(pad) + doc if doc else s
        lines.append(line if len(line) <= width else line[:width - 1] + "…")
    return "\n".join(lines)

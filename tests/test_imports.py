"""Modules import downward only: the package's import graph (every import statement, module level or inside a
function, read statically) has no cycle, and the light modules stay free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nr_lightning"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports. Importing a.b.c also runs a.b's __init__: that edge counts
    too, except towards the importer's own parent packages (which are always loaded before it)."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    full = ".".join(base + ([node.module] if node.module else []))
                else:
                    full = node.module or ""
                # `from pkg import name`: the submodule pkg.name if there is one, else pkg itself
                targets.update(f"{full}.{a.name}" if f"{full}.{a.name}" in mods else full for a in node.names)
        deps: set[str] = set()
        for target in targets:
            hit = known(target)
            while hit:  # the module and the packages above it
                if hit not in ancestors and hit != mod:
                    deps.add(hit)
                hit = hit.rpartition(".")[0]
        graph[mod] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "nr_lightning.paths" in graph["nr_lightning.backbone"]  # the graph sees the real edges
    assert "nr_lightning.evaluation.evaluate" in graph["nr_lightning.evaluation.cli"]


@pytest.mark.parametrize("module", ["nr_lightning.config", "nr_lightning.paths", "nr_lightning.registry",
                                    "nr_lightning.errors", "nr_lightning.data.config",
                                    "nr_lightning.training.preemption", "nr_lightning.cli"])
def test_light_modules_do_not_import_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0, f"{module} imports torch"

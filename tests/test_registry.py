"""One registry of names: config validation, the extension API and the sequence runner use its tuples."""

from __future__ import annotations

from pathlib import Path

import pytest

from nr_lightning import registry
from nr_lightning.config import CHOICES
from nr_lightning.registry import METHOD_DEFAULTS

PACKAGE = Path(registry.__file__).parent


def test_config_choices_come_from_the_registry():
    assert CHOICES["method.name"] == registry.METHODS
    assert CHOICES["method.gate"] == (None, *registry.GATES) and CHOICES["method.init"] == (None, *registry.INITS)
    assert set(METHOD_DEFAULTS) <= set(registry.METHODS)
    assert set(registry.ADAPTER_METHODS) <= set(registry.METHODS)


def test_no_module_spells_the_name_lists_again():
    lists = [repr(registry.METHODS), repr(registry.ADAPTER_METHODS), repr(registry.GATES), repr(registry.STRATEGIES),
             repr(registry.MERGE_METHODS), '"LlamaMLP": "llama"']
    copies = [f"{p.relative_to(PACKAGE)}: {s}" for p in PACKAGE.rglob("*.py") if p.name != "registry.py"
              for s in lists if s.replace("'", '"') in p.read_text(encoding="utf-8")]
    assert copies == []


def _method_literals(path):
    """(line, literal) of every method name spelled as a string outside docstrings and __all__."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))  # docstring
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))  # exported function names (`adapters`)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in registry.METHODS and id(n) not in skip]


def test_method_names_are_spelled_only_in_the_registry_and_the_method_modules():
    """Other modules ask the registry (method_class(name).<attribute>) instead of branching on a name."""
    from pathlib import Path

    package = Path(registry.__file__).parent
    allowed = {package / "registry.py", *(package / "methods").glob("*.py")}
    gate_named_like_a_method = {(package / "extension" / "adapter.py", "sigmoid"),  # the sigmoid *gate*
                                # the exported modelling file runs without nr_lightning: its own gate table
                                (package / "extension" / "hf_remote" / "modeling_nrl.py", "sigmoid")}
    found = [f"{p.relative_to(package.parent)}:{line}: {value!r}" for p in sorted(package.rglob("*.py"))
             if p not in allowed for line, value in _method_literals(p) if (p, value) not in gate_named_like_a_method]
    assert not found, "method names spelled outside the registry:\n" + "\n".join(found)


def test_every_method_has_a_class_with_its_defaults():
    from nr_lightning.methods import Method

    for name in registry.METHODS:
        cls = registry.method_class(name)
        assert issubclass(cls, Method) and cls.name == name
        assert (cls.default_gate, cls.default_init) == (
            (registry.METHOD_DEFAULTS[name]["gate"], registry.METHOD_DEFAULTS[name]["init"]) if cls.adapter
            else (None, None))
    assert {m for m in registry.METHODS if registry.method_class(m).adapter} == set(registry.ADAPTER_METHODS)
    with pytest.raises(ValueError, match="valid choices"):
        registry.method_class("nope")

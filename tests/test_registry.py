"""One registry of names: config validation, the extension API and the sequence runner use its tuples."""

from __future__ import annotations

from pathlib import Path

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

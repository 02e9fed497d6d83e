"""One module per extension method, as PEFT has one folder per tuner: each class says how the method is applied,
what trains, how it counts against the budget, and how it is saved, loaded, exported and merged. The registry
(nr_lightning/registry.py) maps names to these classes; other modules ask it (``method_class(name)``)."""

from .base import Method

__all__ = ["Method"]

"""nr-lightning: extend a pretrained LM with a new language without forgetting (neutral residues, ICML 2025)."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["METHODS", "adapters", "extend", "gate_spectra", "load_extension", "local_losses", "parameter_report",
           "save_extension", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): `python -m nr_lightning.train` imports this package first, and must install its
    # preemption handler before torch is imported (nr_lightning/training/preemption.py).
    if name in __all__:
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module 'nr_lightning' has no attribute {name!r}")

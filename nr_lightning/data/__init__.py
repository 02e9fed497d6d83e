"""Data side of nr-lightning: prepared corpora, streaming text sources, the packed mixed-language stream
and the DataModule that serves it."""

from typing import Any

__all__ = ["DataConfig", "DataSourceError", "LangSource", "MixedLanguageDataModule", "TextSource", "mixing_decisions",
           "open_source"]
_HOME = {"DataConfig": "config", "LangSource": "config", "MixedLanguageDataModule": "datamodule",
         "mixing_decisions": "packing", "DataSourceError": "sources", "TextSource": "sources", "open_source": "sources"}


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): the run config imports nr_lightning.data.config, which must not pull torch in.
    if name in _HOME:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

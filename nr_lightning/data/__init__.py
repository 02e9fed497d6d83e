"""Data side of nr-lightning: prepared corpora, streaming text sources, the packed mixed-language stream
and the DataModule that serves it."""

from .datamodule import DataConfig, LangSource, MixedLanguageDataModule
from .packing import mixing_decisions
from .sources import DataSourceError, TextSource, open_source

__all__ = ["DataConfig", "DataSourceError", "LangSource", "MixedLanguageDataModule", "TextSource", "mixing_decisions",
           "open_source"]

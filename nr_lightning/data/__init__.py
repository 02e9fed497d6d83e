"""Data side of nr-lightning: prepared corpora, streaming text sources and the mixed-language DataModule."""

from .datamodule import DataConfig, LangSource, MixedLanguageDataModule, mixing_plan
from .sources import DataSourceError, TextSource, open_source

__all__ = ["DataConfig", "DataSourceError", "LangSource", "MixedLanguageDataModule", "TextSource", "mixing_plan",
           "open_source"]

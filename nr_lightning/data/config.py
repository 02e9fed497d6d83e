"""The data settings (``DataConfig``) and their one cross-field check, torch-free: the run config
(nr_lightning/config.py) composes them without importing the DataModule."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataConfig", "LangSource", "stratified_problem"]


@dataclass
class LangSource:
    """Source overrides for one language; empty strings mean the prepared default corpus."""

    path: str = ""
    """Training source spec (file, directory, glob or ``hf:name[:config][@split]``)."""
    heldout: str = ""
    """Held-out source spec (documents never used for training)."""


@dataclass
class DataConfig:
    """Data settings (OmegaConf structured-config friendly: primitives, lists, nested dataclasses)."""

    learn: list[str] = field(default_factory=lambda: ["fr"])
    """New languages to learn (domain label 1), sampled uniformly within the group."""
    retain: list[str] = field(default_factory=lambda: ["en"])
    """Original languages to keep (domain label 0), sampled uniformly within the group."""
    p: float = 0.1
    """Probability that a training sequence comes from the retained group (paper default 0.1)."""
    mixing: str = "random"
    """``random``: each sequence is retained with probability ``p`` (independent draws; at small batches many
    batches hold no English). ``stratified``: every micro-batch holds exactly ``round(p * batch_size)``
    retained sequences, so the English-only local losses (sparsity, gate BCE) act on every optimizer step."""
    weights: dict[str, float] = field(default_factory=dict)
    """Relative sampling weights within each group (``data.weights.fr=3``); unlisted languages weigh 1.
    Empty (default): uniform within each group. P(lang) = P(group) * w_lang / sum of the group's weights."""
    seq_len: int = 256
    """Tokens per packed training sequence (EOS-separated documents)."""
    batch_size: int = 4
    """Sequences per batch per device (micro-batch)."""
    num_workers: int = 0
    """Dataloader worker processes per device (each reads only the token shards' share it yields)."""
    seed: int = 0
    """Seed of the mixing decisions; the stream is a deterministic function of (seed, sources, tokenizer)."""
    new: LangSource = field(default_factory=LangSource)
    """Overrides for the first learned language (``data.new.path`` / ``data.new.heldout``)."""
    en: LangSource = field(default_factory=LangSource)
    """Overrides for the first retained language (``data.en.path`` / ``data.en.heldout``)."""
    heldout_en: str = ""
    """English forgetting set (other domain); default ``<corpora>/en_pubmed/heldout.jsonl``."""
    corpora_dir: str = ""
    """Root of the prepared corpora (``<corpora>/<lang>/{train,heldout}.jsonl``); default ``<cache>/corpora``."""
    text_field: str = "text"
    """Field / column holding the text in JSONL and parquet sources."""
    tokens_dir: str = ""
    """Where training sources are tokenised once (datatrove token shards, keyed by content and tokenizer);
    default ``<cache>/tokens``."""


def stratified_problem(mixing: str, p: float, batch_size: int) -> str | None:
    """Why stratified mixing cannot hold ``p`` in batches of ``batch_size`` (None when it can): round(p * B)
    retained sequences per batch must be neither 0 nor B. Shared by the config check and the DataModule."""
    if mixing != "stratified" or not 0 < p < 1:
        return None
    n_ret = round(p * batch_size)
    if n_ret not in (0, batch_size):
        return None
    return (f"data.mixing=stratified with data.p={p} and data.batch_size={batch_size} puts {n_ret} retained (English) "
            f"sequences in each batch of {batch_size}: raise data.batch_size (e.g. {max(2, round(1 / min(p, 1 - p)))}) "
            f"or use data.mixing=random")

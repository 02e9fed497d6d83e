"""Mixed-language training stream: packed, domain-labelled, deterministic, resumable.

Global sequence ``k`` (k = 0, 1, 2, ...) of the training stream is defined independently of ranks and
workers:

1. the *mixing decision* ``lang(k)`` is a pure function of ``(seed, k)`` (a counter-based hash): with
   probability ``p`` a retained (original-domain, label 0) language, else a learned (new, label 1) one,
   uniform within the group;
2. its tokens are the next ``seq_len`` tokens of that language's packed stream (documents tokenised,
   each followed by EOS, concatenated, cut into ``seq_len`` chunks; the remainder carries over, so a
   sequence is single-language and can span document boundaries). A language's source restarts
   (next epoch) when exhausted.

Rank ``r`` of ``W`` takes the sequences ``k ≡ r (mod W)``; its dataloader workers split them by batch.
Resuming from ``K`` consumed sequences replays the mixing decisions and skips ``K`` sequences' worth of
tokens per language, so a resumed stream is bit-identical to the uninterrupted one (and independent of
the world size). See ``docs/data.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..registry import MIXINGS
from .sources import DataSourceError, TextSource, open_source

__all__ = ["DataConfig", "LangSource", "MixedLanguageDataModule", "MixedLanguageStream", "mixing_plan"]

log = logging.getLogger("nr_lightning.data")
STATE_VERSION = 1


# ----------------------------------------------------------------------------------------------------- config


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
    """Dataloader worker processes per device (each tokenises the full stream and keeps its share)."""
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


def _coerce_config(config: Any, overrides: dict) -> DataConfig:
    if config is None:
        cfg = DataConfig()
    elif isinstance(config, DataConfig):
        cfg = config
    else:  # dict / DictConfig: validate through OmegaConf so typos fail loudly
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), config))
    if overrides:
        for key in ("new", "en"):
            if isinstance(overrides.get(key), dict):
                overrides[key] = LangSource(**overrides[key])
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.learn, cfg.retain = list(cfg.learn), list(cfg.retain)
    if not 0.0 <= cfg.p <= 1.0:
        raise ValueError(f"data.p must be in [0, 1], got {cfg.p}")
    if cfg.p > 0 and not cfg.retain:
        raise ValueError(f"data.p={cfg.p} > 0 needs at least one retained language (data.retain)")
    if cfg.p < 1 and not cfg.learn:
        raise ValueError(f"data.p={cfg.p} < 1 needs at least one learned language (data.learn)")
    both = set(cfg.learn) & set(cfg.retain)
    if both or len(set(cfg.learn)) != len(cfg.learn) or len(set(cfg.retain)) != len(cfg.retain):
        raise ValueError(f"languages must be unique across data.learn {cfg.learn} and data.retain {cfg.retain}")
    cfg.weights = {str(k): float(v) for k, v in dict(cfg.weights).items()}
    unknown = set(cfg.weights) - set(cfg.learn) - set(cfg.retain)
    if unknown or any(not v > 0 for v in cfg.weights.values()):
        raise ValueError(f"data.weights {cfg.weights} must be positive and name languages of data.learn "
                         f"{cfg.learn} or data.retain {cfg.retain}")
    if cfg.mixing not in MIXINGS:
        raise ValueError(f"data.mixing={cfg.mixing!r}; valid choices: {', '.join(MIXINGS)}")
    problem = stratified_problem(cfg.mixing, cfg.p, cfg.batch_size)
    if problem:
        raise ValueError(problem)
    if cfg.seq_len < 2 or cfg.batch_size < 1 or cfg.num_workers < 0:
        raise ValueError("data.seq_len must be >= 2, data.batch_size >= 1 and data.num_workers >= 0")
    return cfg


def _packaged(spec: str) -> str:
    """A relative path that does not exist from the working directory but does inside the repository (e.g.
    ``nr_lightning/evaluation/data/text/pubmed_en_more.jsonl`` in experiments/trainer/repro.yaml) resolves there,
    so presets work from any directory."""
    if spec and not os.path.isabs(spec) and ":" not in spec and not os.path.exists(spec):
        candidate = Path(__file__).resolve().parents[2] / spec
        if candidate.exists():
            return str(candidate)
    return spec


# ----------------------------------------------------------------------------------------------------- mixing

_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GAMMA
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _pick(h: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Index in a group from hash values: uniform (modulo) without weights, else by the weights' CDF."""
    if weights is None or np.all(weights == weights[0]):
        return (h % np.uint64(len(weights) if weights is not None else 1)).astype(np.int64)
    u = (h >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    cdf = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(weights) - 1).astype(np.int64)


def mixing_plan(seed: int, p: float, n_learn: int, n_retain: int, start: int, count: int,
                weights: np.ndarray | None = None, stratify: int = 0, world_size: int = 1) -> np.ndarray:
    """Language index (learned languages first, then retained) of global sequences ``start..start+count-1``.

    A pure function of ``(seed, k)`` so any rank / worker / resumed run agrees on every decision.
    ``weights`` (one per language, same order) are relative weights within each group; None = uniform.
    ``stratify=B`` (the micro-batch size): global sequence ``k`` is rank ``k % W``'s local sequence ``k // W``,
    at position ``(k // W) % B`` of its micro-batch; the first ``round(p * B)`` positions are retained, so every
    micro-batch on every rank holds exactly that many (the stream then depends on the world size ``W``).
    """
    k = np.arange(start, start + count, dtype=np.uint64)
    key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        h = _splitmix64(k * _GAMMA + key)
    u = (h >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)  # uniform in [0, 1)
    h2 = _splitmix64(h)
    if stratify:
        retained = (k // np.uint64(world_size)) % np.uint64(stratify) < np.uint64(round(p * stratify))
    else:
        retained = u < p
    out = np.empty(count, dtype=np.int64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if n_retain:
        wr = w[n_learn:] if w is not None else np.ones(n_retain)
        out[retained] = n_learn + _pick(h2[retained], wr)
    if n_learn:
        wl = w[:n_learn] if w is not None else np.ones(n_learn)
        out[~retained] = _pick(h2[~retained], wl)
    return out


# ----------------------------------------------------------------------------------------------------- packing


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if hasattr(tokenizer, "model_max_length"):  # HF: silence the "longer than model max length" warning
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


class _PackedLanguage:
    """One language's infinite token stream: docs → tokens + EOS → contiguous buffer (epochs restart).

    Every epoch yields the same tokens, so the stream is periodic: once the first epoch's length is known,
    :meth:`skip` jumps over whole epochs without tokenising (cheap fast-forward on resume), and a corpus
    whose epoch fits in ``cache_tokens`` is kept as token ids after its first pass (no re-tokenising).
    """

    def __init__(self, source: TextSource, tokenizer: Any, eos_id: int, name: str, doc_batch: int = 64,
                 verbose: bool = False, cache_tokens: int = 8_000_000) -> None:
        self.source, self.tokenizer, self.eos_id, self.name = source, tokenizer, eos_id, name
        self.doc_batch, self.verbose = doc_batch, verbose
        self.epoch = 0  # epochs completed (source passes exhausted), counting skipped ones
        self.epoch_len: int | None = None  # tokens (incl. EOS) in one epoch, known after the first pass
        self._produced = 0  # tokens appended to the buffer so far
        self._it: Iterator[str] | None = None
        self._buf = np.empty(0, dtype=np.int32)
        self._pos = 0
        self._cache_cap = cache_tokens
        self._first_epoch: list[np.ndarray] | None = [] if cache_tokens > 0 else None
        self._cache: np.ndarray | None = None

    def _end_epoch(self) -> None:
        self.epoch += 1
        if self.epoch_len is None:
            self.epoch_len = self._produced
            if self._first_epoch is not None:
                self._cache = np.concatenate(self._first_epoch) if self._first_epoch else None
                self._first_epoch = None
        if self.verbose:
            log.info("data: %s source exhausted; starting epoch %d (%d tokens per epoch)", self.name, self.epoch,
                     self.epoch_len)

    def _append(self, arrays: list[np.ndarray]) -> None:
        self._buf, self._pos = np.concatenate([self._buf[self._pos:], *arrays]), 0

    def _refill(self) -> None:
        if self._cache is not None:  # later epochs of a small corpus: replay the cached token ids
            self._append([self._cache])
            self._produced += len(self._cache)
            self._end_epoch()
            return
        texts: list[str] = []
        ended = False
        while len(texts) < self.doc_batch:
            if self._it is None:
                self._it = self.source.iter_texts()  # raises DataSourceError when the source has no documents
            try:
                texts.append(next(self._it))
            except StopIteration:
                self._it = None
                if texts:  # a batch never straddles an epoch boundary
                    ended = True
                    break
                self._end_epoch()
                if self._cache is not None:
                    return
        arrays = []
        for doc in _encode(self.tokenizer, texts):
            arrays.append(np.asarray([*doc, self.eos_id], dtype=np.int32))
            self._produced += len(doc) + 1
        if self._first_epoch is not None:
            if self._produced <= self._cache_cap:
                self._first_epoch.extend(arrays)
            else:
                self._first_epoch = None  # too large to cache: re-tokenise every epoch
        self._append(arrays)
        if ended:
            self._end_epoch()

    def take(self, n: int) -> np.ndarray:
        while len(self._buf) - self._pos < n:
            self._refill()
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            if self.epoch_len and n >= self.epoch_len:
                self.epoch += n // self.epoch_len
                n %= self.epoch_len
                continue
            avail = len(self._buf) - self._pos
            if avail >= n:
                self._pos += n
                return
            n -= avail
            self._buf, self._pos = np.empty(0, dtype=np.int32), 0
            self._refill()


class MixedLanguageStream(IterableDataset):
    """Infinite stream of ``{"input_ids", "domain", "lang"}`` examples for one rank, starting at ``start``."""

    CACHE_TOKENS = 8_000_000
    """A language whose epoch has at most this many tokens is kept as token ids after its first pass."""

    def __init__(self, sources: list[TextSource], tokenizer: Any, eos_id: int, n_learn: int, p: float,
                 seq_len: int, seed: int, batch_size: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 names: list[str] | None = None, block: int = 4096, weights: list[float] | None = None,
                 stratified: bool = False) -> None:
        super().__init__()
        self.sources, self.tokenizer, self.eos_id = sources, tokenizer, eos_id
        self.n_learn, self.p, self.seq_len, self.seed = n_learn, p, seq_len, seed
        self.batch_size, self.start, self.rank, self.world_size = batch_size, start, rank, world_size
        self.names = names or [str(i) for i in range(len(sources))]
        self.block = block
        self.stratified = stratified
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.epochs: dict[str, int] = {}  # languages' epochs reached (main process only when num_workers=0)

    def plan(self, start: int, count: int) -> np.ndarray:
        return mixing_plan(self.seed, self.p, self.n_learn, len(self.sources) - self.n_learn, start, count,
                           self.weights, stratify=self.batch_size if self.stratified else 0,
                           world_size=self.world_size)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        W, r, B, S = self.world_size, self.rank, self.batch_size, self.seq_len
        verbose = r == 0 and worker == 0
        streams = [_PackedLanguage(src, self.tokenizer, self.eos_id, name, verbose=verbose,
                                   cache_tokens=self.CACHE_TOKENS)
                   for src, name in zip(self.sources, self.names)]
        # Fast-forward: every language has consumed S tokens per earlier sequence assigned to it.
        k = 0
        while k < self.start:
            n = min(self.block * 64, self.start - k)
            counts = np.bincount(self.plan(k, n), minlength=len(streams))
            for s, c in zip(streams, counts):
                if c:
                    s.skip(int(c) * S)
            k += n
        # This rank's local sequence m is global k = m*W + r; local batches go round-robin to workers.
        m0 = (self.start - r + W - 1) // W
        k = self.start
        while True:
            plan = self.plan(k, self.block)
            for j, lang in enumerate(plan.tolist()):
                kk = k + j
                s = streams[lang]
                if kk % W != r or ((kk // W - m0) // B) % n_workers != worker:
                    s.skip(S)
                    continue
                ids = torch.from_numpy(s.take(S).astype(np.int64))
                self.epochs = {st.name: st.epoch for st in streams}
                yield {"input_ids": ids, "domain": 0 if lang >= self.n_learn else 1, "lang": lang}
            k += self.block


# ----------------------------------------------------------------------------------------------------- loader


class _Counted:
    """Counts batches handed out (trainer-less position tracking); forwards everything else."""

    def __init__(self, it: Iterator, dm: MixedLanguageDataModule) -> None:
        self._it, self._dm = it, dm

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        batch = next(self._it)
        self._dm._batches_yielded += 1
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)


class _StreamLoader(DataLoader):
    """DataLoader that (re)starts the stream at the data module's current position on every ``iter()``."""

    def __init__(self, dataset: MixedLanguageStream, dm: MixedLanguageDataModule, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._dm = dm

    def __iter__(self) -> Any:
        self.dataset.start = self._dm.sequences_consumed()
        it = super().__iter__()
        return it if self._dm.trainer is not None else _Counted(it, self._dm)

    # Lightning treats loaders with these as resumable (no "dataloader is not resumable" warning). The real
    # position lives in the DataModule's checkpoint state, which Lightning restores before iterating.
    def state_dict(self) -> dict[str, Any]:
        return {"sequences_consumed": self._dm.sequences_consumed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


# ----------------------------------------------------------------------------------------------------- module


class MixedLanguageDataModule(L.LightningDataModule):
    """Training stream mixing learned (label 1) and retained (label 0) languages, plus held-out texts.

    ``tokenizer`` is a tokenizer object (HF-compatible: ``tok(list_of_texts, add_special_tokens=False)
    ["input_ids"]`` and ``eos_token_id``) or a name for :func:`nr_lightning.backbone.load_tokenizer`.
    ``config`` is a :class:`DataConfig`, a dict or an OmegaConf node; keyword overrides replace fields.
    """

    def __init__(self, config: DataConfig | dict | None = None, tokenizer: Any = "smollm2-135m",
                 **overrides: Any) -> None:
        super().__init__()
        self.config = _coerce_config(config, overrides)
        self._tokenizer = tokenizer
        self._base_sequences = 0
        self._base_step: int | None = 0
        self._batches_yielded = 0
        self._validated = False

    # ------------------------------------------------------------------ languages and sources

    @property
    def languages(self) -> list[str]:
        """Language names; a batch's ``lang`` indexes this list (learned languages first, then retained)."""
        return [*self.config.learn, *self.config.retain]

    @property
    def tokenizer(self) -> Any:
        if isinstance(self._tokenizer, (str, os.PathLike)):
            from nr_lightning.backbone import load_tokenizer

            self._tokenizer = load_tokenizer(str(self._tokenizer))
        return self._tokenizer

    @property
    def corpora_dir(self) -> Path:
        if self.config.corpora_dir:
            return Path(self.config.corpora_dir).expanduser()
        from nr_lightning.backbone import cache_dir

        return cache_dir() / "corpora"

    def _override(self, lang: str) -> LangSource | None:
        c = self.config
        if c.learn and lang == c.learn[0]:
            return c.new
        if c.retain and lang == c.retain[0]:
            return c.en
        return None

    def train_source(self, lang: str) -> str:
        """Training source spec of ``lang`` (override, else ``<corpora>/<lang>/train.jsonl``)."""
        o = self._override(lang)
        return (o.path if o and o.path else "") or str(self.corpora_dir / lang / "train.jsonl")

    def heldout_sources(self) -> dict[str, str]:
        """Held-out sets by name: each training language, with ``en`` = the English *forgetting* set
        (other domain, PubMed-like) and ``en_indomain`` = held-out English of the training domain."""
        out: dict[str, str] = {}
        for lang in self.languages:
            if lang == "en":
                out["en"] = self._heldout_spec("en")
                out["en_indomain"] = self._heldout_spec("en_indomain")
            else:
                out[lang] = self._heldout_spec(lang)
        return out

    def _heldout_spec(self, name: str) -> str:
        if name == "en":
            return _packaged(self.config.heldout_en) or str(self.corpora_dir / "en_pubmed" / "heldout.jsonl")
        lang = name[: -len("_indomain")] if name.endswith("_indomain") else name
        o = self._override(lang)
        return (o.heldout if o and o.heldout else "") or str(self.corpora_dir / lang / "heldout.jsonl")

    def heldout_texts(self, lang: str, max_docs: int | None = None) -> list[str]:
        """Held-out documents (never trained on) for bits-per-byte: ``lang`` is a key of
        :meth:`heldout_sources` (``en`` = forgetting set, ``en_indomain``) or any prepared language."""
        return self.read_texts(self._heldout_spec(lang), max_docs)

    def read_texts(self, spec: str, max_docs: int | None = None) -> list[str]:
        """The first ``max_docs`` documents of any source spec (a relative path may name a packaged file)."""
        src = open_source(_packaged(spec), self.config.text_field)
        out: list[str] = []
        for text in src.iter_texts():
            if max_docs is not None and len(out) >= max_docs:
                break
            out.append(text)
        return out

    def language_weights(self) -> list[float] | None:
        """Relative weight of each language of :attr:`languages` within its group (None = uniform)."""
        w = self.config.weights
        return [float(w.get(lang, 1.0)) for lang in self.languages] if w else None

    def _active(self) -> list[int]:
        """Indices of languages that can be sampled (a group with zero probability is never read)."""
        n = len(self.config.learn)
        return [i for i in range(len(self.languages)) if (i < n and self.config.p < 1) or (i >= n and self.config.p > 0)]

    def _sources(self) -> list[TextSource]:
        return [open_source(self.train_source(lang), self.config.text_field) for lang in self.languages]

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, stage: str | None = None) -> None:
        """Check every training source a run will read, record by record (fail at startup, not mid-run)."""
        if stage in (None, "fit") and not self._validated:
            sources = self._sources()
            for i in self._active():
                try:
                    sources[i].validate()
                except DataSourceError as e:
                    raise DataSourceError(f"training data for language {self.languages[i]!r}: {e}") from None
            self._validated = True

    def _dist(self) -> tuple[int, int]:
        t = self.trainer
        if t is not None:
            return int(t.global_rank), int(t.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def train_dataset(self, rank: int | None = None, world_size: int | None = None,
                      start: int | None = None) -> MixedLanguageStream:
        """The stream for one rank (default: this process), starting at global sequence ``start``."""
        self.setup("fit")
        r, w = self._dist()
        rank, world_size = (r if rank is None else rank), (w if world_size is None else world_size)
        tok = self.tokenizer
        eos = getattr(tok, "eos_token_id", None)
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id; packing needs an EOS separator")
        c = self.config
        return MixedLanguageStream(self._sources(), tok, int(eos), len(c.learn), c.p, c.seq_len, c.seed,
                                   c.batch_size, start=self.sequences_consumed() if start is None else start,
                                   rank=rank, world_size=world_size, names=self.languages,
                                   weights=self.language_weights(), stratified=c.mixing == "stratified")

    def train_dataloader(self, rank: int | None = None, world_size: int | None = None) -> DataLoader:
        """Infinite loader of ``{"input_ids": (B, seq_len), "domain": (B,), "lang": (B,)}`` batches.

        Every ``iter()`` starts at :meth:`sequences_consumed`, so a resumed run continues the stream.
        """
        if self.config.num_workers > 0:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        ds = self.train_dataset(rank, world_size)
        return _StreamLoader(ds, self, batch_size=self.config.batch_size, num_workers=self.config.num_workers)

    # ------------------------------------------------------------------ resume

    def sequences_consumed(self) -> int:
        """Global training sequences consumed so far (all ranks): from the trainer's optimizer steps when
        attached, else from the batches this module's loaders handed out."""
        t = self.trainer
        if t is not None:
            step = int(t.global_step)
            if self._base_step is None or step < self._base_step:
                self._base_step = step  # anchor after a restore (global_step is restored after load_state_dict)
            per_step = self.config.batch_size * int(getattr(t, "accumulate_grad_batches", 1)) * int(t.world_size)
            return self._base_sequences + (step - self._base_step) * per_step
        return self._base_sequences + self._batches_yielded * self.config.batch_size * self._dist()[1]

    def fingerprint(self) -> str:
        """Hash of everything that defines the stream's content (not batch size or world size)."""
        c = self.config
        tok = self.tokenizer
        tok_id = [type(tok).__name__, getattr(tok, "eos_token_id", None),
                  len(tok) if hasattr(tok, "__len__") else getattr(tok, "vocab_size", None)]
        blob = json.dumps({"seed": c.seed, "p": c.p, "learn": c.learn, "retain": c.retain, "seq_len": c.seq_len,
                           "sources": [self.train_source(lang) for lang in self.languages],
                           "text_field": c.text_field, "tokenizer": tok_id,
                           **({"weights": c.weights} if c.weights else {}),
                           **({"mixing": c.mixing, "batch_size": c.batch_size} if c.mixing != "random" else {})},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """Stream position for checkpoints (Lightning stores it under the class name)."""
        t = self.trainer
        return {"version": STATE_VERSION, "sequences_consumed": self.sequences_consumed(),
                "global_step": int(t.global_step) if t is not None else None, "seed": self.config.seed,
                "fingerprint": self.fingerprint()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the stream position; the next ``train_dataloader()`` iteration continues from it."""
        if state_dict.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported data state version {state_dict.get('version')!r}")
        if state_dict.get("fingerprint") != self.fingerprint():
            warnings.warn(
                "data config changed since the checkpoint (seed, p, languages, seq_len, sources or tokenizer): "
                f"resuming at sequence {state_dict['sequences_consumed']} of a different stream", stacklevel=2)
        self._base_sequences = int(state_dict["sequences_consumed"])
        self._base_step = None
        self._batches_yielded = 0

    # ------------------------------------------------------------------ summary

    def describe(self) -> dict[str, Any]:
        """Summary for the run banner."""
        c = self.config
        return {"languages": self.languages, "learn": c.learn, "retain": c.retain, "p_retain": c.p,
                "weights": self.language_weights(),
                "domain_labels": {"retained (original)": 0, "learned (new)": 1},
                "seq_len": c.seq_len, "batch_size": c.batch_size, "tokens_per_batch": c.batch_size * c.seq_len,
                "num_workers": c.num_workers, "seed": c.seed,
                "train_sources": {lang: self.train_source(lang) for lang in self.languages},
                "heldout_sources": self.heldout_sources(), "sequences_consumed": self.sequences_consumed()}

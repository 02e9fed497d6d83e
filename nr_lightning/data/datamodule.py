"""The mixed-language DataModule: its config (``DataConfig``), the sources of each language, the loader
that restarts the stream at the consumed position, and the resumable stream state.

The stream itself (mixing decisions, packing, the split over ranks and workers) is defined in
:mod:`nr_lightning.data.packing`; see ``docs/data.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..registry import MIXINGS
from .config import DataConfig, LangSource, stratified_problem
from .packing import MixedLanguageStream
from .sources import DataSourceError, open_source

if TYPE_CHECKING:
    from .shards import TokenShards

__all__ = ["DataConfig", "LangSource", "MixedLanguageDataModule", "stratified_problem"]

STATE_VERSION = 1


# ----------------------------------------------------------------------------------------------------- config


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
        self.dataset.counts = self._dm._counts_at(self.dataset.start, self.dataset.world_size)
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
        self._shards: list[TokenShards | None] = []
        self._ckpt_corpora: dict[str, str] = {}
        self._counts: tuple[int, int, list[int]] | None = None  # (world size, sequence k, languages' counts before k)

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

    # ------------------------------------------------------------------ Lightning hooks

    @property
    def tokens_dir(self) -> Path:
        """Where training sources are tokenised once (``data.tokens_dir``, default ``<cache>/tokens``)."""
        if self.config.tokens_dir:
            return Path(self.config.tokens_dir).expanduser()
        from nr_lightning.backbone import cache_dir

        return cache_dir() / "tokens"

    def prepare_data(self) -> None:
        """Tokenise every training source a run will read, once (Lightning calls this on one process per node
        before :meth:`setup`; a prepared source whose content and tokenizer are unchanged is reused)."""
        self._shards = self._open_shards()

    def _open_shards(self) -> list[TokenShards | None]:
        from .shards import prepare_shards

        out: list[TokenShards | None] = [None] * len(self.languages)
        for i in self._active():
            lang = self.languages[i]
            try:
                out[i] = prepare_shards(self.train_source(lang), self.tokenizer, self.tokens_dir, self.config.text_field)
            except DataSourceError as e:
                raise DataSourceError(f"training data for language {lang!r}: {e}") from None
        return out

    def setup(self, stage: str | None = None) -> None:
        """Open (tokenising once if needed) and check the token shards of every language a run will read: sizes,
        index and checksums, seconds whatever the corpus size; a source is read record by record only when it
        is tokenised, so a bad record stops the run at start-up, naming file and line."""
        if stage in (None, "fit") and not self._validated:
            self._shards = self._open_shards()
            self._validated = True
            self._check_corpora()

    def corpora(self) -> dict[str, str]:
        """Content-and-tokenizer key of each language's token shards (after :meth:`setup`)."""
        return {lang: s.path.name for lang, s in zip(self.languages, self._shards) if s is not None}

    def _check_corpora(self) -> None:
        """A checkpoint's stream position is only meaningful on the corpora it was trained on."""
        want = self._ckpt_corpora
        if not want or not self._shards:
            return
        have = self.corpora()
        changed = sorted(lang for lang in set(want) & set(have) if want[lang] != have[lang])
        if changed:
            raise DataSourceError(
                f"training corpus changed since the checkpoint for {', '.join(changed)} (token shards "
                f"{', '.join(f'{want[x]} -> {have[x]}' for x in changed)}): resume with the data the run was trained "
                "on, or start a new run (overwrite=true or a new run dir)")

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
        if getattr(self.tokenizer, "eos_token_id", None) is None:
            raise ValueError("the tokenizer has no eos_token_id; packing needs an EOS separator")
        self.setup("fit")
        r, w = self._dist()
        rank, world_size = (r if rank is None else rank), (w if world_size is None else world_size)
        start = self.sequences_consumed() if start is None else start
        return self._stream(self._shards, rank, world_size, start, counts=self._counts_at(start, world_size))

    def _counts_at(self, start: int, world_size: int) -> list[int] | None:
        """Languages' counts before ``start`` from the last known position (a checkpoint's), None if unknown."""
        known = self._counts
        if not known or known[0] != world_size or known[1] > start:
            return None
        if known[1] == start:
            return list(known[2])
        return self._stream([None] * len(self.languages), 0, world_size, 0).counts_before(
            start, since=known[1], counts=np.asarray(known[2])).tolist()

    def _stream(self, shards: list, rank: int, world_size: int, start: int,
                counts: list[int] | None = None) -> MixedLanguageStream:
        c = self.config
        return MixedLanguageStream(shards, len(c.learn), c.p, c.seq_len, c.seed, c.batch_size, start=start,
                                   rank=rank, world_size=world_size, names=self.languages,
                                   weights=self.language_weights(), stratified=c.mixing == "stratified", counts=counts)

    def language_counts(self, k: int) -> list[int]:
        """Sequences of each language among global sequences ``0..k-1`` (the stream's per-language positions),
        counted on from this module's previous count, so a checkpoint costs the steps since the previous one
        and a resume takes its position from the checkpoint instead of counting from sequence 0."""
        W = self._dist()[1]
        counter = self._stream([None] * len(self.languages), 0, W, 0)
        memo = self._counts
        if memo and memo[0] == W and memo[1] <= k:
            counts = counter.counts_before(k, since=memo[1], counts=np.asarray(memo[2]))
        else:
            counts = counter.counts_before(k)
        self._counts = (W, k, [int(x) for x in counts])
        return self._counts[2]

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
        k = self.sequences_consumed()
        return {"version": STATE_VERSION, "sequences_consumed": k,
                "global_step": int(t.global_step) if t is not None else None, "seed": self.config.seed,
                "fingerprint": self.fingerprint(), **({"corpora": self.corpora()} if self._shards else {}),
                "positions": {"world_size": self._dist()[1], "sequence": k, "language_counts": self.language_counts(k)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the stream position; the next ``train_dataloader()`` iteration continues from it."""
        if state_dict.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported data state version {state_dict.get('version')!r}")
        if state_dict.get("fingerprint") != self.fingerprint():
            raise DataSourceError(
                "data config changed since the checkpoint (seed, p, mixing, weights, languages, seq_len, sources or "
                f"tokenizer): its position (sequence {state_dict['sequences_consumed']}) belongs to another stream; "
                "resume with the run's data settings, or start a new run (overwrite=true or a new run dir)")
        self._ckpt_corpora = dict(state_dict.get("corpora") or {})
        pos = state_dict.get("positions")
        if pos and len(pos.get("language_counts", [])) == len(self.languages) \
                and state_dict.get("fingerprint") == self.fingerprint():
            self._counts = (int(pos["world_size"]), int(pos["sequence"]), [int(x) for x in pos["language_counts"]])
        self._check_corpora()
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

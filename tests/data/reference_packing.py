"""Reference copy of the packed stream as it was before token shards (tokenised on the fly, skipped by reading).

Kept only as the oracle of tests/data/test_shard_equivalence.py: the shard-backed stream must yield exactly
these sequences. The mixing decisions come from the live module (unchanged by the shards).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from nr_lightning.data.packing import mixing_decisions
from nr_lightning.data.sources import TextSource

__all__ = ["MixedLanguageStream"]

log = logging.getLogger("nr_lightning.data")


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

    def decisions(self, start: int, count: int) -> np.ndarray:
        """Language index of global sequences ``start..start+count-1`` (:func:`mixing_decisions`)."""
        return mixing_decisions(self.seed, self.p, self.n_learn, len(self.sources) - self.n_learn, start, count,
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
            counts = np.bincount(self.decisions(k, n), minlength=len(streams))
            for s, c in zip(streams, counts):
                if c:
                    s.skip(int(c) * S)
            k += n
        # This rank's local sequence m is global k = m*W + r; local batches go round-robin to workers.
        m0 = (self.start - r + W - 1) // W
        k = self.start
        while True:
            langs = self.decisions(k, self.block)
            for j, lang in enumerate(langs.tolist()):
                kk = k + j
                s = streams[lang]
                if kk % W != r or ((kk // W - m0) // B) % n_workers != worker:
                    s.skip(S)
                    continue
                ids = torch.from_numpy(s.take(S).astype(np.int64))
                self.epochs = {st.name: st.epoch for st in streams}
                yield {"input_ids": ids, "domain": 0 if lang >= self.n_learn else 1, "lang": lang}
            k += self.block

"""The mixed-language training stream: mixing decisions, per-language packing, rank and worker split.

Global sequence ``k`` (k = 0, 1, 2, ...) of the training stream is defined independently of ranks and
workers:

1. the *mixing decision* ``lang(k)`` (:func:`mixing_decisions`) is a pure function of ``(seed, k)`` (a
   counter-based hash): with probability ``p`` a retained (original-domain, label 0) language, else a
   learned (new, label 1) one, uniform within the group;
2. its tokens are the next ``seq_len`` tokens of that language's packed stream (documents tokenised,
   each followed by EOS, concatenated, cut into ``seq_len`` chunks; the remainder carries over, so a
   sequence is single-language and can span document boundaries). A language's source restarts
   (next epoch) when exhausted.

The packed stream is read from token shards prepared once (:mod:`nr_lightning.data.shards`), so the
position of sequence ``k`` is computed, not reached by reading: it is ``seq_len`` times the number of
earlier sequences of the same language (a count of mixing decisions), modulo the language's epoch.
Rank ``r`` of ``W`` takes the sequences ``k ≡ r (mod W)``; its dataloader workers split them by batch; each
reader reads only the tokens of the sequences it yields. Resuming from ``K`` consumed sequences counts
the decisions before ``K`` and reads nothing it skips, so a resumed stream is bit-identical to the
uninterrupted one (and independent of the world size). See ``docs/data.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

if TYPE_CHECKING:
    from .shards import TokenShards

__all__ = ["MixedLanguageStream", "mixing_decisions"]

log = logging.getLogger("nr_lightning.data")


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


def mixing_decisions(seed: int, p: float, n_learn: int, n_retain: int, start: int, count: int,
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


# ----------------------------------------------------------------------------------------------------- stream


class MixedLanguageStream(IterableDataset):
    """Infinite stream of ``{"input_ids", "domain", "lang"}`` examples for one rank, starting at ``start``.

    ``shards[i]`` is language ``i``'s prepared corpus (None for a language that is never sampled)."""

    COUNT_CHUNK = 1 << 20
    """Mixing decisions counted per vectorised step when computing a resumed position."""

    def __init__(self, shards: list[TokenShards | None], n_learn: int, p: float, seq_len: int, seed: int,
                 batch_size: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 names: list[str] | None = None, block: int = 4096, weights: list[float] | None = None,
                 stratified: bool = False, counts: list[int] | None = None) -> None:
        super().__init__()
        self.shards = shards
        self.counts = counts  # sequences of each language before ``start`` when known (checkpoint); else counted
        self.n_learn, self.p, self.seq_len, self.seed = n_learn, p, seq_len, seed
        self.batch_size, self.start, self.rank, self.world_size = batch_size, start, rank, world_size
        self.names = names or [str(i) for i in range(len(shards))]
        self.block = block
        self.stratified = stratified
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.epochs: dict[str, int] = {}  # languages' epochs reached (main process only when num_workers=0)

    def decisions(self, start: int, count: int) -> np.ndarray:
        """Language index of global sequences ``start..start+count-1`` (:func:`mixing_decisions`)."""
        return mixing_decisions(self.seed, self.p, self.n_learn, len(self.shards) - self.n_learn, start, count,
                           self.weights, stratify=self.batch_size if self.stratified else 0,
                           world_size=self.world_size)

    def counts_before(self, k: int, since: int = 0, counts: np.ndarray | None = None) -> np.ndarray:
        """Sequences of each language among global sequences ``0..k-1`` (``counts`` = those before ``since``):
        computed from the mixing decisions (no token is read), so language ``l``'s next sequence starts at
        token ``counts[l] * seq_len``."""
        counts = np.zeros(len(self.shards), dtype=np.int64) if counts is None else np.array(counts, dtype=np.int64)
        done = since
        while done < k:
            n = min(self.COUNT_CHUNK, k - done)
            counts += np.bincount(self.decisions(done, n), minlength=len(self.shards))
            done += n
        return counts

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.iter_worker(worker, n_workers)

    def iter_worker(self, worker: int = 0, n_workers: int = 1) -> Iterator[dict]:
        """The examples of dataloader worker ``worker`` of ``n_workers`` (what ``iter()`` gives in that worker)."""
        W, r, B, S, L = self.world_size, self.rank, self.batch_size, self.seq_len, len(self.shards)
        verbose = r == 0 and worker == 0
        counts = (np.array(self.counts, dtype=np.int64) if self.counts is not None
                  else self.counts_before(self.start))
        # This rank's local sequence m is global k = m*W + r; local batches go round-robin to workers.
        m0 = (self.start - r + W - 1) // W
        k = self.start
        while True:
            langs = self.decisions(k, self.block)
            kk = np.arange(k, k + self.block, dtype=np.int64)
            # index of each sequence among its language's sequences: counts so far + rank within the block
            order = np.argsort(langs, kind="stable")
            first = np.searchsorted(langs[order], np.arange(L))
            within = np.empty(self.block, dtype=np.int64)
            within[order] = np.arange(self.block) - first[langs[order]]
            index = counts[langs] + within
            mine = np.flatnonzero((kk % W == r) & (((kk // W - m0) // B) % n_workers == worker))
            for j in mine.tolist():
                lang = int(langs[j])
                shard = self.shards[lang]
                ids = torch.from_numpy(shard.read(int(index[j]) * S, S))
                epochs = {name: int(((index[j] + 1) * S - 1) // shard.n_tokens) if i == lang else self.epochs.get(name, 0)
                          for i, name in enumerate(self.names)}
                if verbose and epochs[self.names[lang]] > self.epochs.get(self.names[lang], 0):
                    log.info("data: %s starts epoch %d (%d tokens per epoch)", self.names[lang],
                             epochs[self.names[lang]], shard.n_tokens)
                self.epochs = epochs
                yield {"input_ids": ids, "domain": 0 if lang >= self.n_learn else 1, "lang": lang}
            counts += np.bincount(langs, minlength=L)
            k += self.block

    def tokens_read(self) -> int:
        """Tokens this process's readers have read so far (all languages)."""
        return sum(s.tokens_read for s in self.shards if s is not None)

"""Bits per byte on held-out text, with lm-evaluation-harness's ``loglikelihood_rolling`` semantics.

``bpb = Σ_docs Σ_tokens NLL_nats / (ln 2 · Σ_docs len(doc.encode("utf-8")))`` (docs/evaluation.md): the same
aggregate as lm-eval's ``bits_per_byte`` metric (a byte-weighted mean over documents, not a mean of
per-document values).

Long documents are split into windows exactly as lm-eval's ``get_rolling_token_windows`` +
``make_disjoint_window`` with ``context_len=1`` (what HFLM uses):

* the document is tokenized with the tokenizer's default special tokens (as ``HFLM.tok_encode``);
* the first window is ``[prefix] + tokens[:L-1]`` and scores ``tokens[:L]``, where ``prefix`` is
  the tokenizer's BOS id, or EOS when there is no BOS (lm-eval's ``prefix_token_id``), so the first
  token is predicted too;
* every later window scores the next ``min(L, remaining)`` tokens: the **stride is L**
  (``max_length``) predicted tokens. A full window sees only its own tokens (the first token of
  window k is conditioned on the one token before it), and the final, shorter window is
  right-aligned to the end of the document and reuses up to ``L - n`` earlier tokens as unscored
  context.

Every token of every document is therefore scored exactly once and none is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from nr_lightning.evaluation.scoring import _pad_id, resolve_max_length, score_requests, truncate


@dataclass
class BPBDetail:
    """Totals behind a bits-per-byte value (summed over all documents)."""

    nll_nats: float
    tokens: int
    bytes: int
    documents: int
    windows: int

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / (math.log(2) * self.bytes) if self.bytes else float("nan")

    @property
    def bits_per_token(self) -> float:
        return self.nll_nats / (math.log(2) * self.tokens) if self.tokens else float("nan")


def prefix_token_id(tokenizer) -> int:
    """Token the first document token is conditioned on: BOS, else EOS (lm-eval's HFLM rule)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        return int(bos)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError("tokenizer has neither a BOS nor an EOS token to condition the first token on")
    return int(eos)


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int) -> Iterator[tuple[list[int], list[int]]]:
    """Disjoint ``(context, continuation)`` windows covering ``tokens``; same output as lm-eval's
    ``map(make_disjoint_window, get_rolling_token_windows(tokens, prefix_token, max_length, 1))``."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    tokens = list(tokens)
    if not tokens:
        return
    first = min(max_length, len(tokens))
    yield [prefix_token], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_length)
        end = predicted + n
        # lm-eval's window input is tokens[end-L-1:end-1]; its disjoint context drops the last n-1
        context = tokens[max(0, end - max_length - 1):end - n]
        yield context, tokens[end - n:end]
        predicted = end


def encode_document(tokenizer, text: str) -> list[int]:
    """Tokenize like ``HFLM.tok_encode``: default special tokens, none added if the text starts with BOS."""
    kwargs = {}
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def bits_per_byte_detail(
    model,
    tokenizer,
    texts: Iterable[str],
    *,
    max_length: int | None = None,
    batch_size: int = 8,
    head_only: bool | None = None,
) -> BPBDetail:
    """Total NLL (nats), scored tokens, UTF-8 bytes, documents and windows for ``texts``.

    ``head_only=False`` forces the full-logits scoring path (see :func:`score_requests`; for benchmarks)."""
    texts = list(texts)
    if max_length is None:
        max_length = resolve_max_length(model, tokenizer)
    prefix = prefix_token_id(tokenizer)
    requests: list[tuple[list[int], int]] = []
    n_bytes = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        for context, continuation in rolling_windows(encode_document(tokenizer, text), prefix, max_length):
            requests.append(truncate(context, continuation, max_length))
    scores = score_requests(model, requests, batch_size=batch_size, pad_id=_pad_id(tokenizer), head_only=head_only)
    return BPBDetail(
        nll_nats=-math.fsum(s.logprob for s in scores),
        tokens=sum(s.n_tokens for s in scores),
        bytes=n_bytes,
        documents=len(texts),
        windows=len(requests),
    )


def bits_per_byte(
    model,
    tokenizer,
    texts: Iterable[str],
    *,
    max_length: int | None = None,
    batch_size: int = 8,
    return_detail: bool = False,
) -> float | tuple[float, BPBDetail]:
    """Bits per UTF-8 byte of ``texts`` under ``model`` (lower is better), lm-eval compatible.

    ``max_length`` is the window (= stride) in tokens; ``None`` resolves it from the model config as
    lm-eval's HFLM does. With ``return_detail=True`` returns ``(bpb, BPBDetail)``.
    """
    detail = bits_per_byte_detail(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    return (detail.bits_per_byte, detail) if return_detail else detail.bits_per_byte


def sharded_bits_per_byte(model, tokenizer, texts: Sequence[str], *, max_length: int | None = None,
                          batch_size: int = 8) -> float:
    """:func:`bits_per_byte` with the documents split across the ranks of the default process group.

    Rank r scores documents r, r+W, r+2W, ...; the NLL, token and byte sums are all-reduced, so every rank
    gets the single-process value (up to float summation order) for 1/W of the work. Outside a process
    group it is :func:`bits_per_byte`. Needs every rank to call it (a collective), and a model whose
    forward does not itself synchronise ranks (DDP yes; FSDP/DeepSpeed shards no: their forward gathers
    weights collectively, so unequal shards would hang).
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bits_per_byte(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    if max_length is None:
        max_length = resolve_max_length(model, tokenizer)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(texts)[rank::world]
    d = bits_per_byte_detail(model, tokenizer, mine, max_length=max_length, batch_size=batch_size) if mine else \
        BPBDetail(nll_nats=0.0, tokens=0, bytes=0, documents=0, windows=0)
    ref = next(model.parameters())
    device = ref.device if dist.get_backend() != "gloo" else torch.device("cpu")
    sums = torch.tensor([d.nll_nats, float(d.bytes)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    nll, n_bytes = float(sums[0]), float(sums[1])
    return nll / (math.log(2) * n_bytes) if n_bytes else float("nan")

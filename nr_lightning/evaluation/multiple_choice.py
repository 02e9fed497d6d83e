"""Multiple-choice accuracy: every choice scored as a continuation of the prompt (lm-eval / OLMES "CF").

Normalisations (OLMES names; the prediction is the argmax, first index on ties like ``np.argmax``):

* ``none``: summed log-probability of the continuation tokens (lm-eval ``acc``);
* ``per_token``: divided by the number of continuation tokens;
* ``per_char``: divided by ``len(choice)`` in characters, leading space excluded (lm-eval ``acc_norm``);
* ``pmi``: ``log p(choice | prompt) - log p(choice | "Answer:")`` (OLMES's unconditional prompt).

Tokenization follows lm-eval's ``_encode_pair`` exactly (trailing spaces of the context move to the
continuation; the continuation's tokens are those of ``encode(context + continuation)`` past
``len(encode(context))``), so per-item predictions match lm-eval's HFLM on the same model.

Batching: for models that take a KV cache (HF causal LMs), each item's prompt runs once and all its
choices are scored from the cache (``score_shared_prefix``); otherwise (our wrappers, fakes, prompts
that need left truncation) all (context + choice) sequences go into one length-sorted stream, so the
choices of one item share a batch with little padding, and only the continuation positions reach
the softmax (and, for HF models, the LM head: ``logits_to_keep``).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from nr_lightning.evaluation.bpb import encode_document, prefix_token_id
from nr_lightning.evaluation.scoring import (
    _pad_id,
    accepts_past_key_values,
    resolve_max_length,
    score_requests,
    score_shared_prefix,
    truncate,
)
from nr_lightning.evaluation.tasks import NORMALIZATIONS, UNCONDITIONAL_PROMPT, Task, build_context, load_task

MIN_SHARED_PREFIX = 32  # shorter shared contexts are cheaper in the plain batched path
PROGRESS_EVERY_S = 60.0  # a 1,000-item task runs for minutes on CPU: say how far it is, at most once a minute


class _Progress:  # by hand: tqdm's bar, redrawn with \r, is unreadable in a log file
    """One stderr line per PROGRESS_EVERY_S seconds: ``label: done/total items, elapsed, ~left`` (items whose
    prompt is scored from the KV cache; the few that need the batched path come after, uncounted)."""

    def __init__(self, label: str | None, total: int) -> None:
        self.label, self.total, self.t0 = label, total, time.perf_counter()
        self.last = self.t0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if self.label is None or now - self.last < PROGRESS_EVERY_S or not 0 < done < self.total:
            return
        self.last, elapsed = now, now - self.t0
        print(f"  {self.label}: {done}/{self.total} items scored, {elapsed:.0f} s, "
              f"~{elapsed * (self.total - done) / done:.0f} s left", file=sys.stderr, flush=True)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) exactly as lm-eval's ``TemplateLM.loglikelihood``."""
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if prefix != cont[0] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode_document(tokenizer, context + continuation)
    ctx = encode_document(tokenizer, context)
    return ctx, whole[len(ctx):]


def loglikelihoods(model, tokenizer, pairs: list[tuple[str, str]], *, max_length: int | None = None,
                   batch_size: int = 8, prefix_cache: bool | None = None,
                   progress: str | None = None) -> list[tuple[float, int]]:
    """(log-probability in nats, continuation token count) of each ``(context, continuation)``.

    ``prefix_cache`` (default: when ``model.forward`` takes ``past_key_values``) runs each shared
    context of >= MIN_SHARED_PREFIX tokens once and scores its continuations from the KV cache;
    requests that need left truncation, and all others, go through the batched path. ``progress``: a label
    under which the KV-cache path reports how many items it has scored, once a minute, on stderr.
    """
    if max_length is None:
        max_length = resolve_max_length(model, tokenizer)
    if prefix_cache is None:
        prefix_cache = accepts_past_key_values(model)
    pad = _pad_id(tokenizer)
    encoded = []
    for context, continuation in pairs:
        ctx, cont = encode_pair(tokenizer, context, continuation)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        encoded.append((ctx, cont))
    out: list[tuple[float, int] | None] = [None] * len(pairs)
    plain = list(range(len(pairs)))
    if prefix_cache:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, cont) in enumerate(encoded):
            if len(ctx) >= MIN_SHARED_PREFIX and len(ctx) + len(cont) <= max_length + 1:
                groups.setdefault(tuple(ctx), []).append(i)
        shared: set[int] = set()
        report = _Progress(progress, len(groups))
        for done, (ctx, members) in enumerate(groups.items()):
            report(done)
            if len(members) < 2:
                continue
            try:
                scores = score_shared_prefix(model, ctx, [encoded[i][1] for i in members], pad_id=pad)
            except TypeError:  # no usable KV cache after all: everything goes the batched way
                break
            for i, s in zip(members, scores):
                out[i] = (s.logprob, s.n_tokens)
            shared.update(members)
        plain = [i for i in plain if i not in shared]
    scores = score_requests(model, [truncate(*encoded[i], max_length) for i in plain], batch_size=batch_size,
                            pad_id=pad)
    for i, s in zip(plain, scores):
        out[i] = (s.logprob, s.n_tokens)
    return out  # type: ignore[return-value]


def _argmax(values: list[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def normalized_scores(logprobs: list[float], n_tokens: list[int], choices: list[str], normalization: str,
                      unconditional: list[float] | None = None) -> list[float]:
    """Per-choice scores under one normalisation (see module docstring)."""
    if normalization == "none":
        return list(logprobs)
    if normalization == "per_token":
        return [lp / n for lp, n in zip(logprobs, n_tokens)]
    if normalization == "per_char":
        return [lp / max(1, len(c)) for lp, c in zip(logprobs, choices)]
    if normalization == "pmi":
        if unconditional is None:
            raise ValueError("pmi needs the unconditional log-probabilities")
        return [lp - u for lp, u in zip(logprobs, unconditional)]
    raise ValueError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")


def accuracy_stderr(correct: int, n: int) -> float:
    """Standard error of an accuracy as lm-eval reports it (``mean_stderr``: sample standard deviation of
    the per-item 0/1 scores, ddof=1, over sqrt(n)) = sqrt(p(1-p)/(n-1)); 0 for a single item."""
    if n < 2:
        return 0.0
    p = correct / n
    return math.sqrt(p * (1.0 - p) / (n - 1))


def paired_test(a: dict, b: dict) -> dict | None:
    """Exact McNemar test between two evaluations of the same task (``multiple_choice`` results with the same
    items, shots and normalisation): how many items only ``a`` gets right, only ``b`` gets right, and the
    two-sided p-value of that split under "no difference" (binomial, 1/2). Pairing removes the item difficulty
    both share, so it resolves far smaller differences than the two accuracies' standard errors. None when
    either lacks per-item results or the items differ."""
    ca, cb = a.get("correct"), b.get("correct")
    if not ca or not cb or len(ca) != len(cb) or any(a.get(k) != b.get(k) for k in ("items_sha256", "shots",
                                                                                     "normalization")):
        return None
    only_a = sum(x == "1" and y == "0" for x, y in zip(ca, cb))
    only_b = sum(x == "0" and y == "1" for x, y in zip(ca, cb))
    k, m = min(only_a, only_b), only_a + only_b  # by hand: scipy is not a dependency of the package
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return {"only_a": only_a, "only_b": only_b, "n": len(ca), "diff": (only_a - only_b) / len(ca), "p": p}


def multiple_choice(
    model,
    tokenizer,
    task: str | Path | Task,
    *,
    shots: int | None = None,
    normalization: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    seed: int = 1234,
    source: str | Path | None = None,
    return_items: bool = False,
    prefix_cache: bool | None = None,
) -> dict[str, Any]:
    """Accuracy of ``model`` on a multiple-choice ``task`` (registry name, JSONL path or loaded Task).

    ``shots``/``normalization`` default to the task's OLMES setting. Returns ``{"acc": <unnormalised
    accuracy>, "acc_norm": <accuracy under normalization>, "n", "normalization", "shots",
    "acc_<norm>" for every normalisation computed}``; with ``return_items=True`` also ``"items"``:
    per-item id, label, prediction, per-choice log-probabilities and the prompt. ``prefix_cache``:
    see :func:`loglikelihoods`.
    """
    loaded = task if isinstance(task, Task) else load_task(task, source=source, limit=limit)
    if isinstance(task, Task) and limit is not None:
        loaded = Task(loaded.spec, loaded.items[:limit], loaded.fewshot_pool, loaded.fewshot_same_split, loaded.source)
    shots = loaded.spec.shots if shots is None else shots
    normalization = loaded.spec.normalization if normalization is None else normalization
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
    if not loaded.items:
        raise ValueError(f"task {loaded.spec.name} has no items")

    contexts = [build_context(loaded, i, shots, seed) for i in range(len(loaded.items))]
    pairs: list[tuple[str, str]] = []
    for ctx, item in zip(contexts, loaded.items):
        pairs.extend((ctx, " " + c) for c in item["choices"])
    uncond_index: dict[str, int] = {}
    if normalization == "pmi":  # one unconditional request per distinct choice string
        for item in loaded.items:
            for c in item["choices"]:
                if c not in uncond_index:
                    uncond_index[c] = len(pairs)
                    pairs.append((UNCONDITIONAL_PROMPT, " " + c))
    results = loglikelihoods(model, tokenizer, pairs, max_length=max_length, batch_size=batch_size,
                             prefix_cache=prefix_cache, progress=loaded.spec.name)

    norms = ["none", "per_token", "per_char"] + (["pmi"] if normalization == "pmi" else [])
    correct = dict.fromkeys(norms, 0)
    records = []
    hits = []  # per item, under `normalization`: what a paired comparison of two models needs (paired_test)
    pos = 0
    for ctx, item in zip(contexts, loaded.items):
        k = len(item["choices"])
        lps = [results[pos + j][0] for j in range(k)]
        ntok = [results[pos + j][1] for j in range(k)]
        pos += k
        uncond = [results[uncond_index[c]][0] for c in item["choices"]] if uncond_index else None
        preds = {nm: _argmax(normalized_scores(lps, ntok, item["choices"], nm, uncond)) for nm in norms}
        for nm in norms:
            correct[nm] += int(preds[nm] == item["label"])
        hits.append("1" if preds[normalization] == item["label"] else "0")
        if return_items:
            records.append({"id": item.get("id"), "label": item["label"], "pred": preds[normalization],
                            "preds": preds, "logprobs": lps, "n_tokens": ntok, "unconditional": uncond,
                            "context": ctx})
    n = len(loaded.items)
    out: dict[str, Any] = {"acc": correct["none"] / n, "acc_norm": correct[normalization] / n, "n": n,
                           "normalization": normalization, "shots": shots, "task": loaded.spec.name}
    out.update({f"acc_{nm}": correct[nm] / n for nm in norms})
    out["acc_stderr"], out["acc_norm_stderr"] = accuracy_stderr(correct["none"], n), \
        accuracy_stderr(correct[normalization], n)
    out["correct"] = "".join(hits)
    # the items themselves, not only their ids: a re-translated or relabelled fixture must not pair
    items = [[it.get("id", i), it.get("question"), it["choices"], it["label"]] for i, it in enumerate(loaded.items)]
    out["items_sha256"] = hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()
    if return_items:
        out["items"] = records
    return out

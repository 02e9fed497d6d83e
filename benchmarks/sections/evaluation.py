"""Section ``eval``: held-out bits-per-byte throughput, ours (head-only chunked scoring) against our
full-logits path and lm-evaluation-harness on the same texts."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable

from ..common import TEXT, Bench, flops_per_token, load, sync


def bench_eval(b: Bench, s: dict, peak: float, log) -> dict:
    """bpb tokens/s: ours (head-only chunked scoring), ours forced to full logits, lm-eval; interleaved."""
    from nr_lightning.evaluation import bits_per_byte_detail

    model, tok = load(b)
    model.eval()
    src = TEXT / "pubmed_en_dev.jsonl"
    with open(src, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][: b.eval_docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)

    def ours(head_only: bool | None):
        def run():
            with b.autocast:
                d = bits_per_byte_detail(model, tok, texts, max_length=b.eval_length, batch_size=b.eval_batch,
                                         head_only=head_only)
            return d.bits_per_byte, d.tokens
        return run

    impls: dict[str, Callable[[], tuple[float, int]]] = {"ours": ours(None), "ours_full_logits": ours(False)}
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=b.eval_batch, max_length=b.eval_length,
                  device=b.device, dtype="bfloat16" if b.dtype == "bf16" else "float32")

        def theirs():
            reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
            lls = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
            return -sum(lls) / (math.log(2) * n_bytes), None

        impls["lm_eval"] = theirs
    except ImportError:
        log("  lm_eval not installed (pip install -e .[dev]): comparing our two paths only")
    times: dict[str, list[float]] = {k: [] for k in impls}
    bpb: dict[str, float] = {}
    n_tokens = 0
    names = list(impls)
    for r in range(b.eval_rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(b)
            t0 = time.perf_counter()
            value, ntok = impls[name]()
            sync(b)
            times[name].append(time.perf_counter() - t0)
            bpb[name] = value
            n_tokens = ntok or n_tokens
            log(f"  eval round {r + 1} {name}: {times[name][-1]:.2f} s, bpb {value:.6f}")
    fpt = flops_per_token(s, 0, b.eval_length, "eval")
    limit = peak * 1e9 / fpt
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = {"median_s": round(med, 3), "tok_s": round(n_tokens / med, 1), "bpb": bpb[name],
                      "fraction_of_limit": round(n_tokens / med / limit, 3)}
    out = {"docs": len(texts), "tokens": n_tokens, "bytes": n_bytes, "max_length": b.eval_length,
           "batch_size": b.eval_batch, "rows": rows, "limit_tok_s": round(limit, 1),
           "gflop_per_token": round(fpt / 1e9, 4)}
    if "lm_eval" in rows:
        out["ours/lm_eval"] = round(rows["ours"]["tok_s"] / rows["lm_eval"]["tok_s"], 3)
        out["bpb_abs_diff"] = abs(bpb["ours"] - bpb["lm_eval"])
    out["ours/ours_full_logits"] = round(rows["ours"]["tok_s"] / rows["ours_full_logits"]["tok_s"], 3)
    return out

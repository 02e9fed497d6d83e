"""Bits-per-byte throughput: nr_lightning.evaluation vs lm-evaluation-harness, same process, interleaved.

Both run on the same model object, texts, window (max_length) and batch size; rounds alternate which
one goes first so that machine noise hits both alike. Prints tokens/s per run, the medians and the
ratio ours/lm-eval (> 1 = we are faster), and checks that the two bpb values agree to 1e-4.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bpb_vs_lm_eval.py --docs 30 --max-length 512 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from nr_lightning.evaluation.fixtures import fixture_path

PUBMED = fixture_path("text/pubmed_en_dev.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2-135m", help="nr_lightning.backbone preset or HF directory")
    ap.add_argument("--texts", default=str(PUBMED), help="JSONL with a 'text' field")
    ap.add_argument("--docs", type=int, default=30)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="timed runs per implementation (interleaved)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from nr_lightning.backbone import load_backbone
    from nr_lightning.evaluation import bits_per_byte_detail

    model, tok = load_backbone(args.backbone)
    model.eval()
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][: args.docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, max_length=args.max_length)

    def ours() -> tuple[float, int]:
        d = bits_per_byte_detail(model, tok, texts, max_length=args.max_length, batch_size=args.batch_size)
        return d.bits_per_byte, d.tokens

    def theirs() -> tuple[float, int]:
        reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
        lls = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
        return -sum(lls) / (math.log(2) * n_bytes), -1

    times: dict[str, list[float]] = {"nr_lightning": [], "lm_eval": []}
    bpb: dict[str, float] = {}
    n_tokens = 0
    for r in range(args.rounds):
        order = [("nr_lightning", ours), ("lm_eval", theirs)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            t0 = time.perf_counter()
            value, ntok = fn()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            bpb[name] = value
            n_tokens = max(n_tokens, ntok)
            print(f"round {r} {name:12s} {dt:7.2f} s  {n_tokens / dt:8.1f} tok/s  bpb {value:.6f}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"setup: {args.backbone}, {len(texts)} docs, {n_tokens} tokens, {n_bytes} bytes, max_length {args.max_length}, "
          f"batch {args.batch_size}, {args.rounds} interleaved rounds")
    for k in med:
        print(f"median {k:12s} {med[k]:7.2f} s  {n_tokens / med[k]:8.1f} tok/s")
    print(f"speed ratio nr_lightning / lm_eval = {med['lm_eval'] / med['nr_lightning']:.2f}x "
          f"(per-round: {', '.join(f'{b / a:.2f}' for a, b in zip(times['nr_lightning'], times['lm_eval']))})")
    diff = abs(bpb["nr_lightning"] - bpb["lm_eval"])
    print(f"bpb nr_lightning {bpb['nr_lightning']:.6f}  lm_eval {bpb['lm_eval']:.6f}  |diff| {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("bpb values disagree by more than 1e-4")


if __name__ == "__main__":
    main()

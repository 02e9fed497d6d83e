"""Multiple choice: KV-cached shared prompt vs batching every (prompt + choice), same process, interleaved.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mc_prefix_cache.py --task mmlu_en --items 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--task", default="mmlu_en")
    ap.add_argument("--items", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from nr_lightning.backbone import load_backbone
    from nr_lightning.evaluation import load_task
    from nr_lightning.evaluation.multiple_choice import encode_pair
    from nr_lightning.evaluation.scoring import score_requests, score_shared_prefix
    from nr_lightning.evaluation.tasks import build_context

    model, tok = load_backbone(args.backbone)
    task = load_task(args.task, limit=args.items)
    groups = []
    for i, item in enumerate(task.items):
        ctx = build_context(task, i, task.spec.shots)
        pairs = [encode_pair(tok, ctx, " " + c) for c in item["choices"]]
        groups.append((pairs[0][0], [cont for _, cont in pairs]))

    def batched() -> list[float]:
        reqs = [(ctx + c, len(c)) for ctx, conts in groups for c in conts]
        return [s.logprob for s in score_requests(model, reqs, batch_size=8)]

    def cached() -> list[float]:
        return [s.logprob for ctx, conts in groups for s in score_shared_prefix(model, ctx, conts)]

    diff = max(abs(a - b) for a, b in zip(batched(), cached()))
    times: dict[str, list[float]] = {"batched": [], "kv_cache": []}
    for r in range(args.rounds):
        order = [("batched", batched), ("kv_cache", cached)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r} {name:9s} {times[name][-1]:6.2f} s", flush=True)
    print(f"{args.task}: {len(groups)} items, prompt tokens {[len(g[0]) for g in groups]}, max |logprob diff| {diff:.1e}")
    b, k = statistics.median(times["batched"]), statistics.median(times["kv_cache"])
    print(f"median batched {b:.2f} s, kv_cache {k:.2f} s, speed-up {b / k:.2f}x")


if __name__ == "__main__":
    main()

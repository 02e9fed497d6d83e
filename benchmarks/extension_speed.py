"""Does the extension slow the backbone down more than its FLOPs do? Neutral residues vs PEFT LoRA.

Times forward+backward+AdamW step of the default backbone (SmolLM2-135M) with `neutral` at a 20%
budget against PEFT LoRA on the FFN at the same budget (same trainable count, same FLOPs), in one
process, alternating A and B step by step (timings on a shared CPU drift by 25-40% between runs;
a paired ratio does not). Prints tokens/s of each and the ratio.

    python benchmarks/extension_speed.py --threads 2 --dtype bf16 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def make(method: str, budget: float, backbone: str):
    import nr_lightning as nrl
    from nr_lightning.backbone import load_backbone

    model, _ = load_backbone(backbone)
    model = nrl.extend(model, method=method, budget=budget)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    return model, opt


def step(model, opt, ids, dtype) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per method (after 2 warm-up steps each)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import nr_lightning as nrl

    a, opt_a = make("neutral", args.budget, args.backbone)
    b, opt_b = make("lora", args.budget, args.backbone)
    ra, rb = nrl.parameter_report(a), nrl.parameter_report(b)
    vocab = a.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq))
    for _ in range(2):
        step(a, opt_a, ids, args.dtype)
        step(b, opt_b, ids, args.dtype)
    ta, tb = [], []
    for i in range(args.steps):  # alternate the order so neither side always runs on a warmer cache
        if i % 2 == 0:
            ta.append(step(a, opt_a, ids, args.dtype))
            tb.append(step(b, opt_b, ids, args.dtype))
        else:
            tb.append(step(b, opt_b, ids, args.dtype))
            ta.append(step(a, opt_a, ids, args.dtype))
    tokens = args.batch * args.seq
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"backbone={args.backbone} threads={args.threads} dtype={args.dtype} batch={args.batch}x{args.seq} "
          f"steps={args.steps} (median, paired)")
    print(f"neutral  trainable={ra['trainable']:,} ({ra['budget']:.2%})  {ma:.3f} s/step  {tokens / ma:8.1f} tok/s")
    print(f"lora     trainable={rb['trainable']:,} ({rb['budget']:.2%})  {mb:.3f} s/step  {tokens / mb:8.1f} tok/s")
    print(f"ratio neutral/lora tokens/s = {mb / ma:.3f}  (>= 1: neutral at least as fast)")
    ratios = [y / x for x, y in zip(ta, tb)]
    print(f"per-pair ratio: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}")


if __name__ == "__main__":
    main()

"""`make bench`: training and evaluation speed, side by side, against PEFT, full finetuning and lm-eval.

A benchmark, not a test: it measures, it does not assert. One run, one process for the paired timings
(A and B alternate step by step, so machine noise hits both alike; on a shared 2-core CPU absolute
seconds drift 25-40% between runs, paired ratios do not), and one subprocess per peak-memory reading.

Sections (all on the real default backbone unless --backbone says otherwise):

  matmul    measured GFLOP/s of the machine at the model's GEMM shapes -> the FLOP-based limit
  train     tokens/s of one optimizer step (loss incl. local losses + backward + AdamW) for neutral
            residues, vanilla adapters, our LoRA-on-FFN, a plain PEFT LoRA loop (the reference a user
            would write by hand) and full finetuning, same batch/precision/threads; FLOPs per trained
            token of each and its fraction of the limit; key ratios repeated
  memory    peak memory of each of those steps (RSS on CPU, max allocated on GPU), one subprocess each
  compile   neutral eager vs torch.compile (compile time reported separately)
  ckpt      neutral with vs without activation checkpointing
  data      the DataModule alone (tokens/s) against the training step
  eval      bits-per-byte throughput: ours (head-only chunked scoring) vs our full-logits path vs
            lm-evaluation-harness, same texts; fraction of the eval FLOP limit
  seqlen    neutral step tokens/s and peak memory at 256, 1024, 4096 context

    make bench                                           # CPU: ~20 min on 2 cores, fp32
    python benchmarks/suite.py --device cuda             # the same on a GPU (bf16 autocast)
    python benchmarks/suite.py --quick                   # tiny random model, seconds (the test suite runs it)
    python benchmarks/suite.py --only train,eval --steps 12

Writes bench/results.json (every measurement, the machine, the command) and bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # `python benchmarks/suite.py` (make bench): `benchmarks` imports from the repository
    _root = str(Path(__file__).resolve().parents[1])
    if _root not in sys.path:
        sys.path.insert(0, _root)

from benchmarks.common import REPO, Bench, load, machine, shapes  # noqa: E402
from benchmarks.results import nested, targets, write  # noqa: E402
from benchmarks.sections import data, evaluation, matmul, training  # noqa: E402

SECTIONS = ("matmul", "train", "memory", "compile", "ckpt", "data", "eval", "seqlen")  # run in this order


# ------------------------------------------------------------------------------------------------ main


def parse(argv: list[str] | None = None) -> tuple[Bench, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="preset (smollm2-135m, tiny) or a local HF directory")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: fp32 on CPU, bf16 on GPU")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median) per configuration")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="repeats of the key training ratios")
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--out", default=str(REPO / "bench"), help="directory for results.json / results.md")
    ap.add_argument("--quick", action="store_true", help="tiny random model, 2 steps: checks the script, measures nothing")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = a.dtype if a.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    b = Bench(backbone=a.backbone or ("tiny" if a.quick else "smollm2-135m"), device=device, dtype=dtype,
              threads=a.threads, batch=a.batch, seq=a.seq, steps=a.steps, warmup=a.warmup, repeats=a.repeats,
              budget=a.budget, quick=a.quick)
    if a.quick:
        b.steps, b.warmup, b.repeats, b.eval_docs, b.eval_rounds = 2, 1, 2, 3, 1
        b.seqlens, b.seqlen_tokens = [64, 128], 256
    return b, a


def main(argv: list[str] | None = None) -> dict:
    b, a = parse(argv)
    torch.set_num_threads(b.threads)
    torch.manual_seed(0)
    if a.worker:
        print(json.dumps(training.worker_train(b, a.worker)))
        return {}
    bad = [x for x in (a.only + "," + a.skip).split(",") if x and x not in SECTIONS]
    if bad:
        raise SystemExit(f"unknown section(s) {bad}; valid: {', '.join(SECTIONS)}")
    run = [x for x in SECTIONS if (not a.only or x in a.only.split(",")) and x not in a.skip.split(",")]
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    model, _ = load(b)
    s = shapes(model)
    del model
    r: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(b),
                         "settings": b.__dict__ | {"sections": run}, "shapes": s,
                         "command": " ".join([Path(sys.argv[0]).name if argv is None else "suite.py", *(sys.argv[1:] if argv is None else argv)])}
    log(f"machine: {r['machine']}; sections: {', '.join(run)}")
    mm = matmul.bench_matmul(b, s)
    r["matmul"] = mm
    peak = mm["effective_gflops"]
    log(f"matmul: {mm}")
    if "train" in run:
        r["train"] = training.bench_train(b, s, peak, log)
    if "memory" in run:
        r["memory"] = training.bench_memory(b, log)
    if "compile" in run:
        r["compile"] = training.bench_variant(b, s, peak, log, "compile")
    if "ckpt" in run:
        r["ckpt"] = training.bench_variant(b, s, peak, log, "ckpt")
    if "data" in run:
        train_tok_s = nested(r, "train", "methods", "neutral", "tok_s")
        r["data"] = data.bench_data(b, train_tok_s, log)
    if "eval" in run:
        r["eval"] = evaluation.bench_eval(b, s, peak, log)
    if "seqlen" in run:
        r["seqlen"] = training.bench_seqlen(b, s, peak, log)
    r["targets"] = targets(r)
    r["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(a.out)
    md = write(r, out)
    print(md)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return r


if __name__ == "__main__":
    main()

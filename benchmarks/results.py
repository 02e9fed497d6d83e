"""The results of a suite run: the performance targets (docs/performance.md, "Targets") checked against
the measurements, and the Markdown report written next to results.json.
"""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = [  # (what, value getter, threshold): the targets of docs/performance.md
    ("neutral ≥ 1.0× PEFT LoRA loop tokens/s", lambda r: _min_ratio(r, "neutral/peft_loop"), 1.0),
    ("neutral ≥ 1.5× full finetuning tokens/s", lambda r: _min_ratio(r, "neutral/finetune"), 1.5),
    ("neutral peak memory ≤ PEFT LoRA loop", lambda r: _mem_ratio(r), None),
    ("compiled training step ≥ 85% of the FLOP limit", lambda r: nested(r, "compile", "rows", "neutral_compiled",
                                                                          "fraction_of_limit"), 0.85),
    ("bpb evaluation ≥ 80% of its FLOP limit", lambda r: nested(r, "eval", "rows", "ours", "fraction_of_limit"), 0.80),
    ("bpb evaluation ≥ 1.3× lm-evaluation-harness", lambda r: nested(r, "eval", "ours/lm_eval"), 1.3),
    ("data loader ≥ 10× one H100 training a 1B model at 40% MFU", lambda r: nested(r, "data", "throughput_1b",
                                                                                 "loader_over_h100"), 10.0),
    ("data resume: first batch ≤ 2× the time at 0, up to 1B tokens", lambda r: _inv(nested(r, "data", "resume",
                                                                                          "worst_over_start")), 0.5),
    ("data reads ≤ 1.1× the tokens trained (all readers)", lambda r: _inv(_max_read(r)), 1 / 1.1),
]


def _inv(x):
    return None if x is None else 1.0 / max(x, 1e-12)


def _max_read(r: dict):
    reads = nested(r, "data", "reads")
    return max(v["read_over_trained"] for v in reads.values()) if reads else None


def nested(r: dict, *keys):
    """r[k1][k2]...; None where a key is missing (a section not run)."""
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def _min_ratio(r: dict, key: str):
    vals = [x[key] for x in nested(r, "train", "ratios") or [] if key in x]
    return min(vals) if vals else None


def _mem_ratio(r: dict):
    m = r.get("memory")
    if not m:
        return None
    return m["neutral"]["peak_bytes"] / m["peft_loop"]["peak_bytes"]


def targets(r: dict) -> list[dict]:
    out = []
    for what, get, threshold in TARGETS:
        v = get(r)
        if v is None:
            out.append({"target": what, "value": None, "met": None})
        elif threshold is None:  # memory: ratio <= 1 (2% tolerance for allocator noise)
            out.append({"target": what, "value": round(v, 3), "met": v <= 1.02})
        else:
            out.append({"target": what, "value": round(v, 3), "met": v >= threshold})
    return out


def gib(x: float) -> str:
    return f"{x / 2**30:.2f}"


def markdown(r: dict) -> str:
    b, m = r["settings"], r["machine"]
    lines = [f"# nr-lightning benchmark ({r['date']})", "",
             f"Machine: {m.get('gpu') or m.get('cpu', '?')} ({m.get('cores')} cores visible, {m['threads']} threads), "
             f"torch {m['torch']}; {b['device']} {b['dtype']}; backbone {b['backbone']}; "
             f"batch {b['batch']}×{b['seq']}; median of {b['steps']} steps after {b['warmup']} warm-up.",
             f"Command: `{r['command']}`", ""]
    if "matmul" in r:
        mm = r["matmul"]
        lines += [f"Matmul at the model's shapes ({mm['rows']} rows): " + ", ".join(f"{k} {v}" for k, v in mm["gflops"].items())
                  + f" GFLOP/s; effective (FLOP-weighted) **{mm['effective_gflops']} GFLOP/s** = the limit below.", ""]
    if "train" in r:
        t = r["train"]
        mem = r.get("memory", {})
        lines += ["| training step | trainable | tok/s (per repeat) | GFLOP/token | limit tok/s | % of limit | peak mem GiB |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in t["methods"].items():
            pm = gib(mem[name]["peak_bytes"]) if name in mem else "–"
            lines.append(f"| {row['label']} | {row['trainable'] / 1e6:.2f} M | {row['tok_s']} "
                         f"({', '.join(str(x) for x in row['tok_s_per_repeat'])}) | {row['gflop_per_token']} | "
                         f"{row['limit_tok_s']} | {100 * row['fraction_of_limit']:.0f}% | {pm} |")
        lines += ["", "Paired ratios per repeat: " + "; ".join(", ".join(f"{k} {v}" for k, v in x.items())
                                                             for x in t["ratios"]), ""]
    for key, title in (("compile", "torch.compile"), ("ckpt", "activation checkpointing")):
        if key in r:
            v = r[key]
            rows = ", ".join(f"{n} {x['tok_s']} tok/s ({100 * x['fraction_of_limit']:.0f}% of limit)" for n, x in v["rows"].items())
            extra = f"; compile + first step {v['compile_plus_first_step_s']} s" if "compile_plus_first_step_s" in v else ""
            lines += [f"{title}: {rows}; ratio {v['ratio']}{extra}.", ""]
    if "data" in r:
        d = r["data"]
        lines += [f"DataModule alone: {d['tok_s']:,} tok/s" + (f" = {d['times_training_step']}× the neutral training step." if
                                                                "times_training_step" in d else "."), ""]
        if "resume" in d:
            p, t = d["prepare"], d["throughput_1b"]
            lines += [f"Tokenising the sources once: {p['seconds']} s for {p['source_bytes'] / 1e6:.1f} MB = {p['s_per_gb']} s/GB. "
                      f"Loader at {t['seq_len']} tokens/sequence: {t['loader_tok_s']:,} tok/s per rank = {t['loader_over_h100']}× "
                      f"what one H100 trains a 1B model on at 40% MFU ({t['h100_1b_40mfu_tok_s']:,} tok/s).", "",
                      "| resume at (tokens) | first batch s | without positions in the checkpoint | tokens read |",
                      "|---|---|---|---|"]
            lines += [f"| {k} | {v['first_batch_s']} | {v['first_batch_s_counting']} | {v['tokens_read']} |"
                      for k, v in d["resume"].items() if isinstance(v, dict)]
            side = d.get("resume_real_corpora")
            if side:
                lines += ["", "Resume on the default corpora, token shards against the previous path (tokenise on the fly, "
                          "skip by reading, epoch cache off):", "",
                          "| resume at (tokens) | shards: first batch s | previous path: first batch s |", "|---|---|---|"]
                lines += [f"| {int(k):,} | {v['first_batch_s']} | {side['previous'].get(k, {}).get('first_batch_s', '–')} |"
                          for k, v in side["shards"].items()]
            lines += ["", "| ranks W (x 4 workers) | tokens read / trained | busiest rank's read x W / trained |",
                      "|---|---|---|"]
            lines += [f"| {w} | {v['read_over_trained']} | {v['max_rank_read_times_W_over_stream']} |"
                      for w, v in d["reads"].items()]
            lines.append("")
    if "eval" in r:
        e = r["eval"]
        lines += [f"| bpb evaluation ({e['docs']} docs, {e['tokens']} tokens, window {e['max_length']}, batch {e['batch_size']}) "
                  "| tok/s | % of limit | bpb |", "|---|---|---|---|"]
        for name, row in e["rows"].items():
            lines.append(f"| {name} | {row['tok_s']} | {100 * row['fraction_of_limit']:.0f}% | {row['bpb']:.6f} |")
        lines += ["", f"Eval limit {e['limit_tok_s']} tok/s ({e['gflop_per_token']} GFLOP/token); ours/lm-eval "
                  f"{e.get('ours/lm_eval', '–')}; head-only/full-logits {e['ours/ours_full_logits']}.", ""]
    if "seqlen" in r:
        lines += ["| context | batch | neutral tok/s | GFLOP/token | % of limit | peak mem GiB |", "|---|---|---|---|---|---|"]
        for T, row in r["seqlen"].items():
            lines.append(f"| {T} | {row['batch']} | {row['tok_s']} | {row['gflop_per_token']} | "
                         f"{100 * row['fraction_of_limit']:.0f}% | {gib(row['peak_bytes'])} |")
        lines.append("")
    lines += ["| target | value | met |", "|---|---|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '–'} | "
                     f"{'yes' if t['met'] else ('–' if t['met'] is None else 'no')} |")
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path) -> str:
    """results.json (every measurement) and results.md (the report) into ``out``; returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(r, indent=1))
    md = markdown(r)
    (out / "results.md").write_text(md)
    return md

"""Per-run stats: merges datatrove's per-task stats of each stage into ``<output>/stats.json``.

It reads the per-rank files (``_logs/<stage>/stats/<rank>.json``), so a resumed run still counts the
tasks finished earlier. ``python -m data_prep.stats <output>`` re-summarises a run (e.g. after SLURM).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STAGES = ("1_extract", "2_dedup", "3_filter")
_SKIP = {"doc_len", "doc_len_tokens"}


def _total(v: Any) -> int:
    if isinstance(v, dict):
        return int(v.get("total", 0))
    return int(getattr(v, "total", v))


def _load_stage(logdir: Path) -> list[dict[str, Any]]:
    from datatrove.utils.stats import PipelineStats

    merged = None
    for f in sorted((logdir / "stats").glob("*.json")):
        ps = PipelineStats.from_json(json.loads(f.read_text(encoding="utf-8")))
        merged = ps if merged is None else merged + ps
    if merged is None:
        return []
    steps = []
    for st in merged.stats:
        counters = {k: _total(v) for k, v in st.stats.items() if k not in _SKIP}
        steps.append({"step": st.name.split(": ", 1)[-1], "counters": counters,
                      "cpu_s": round(float(st.time_stats.total), 3)})
    return steps


def summarize(output: str | Path, wall_s: float | None = None, stage_wall_s: dict[str, float] | None = None,
              workers: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Build, write and print the run summary: docs in/out per step, bytes, paragraphs, throughput."""
    out = Path(output)
    stages = {s: _load_stage(out / "_logs" / s) for s in STAGES}
    flat = [st for s in STAGES for st in stages[s]]

    def counter(step_prefix: str, key: str) -> int:
        return sum(st["counters"].get(key, 0) for st in flat if st["step"].startswith(step_prefix))

    steps_table = []
    for st in flat:
        c = st["counters"]
        docs_in = c.get("records", c.get("total", c.get("forwarded", 0) + c.get("dropped", 0)))
        steps_table.append({"step": st["step"], "docs_in": docs_in, "docs_out": c.get("forwarded", docs_in),
                            **{k: v for k, v in c.items() if k not in ("total", "forwarded")},
                            "cpu_s": st["cpu_s"]})
    input_bytes = counter("📦", "input_bytes")
    records = counter("📦", "records")
    docs_out = counter("📏", "docs_out")
    summary: dict[str, Any] = {
        "output": str(out),
        "input": {"files": counter("📦", "input_files"), "bytes": input_bytes, "records": records},
        "steps": steps_table,
        "bad_input": {k: counter("", k) for k in ("corrupt_record", "truncated_record", "empty_page", "non_html",
                                                   "bad_json", "too_large", "decode_error", "no_paragraphs",
                                                   "timeout", "extract_error", "non_utf8")},
        "paragraphs": {"extracted": counter("⛏", "paragraphs"),
                       "duplicates_found": counter("💥 paragraph dedup 2/3", "duplicate_paragraphs"),
                       "removed": counter("💥 paragraph dedup 3/3", "paragraphs_removed"),
                       "docs_emptied_by_dedup": counter("💥 paragraph dedup 3/3", "emptied"),
                       "out": counter("📏", "paragraphs_out")},
        "output_docs": docs_out,
        "output_text_bytes": counter("📏", "text_bytes_out"),
    }
    if wall_s:
        summary["wall_s"] = round(wall_s, 3)
        summary["stage_wall_s"] = {k: round(v, 3) for k, v in (stage_wall_s or {}).items()}
        summary["workers"] = workers
        summary["throughput"] = {"records_per_s": round(records / wall_s, 1),
                                 "input_MB_per_s": round(input_bytes / 1e6 / wall_s, 3)}
    (out / "stats.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    if not quiet:
        print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"data_prep run: {s['output']}",
             f"  input: {s['input']['files']} files, {s['input']['bytes'] / 1e6:.2f} MB, {s['input']['records']} records",
             f"  {'step':42s} {'docs in':>8s} {'docs out':>8s}"]
    for st in s["steps"]:
        if not st["docs_in"] or "Jsonl" in st["step"] or "Parquet" in st["step"]:
            continue  # writers, counters and the bucket-level dedup step are in stats.json
        lines.append(f"  {st['step']:42s} {st['docs_in']:8d} {st['docs_out']:8d}")
    bad = {k: v for k, v in s["bad_input"].items() if v}
    lines.append(f"  skipped input: {bad or 'none'}")
    p = s["paragraphs"]
    lines.append(f"  paragraphs: {p['extracted']} extracted, {p['removed']} duplicates removed "
                 f"({p['docs_emptied_by_dedup']} docs emptied), {p['out']} in output")
    lines.append(f"  output: {s['output_docs']} docs, {s['output_text_bytes'] / 1e6:.2f} MB text")
    if "wall_s" in s:
        t = s["throughput"]
        lines.append(f"  wall {s['wall_s']:.1f} s on {s['workers']} worker(s): {t['records_per_s']} records/s, "
                     f"{t['input_MB_per_s']} MB/s input")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m data_prep.stats <output dir>")
    summarize(sys.argv[1])


if __name__ == "__main__":
    main()

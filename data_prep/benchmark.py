"""``python -m data_prep.benchmark [lang=de pages=110]``: docs/s and MB/s per core, and ours vs datatrove's example.

1. The full pipeline (``tasks=1 workers=1``, so one core) on a WARC of real pages (trafilatura 0.9.3 sdist).
2. Extraction + language ID alone, single process: ours (FastWARC → Resiliparse → fastText LID) against
   datatrove's own example pipeline (WarcReader → Trafilatura → LanguageFilter) on the same WARC and
   the same lid.176 model; prints the speed ratio. Needs ``trafilatura`` (datatrove[processing]) for part 2.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from data_prep import cache_dir

os.environ.setdefault("HF_HOME", str(cache_dir() / "bench" / "hf"))  # datatrove copies models here
os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class BenchConfig:
    lang: str = "de"
    pages: int = 110  # how many of the 110 real pages go into the WARC


def _consume(steps: list) -> int:
    data = None
    for s in steps:
        data = s(data) if data is not None else s()
    return sum(1 for _ in data)


def main(argv: list[str] | None = None) -> None:
    from data_prep.config import PrepConfig, parse_cli
    from data_prep.models import ensure_html_pages, ensure_lid_model
    from data_prep.pipeline import run
    from data_prep.steps import CCReader, HtmlToText, LanguageID
    from data_prep.warc import write_warc

    cfg = parse_cli(BenchConfig, sys.argv[1:] if argv is None else argv)
    lid = ensure_lid_model()
    pages = ensure_html_pages()
    names = sorted(p.name for p in pages.glob("*.html"))[: cfg.pages]
    bench = cache_dir() / "bench"
    warc = write_warc(bench / "warc" / "bench.warc.gz",
                      [(f"https://{n}/", (pages / n).read_bytes(), "text/html") for n in names])
    html_mb = sum((pages / n).stat().st_size for n in names) / 1e6
    print(f"WARC: {warc} — {len(names)} real pages, {html_mb:.1f} MB HTML, {warc.stat().st_size / 1e6:.1f} MB gz")

    t = time.perf_counter()
    stats = run(parse_cli(PrepConfig, [f"input={warc}", f"lang={cfg.lang}", f"output={bench / 'out'}",
                                       "quality.model=none", "tasks=1", "workers=1", "overwrite=true",
                                       "progress=false"]))
    wall = time.perf_counter() - t
    assert stats is not None
    print(f"\nfull pipeline, 1 core: {len(names) / wall:.1f} docs/s, {html_mb / wall:.2f} MB/s of HTML "
          f"({wall:.2f} s wall incl. 3 executor start-ups; {stats['output_docs']} docs out)")

    t = time.perf_counter()
    n_ours = _consume([CCReader([str(warc)]), HtmlToText(), LanguageID(str(lid), cfg.lang)])
    ours = time.perf_counter() - t
    print(f"extract+LID ours (FastWARC+Resiliparse+fastText): {len(names) / ours:.1f} docs/s, "
          f"{html_mb / ours:.2f} MB/s ({ours:.2f} s, {n_ours} kept)")
    try:
        import trafilatura  # noqa: F401
    except ImportError:
        print("datatrove example pipeline skipped: `trafilatura` not installed (pip install trafilatura==1.11.0)")
        return
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.readers import WarcReader

    lf = LanguageFilter(languages=[cfg.lang])
    lf.model.MODEL_URL = str(lid)  # hard-coded URL in datatrove 0.10.1; a local path works
    t = time.perf_counter()
    n_dt = _consume([WarcReader(str(warc.parent), glob_pattern="*.warc.gz"),
                     Trafilatura(favour_precision=True, timeout=5.0), lf])
    dt = time.perf_counter() - t
    print(f"extract+LID datatrove example (warcio+Trafilatura+LanguageFilter): {len(names) / dt:.1f} docs/s, "
          f"{html_mb / dt:.2f} MB/s ({dt:.2f} s, {n_dt} kept)")
    print(f"ratio ours/datatrove: {dt / ours:.1f}x faster")


if __name__ == "__main__":
    main()

"""``python -m data_prep.demo [lang=de tasks=2]`` (``make prep-demo``): the whole pipeline on a tiny real crawl.

Builds WARCs under ``.cache/demo/`` from real pages of the trafilatura==0.9.3 sdist (PyPI; never
committed): half of the pages become the "random web" negatives of the quality classifier, the other
half (plus a mirrored page and bad records) the crawl to process. Positives are ``make data``'s
``.cache/corpora/<lang>/train.jsonl``; without them the demo runs with ``quality.model=none``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from data_prep import cache_dir
from data_prep.config import PrepConfig, parse_cli


@dataclass
class DemoConfig:
    lang: str = "de"
    tasks: int = 2
    format: str = "jsonl"


def main(argv: list[str] | None = None) -> None:
    from data_prep.models import ensure_html_pages, ensure_lid_model
    from data_prep.quality import TrainConfig, train
    from data_prep.warc import build_test_warc, write_warc

    cfg = parse_cli(DemoConfig, sys.argv[1:] if argv is None else argv)
    lid = ensure_lid_model()
    pages_dir = ensure_html_pages()
    names = sorted(p.name for p in pages_dir.glob("*.html"))
    demo = cache_dir() / "demo"
    neg_names, crawl_names = names[0::2], names[1::2]
    negatives = write_warc(demo / "negatives.warc.gz",
                           [(f"https://{n}/", (pages_dir / n).read_bytes(), "text/html") for n in neg_names])
    half = len(crawl_names) // 2
    crawl = [build_test_warc(pages_dir, demo / "crawl-00000.warc.gz", names=crawl_names[:half], bad_records=False),
             build_test_warc(pages_dir, demo / "crawl-00001.warc.gz", names=crawl_names[half:])]
    print(f"demo crawl: {[str(c) for c in crawl]} ({len(crawl_names)} real pages + mirror + bad records)")
    positives = cache_dir() / "corpora" / cfg.lang / "train.jsonl"
    qmodel = "none"
    if positives.is_file():
        qmodel = str(demo / f"quality_{cfg.lang}.bin")
        r = train(TrainConfig(positives=[str(positives)], negatives=[str(negatives)], out=qmodel, lang=cfg.lang))
        h = r["heldout"]
        print(f"quality model: {qmodel} labels={r['labels']} held-out precision={h['precision']} "
              f"recall={h['recall']} (n={h['n']})")
    else:
        print(f"{positives} missing (run `make data`): running without the quality filter")
    out = demo / f"out-{cfg.lang}"
    from data_prep.pipeline import run

    run(parse_cli(PrepConfig, [f"input={','.join(map(str, crawl))}", f"lang={cfg.lang}", f"output={out}",
                               f"lid.model={lid}", f"quality.model={qmodel}", f"tasks={cfg.tasks}",
                               f"format={cfg.format}", "overwrite=true"]))
    print(f"shards: {out}  (train on them: make train ARGS=\"data.new.path={out}\")")


if __name__ == "__main__":
    main()

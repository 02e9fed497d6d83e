"""Train the fastText quality classifier (the paper's data pipeline, docs/data_prep.md): high-quality text vs random web pages.

``python -m data_prep.quality train positives=<jsonl/txt> negatives=<WARC/WET/jsonl/txt> out=model.bin``

Positives default to ``.cache/corpora/<lang>/train.jsonl`` (Wikipedia-like text from ``make data``);
negatives are random web pages, typically the raw WARC input itself, extracted with the same
Resiliparse step as the pipeline. Supervised fastText with word bigrams and ``bucket=100000`` keeps
the model small (~10 MB). The model stores its labels; a ``<out>.json`` sidecar records the label
names, the positive label, options and held-out precision/recall.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from data_prep import cache_dir
from data_prep.config import ConfigError, parse_cli


@dataclass
class TrainConfig:
    positives: list[str] = field(default_factory=list)  # default: .cache/corpora/<lang>/train.jsonl
    negatives: list[str] = MISSING
    out: str = MISSING
    lang: str = "fr"  # only picks the default positives
    label: str = "hq"
    neg_label: str = "cc"
    holdout: float = 0.1
    balance: bool = True  # downsample the larger class
    max_docs: int = 50000  # per class, before the hold-out split
    min_words: int = 5
    chunk_words: int = 100  # split documents into ~N-word training examples (0 = whole documents)
    epoch: int = 10
    lr: float = 0.1
    dim: int = 16
    word_ngrams: int = 2
    bucket: int = 100000
    seed: int = 0


def load_texts(paths: list[str]) -> list[str]:
    """Documents from jsonl(.gz) (``text`` field), txt (one document per line) or WARC/WET (extracted)."""
    import glob

    from data_prep.steps import CCReader, HtmlToText, input_format

    files: list[str] = []
    for pat in paths:
        hits = sorted(h for h in glob.glob(pat) if Path(h).is_file())
        if not hits:
            raise ConfigError(f"{pat!r} matches no file")
        files += hits
    texts: list[str] = []
    warcs = []
    for f in files:
        if f.endswith((".txt", ".txt.gz")):
            opener: Any = gzip.open if f.endswith(".gz") else open
            with opener(f, "rt", encoding="utf-8", errors="replace") as fh:
                texts += [t for t in (line.strip() for line in fh) if t]
        else:
            try:
                kind = input_format(f)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if kind == "warc":
                warcs.append(f)
            else:
                docs = CCReader([f])()
                texts += [d.text for d in HtmlToText(sandbox=False)(docs)]
    if warcs:
        texts += [d.text for d in HtmlToText(sandbox=False)(CCReader(warcs)())]
    return texts


def _chunks(texts: list[str], n: int, min_words: int) -> list[str]:
    """~n-word examples: a few long web pages and many short articles give comparable training sets."""
    out = []
    for t in texts:
        words = t.split()
        step = n if n > 0 else max(1, len(words))
        out += [" ".join(words[i : i + step]) for i in range(0, len(words), step)
                if len(words[i : i + step]) >= min_words]
    return out


def _prepare(cfg: TrainConfig, rng: random.Random) -> tuple[list[str], list[str], int, int]:
    pos = _chunks(load_texts(cfg.positives), cfg.chunk_words, cfg.min_words)
    neg = _chunks(load_texts(cfg.negatives), cfg.chunk_words, cfg.min_words)
    if not pos or not neg:
        raise ConfigError(f"need both classes: {len(pos)} positive, {len(neg)} negative documents")
    rng.shuffle(pos)
    rng.shuffle(neg)
    n = min(len(pos), len(neg)) if cfg.balance else None
    pos, neg = pos[: min(n or len(pos), cfg.max_docs)], neg[: min(n or len(neg), cfg.max_docs)]
    data = [(cfg.label, t) for t in pos] + [(cfg.neg_label, t) for t in neg]
    rng.shuffle(data)
    n_test = max(1, int(len(data) * cfg.holdout)) if cfg.holdout > 0 else 0
    fmt = [f"__label__{lab} {t}" for lab, t in data]
    return fmt[n_test:], fmt[:n_test], len(pos), len(neg)


def precision_recall(model: Any, lines: list[str], label: str, threshold: float = 0.5) -> dict[str, float]:
    """Held-out precision/recall/accuracy of ``label`` at ``threshold`` on ``__label__x text`` lines."""
    tp = fp = fn = tn = 0
    for line in lines:
        gold, text = line.split(" ", 1)
        labels, scores = model.predict(text, k=-1)
        p = bool(dict(zip(labels, scores)).get(f"__label__{label}", 0.0) >= threshold)
        g = gold == f"__label__{label}"
        tp += p and g
        fp += p and not g
        fn += (not p) and g
        tn += (not p) and (not g)
    n = max(1, tp + fp + fn + tn)
    return {"precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
            "accuracy": round((tp + tn) / n, 4), "n": tp + fp + fn + tn}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate on the hold-out split, save model + sidecar; returns the report."""
    if not cfg.positives:
        default = cache_dir() / "corpora" / cfg.lang / "train.jsonl"
        if not default.is_file():
            raise ConfigError(f"no positives given and {default} is missing (run `make data`, or pass positives=...)")
        cfg.positives = [str(default)]
    rng = random.Random(cfg.seed)
    train_lines, test_lines, n_pos, n_neg = _prepare(cfg, rng)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as tf:
        tf.write("\n".join(train_lines) + "\n")
    try:
        params = {"input": tf.name, "epoch": cfg.epoch, "lr": cfg.lr, "dim": cfg.dim, "wordNgrams": cfg.word_ngrams,
                  "bucket": cfg.bucket, "thread": 1, "seed": cfg.seed, "verbose": 0}
        # a fresh interpreter: inside long-lived processes (pytest after datatrove pools) fastText's
        # training intermittently hit "Encountered NaN"; a clean process never did
        code = ("import fasttext, json, sys; p = json.loads(sys.argv[1]); "
                "fasttext.train_supervised(**p).save_model(sys.argv[2])")
        res = subprocess.run([sys.executable, "-c", code, json.dumps(params), str(out)], capture_output=True,
                             text=True)
        if res.returncode != 0:
            raise RuntimeError(f"fastText training failed: {res.stderr[-2000:]}")
    finally:
        Path(tf.name).unlink()
    from fasttext.FastText import _FastText

    model = _FastText(str(out))
    report = {"model": str(out), "labels": [x.removeprefix("__label__") for x in model.labels],
              "positive_label": cfg.label, "docs": {"positive": n_pos, "negative": n_neg},
              "train_lines": len(train_lines), "heldout": precision_recall(model, test_lines, cfg.label) if test_lines else {},
              "options": {k: v for k, v in asdict(cfg).items() if k not in ("out",)},
              "size_bytes": out.stat().st_size}
    Path(str(out) + ".json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "train":
        raise SystemExit("usage: python -m data_prep.quality train positives=... negatives=... out=model.bin "
                         "[lang=fr epoch=10 bucket=100000 ...]")
    cfg = parse_cli(TrainConfig, argv[1:], list_keys=("positives", "negatives"))
    r = train(cfg)
    h = r["heldout"]
    print(f"quality model {r['model']} ({r['size_bytes'] / 1e6:.1f} MB), labels {r['labels']}; "
          f"{r['docs']['positive']} positive / {r['docs']['negative']} negative docs; held-out "
          f"precision {h.get('precision')} recall {h.get('recall')} accuracy {h.get('accuracy')} (n={h.get('n')})")


if __name__ == "__main__":
    main()

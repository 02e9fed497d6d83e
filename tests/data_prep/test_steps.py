"""Each data_prep step alone, on handcrafted documents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document

from data_prep.steps import (
    CCReader,
    HtmlToText,
    LanguageID,
    ParagraphDedupFilter,
    ParagraphFindDuplicates,
    ParagraphSignature,
    QualityFilter,
    doc_key,
)
from data_prep.warc import LATIN1_FR, write_warc, write_wet

ARTICLE = """<html><head><title>Le Rhône</title><script>track()</script></head><body>
<nav><ul><li><a href="/">Accueil</a></li><li><a href="/a">Actualités</a></li><li><a href="/c">Contact</a></li></ul></nav>
<div class="cookie-banner">Nous utilisons des cookies. <button>Accepter</button></div>
<main><article><h1>Le Rhône, un fleuve européen</h1>
<p>Le Rhône est un fleuve d'Europe qui prend sa source dans le glacier du Rhône, en Suisse, et se jette dans
la mer Méditerranée après un parcours de plus de huit cents kilomètres à travers la France.</p>
<p>Il traverse le lac Léman puis la ville de Lyon, où il reçoit la Saône, avant de rejoindre la Camargue.
Son débit en fait le fleuve le plus puissant de France, et il alimente de nombreuses centrales.</p>
</article></main>
<footer><p>© 2024 Mon Site — Mentions légales — Plan du site</p></footer></body></html>"""


def _docs(texts: list[str], fmt: str = "text") -> list[Document]:
    return [Document(text=t, id=str(i), metadata={"doc_key": doc_key(0, i), "format": fmt, "url": f"u{i}"})
            for i, t in enumerate(texts)]


def test_extract_removes_boilerplate() -> None:
    step = HtmlToText(sandbox=False)
    out = list(step(_docs([ARTICLE, "<html><body><script>x()</script></body></html>"], fmt="html")))
    assert len(out) == 1
    text = out[0].text
    assert "Le Rhône est un fleuve d'Europe" in text and "rejoindre la Camargue" in text
    for junk in ("Accueil", "cookies", "Mentions légales", "track()"):
        assert junk not in text
    assert all(line == line.strip() and line for line in text.split("\n"))  # one paragraph per line
    assert step.stats["no_paragraphs"].total == 1


def test_reader_skips_and_counts_bad_records(tmp_path: Path) -> None:
    good = ARTICLE.encode()
    warc = write_warc(tmp_path / "a.warc.gz", [
        ("https://a.fr/", good, "text/html; charset=utf-8"),
        ("https://latin1.fr/", LATIN1_FR, "text/html"),
        ("https://empty.fr/", b"", "text/html"),
        ("https://x.fr/a.pdf", b"%PDF-1.4", "application/pdf"),
        ("https://b.fr/", good.replace(b"Rh\xc3\xb4ne", b"Rhin"), "text/html"),
    ])
    data = warc.read_bytes()
    second = data.find(b"\x1f\x8b\x08", 10)
    # a corrupt gzip member between record 1 and 2, and a truncated record at the end
    corrupt = tmp_path / "corrupt.warc.gz"
    corrupt.write_bytes(data[:second] + b"\x1f\x8b\x08\x00garbage-garbage-garbage" + data[second:] + data[:200])
    reader = CCReader([str(corrupt)])
    docs = list(reader())
    urls = [d.metadata["url"] for d in docs]
    assert urls == ["https://a.fr/", "https://latin1.fr/", "https://b.fr/"]
    assert "Un été à la campagne" in docs[1].text  # latin-1 without charset, decoded
    c = {k: v.total for k, v in reader.stats.stats.items()}
    assert c["corrupt_record"] >= 1 and c["empty_page"] >= 1 and c["non_html"] == 1 and c["non_utf8"] == 1
    assert c["corrupt_record"] + c.get("truncated_record", 0) + c["empty_page"] >= 3


def test_reader_wet_and_jsonl(tmp_path: Path, helpers) -> None:
    wet = write_wet(tmp_path / "a.wet.gz", [("https://w/", "Ligne un.\n\nLigne  deux.")])
    js = helpers.jsonl(tmp_path / "b.jsonl.gz", [{"text": "Bonjour", "url": "https://j/"}, {"html": ARTICLE}])
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\nnot json\n{"text": ""}\n')
    reader = CCReader([str(wet), str(js), str(tmp_path / "c.jsonl")])
    docs = list(HtmlToText(sandbox=False)(reader()))
    assert [d.text.split("\n")[0] for d in docs] == ["Ligne un.", "Bonjour", "Le Rhône, un fleuve européen", "ok"]
    assert docs[0].text == "Ligne un.\nLigne deux."
    assert reader.stats["bad_json"].total == 1 and reader.stats["empty_page"].total == 1
    keys = [d.metadata["doc_key"] for d in docs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_language_id_keeps_target_with_score(lid_model: Path, helpers) -> None:
    step = LanguageID(str(lid_model), "fr", threshold=0.65)
    docs = _docs([helpers.fr[0], helpers.de, helpers.en, helpers.fr[1]])
    kept = list(step(docs))
    assert [d.id for d in kept] == ["0", "3"]
    assert all(d.metadata["lang"] == "fr" and d.metadata["lang_score"] > 0.9 for d in kept)
    assert docs[1].metadata["lang"] == "de" and docs[2].metadata["lang"] == "en"
    assert step.stats["dropped_lang_de"].total == 1 and step.stats["dropped_lang_en"].total == 1


def test_paragraph_dedup_keeps_first_copy(tmp_path: Path) -> None:
    shared = "Ce paragraphe est copié sur deux sites différents."
    texts = [f"Premier document.\n{shared}\nFin du premier.", f"Second document.\n{shared}", shared,
             "Article 7\nArticle 0\nArticle 7"]
    sig, dup = tmp_path / "sigs", tmp_path / "dups"
    docs = list(ParagraphSignature(str(sig), buckets=3)(_docs(texts)))
    for b in range(3):
        list(ParagraphFindDuplicates(str(sig), str(dup))(None, rank=b, world_size=3))
    filt = ParagraphDedupFilter(str(dup))
    out = {d.id: d.text for d in filt(docs)}
    assert out["0"] == texts[0]
    assert out["1"] == "Second document."
    assert "2" not in out  # only duplicated paragraphs: emptied and dropped
    assert out["3"] == "Article 7\nArticle 0"  # exact: digits matter, repeats inside a doc removed
    assert filt.stats["paragraphs_removed"].total == 3 and filt.stats["emptied"].total == 1


def test_quality_model_separates_toy_classes(tmp_path: Path) -> None:
    from data_prep.quality import TrainConfig, train

    rng = np.random.default_rng(0)
    good_words = "le fleuve traverse la région et la ville historique où les habitants étudient la science".split()
    bad_words = "cliquez ici promo gratuit connexion panier livraison offre cookies accepter newsletter".split()
    pos = tmp_path / "pos.txt"
    neg = tmp_path / "neg.txt"
    pos.write_text("\n".join(" ".join(rng.choice(good_words, 12)) for _ in range(200)))
    neg.write_text("\n".join(" ".join(rng.choice(bad_words, 12)) for _ in range(200)))
    rep = train(TrainConfig(positives=[str(pos)], negatives=[str(neg)], out=str(tmp_path / "q.bin"), epoch=10))
    assert rep["labels"] == sorted(["hq", "cc"]) or set(rep["labels"]) == {"hq", "cc"}
    assert rep["heldout"]["precision"] >= 0.95 and rep["heldout"]["recall"] >= 0.95
    assert (tmp_path / "q.bin.json").is_file()
    qf = QualityFilter(str(tmp_path / "q.bin"), "hq", 0.5)
    docs = _docs(["la ville historique et le fleuve", "promo gratuit cliquez ici panier"])
    kept = list(qf(docs))
    assert [d.id for d in kept] == ["0"] and docs[0].metadata["quality_score"] > 0.5 > docs[1].metadata["quality_score"]


def test_signature_files_are_compact(tmp_path: Path) -> None:
    list(ParagraphSignature(str(tmp_path), buckets=1)(_docs(["a\nb\nc"])))
    assert (tmp_path / "00000" / "00000.bin").stat().st_size == 3 * 32


@pytest.mark.parametrize("bad", [b"\x00\x01garbage", b""])
def test_reader_survives_garbage_file(tmp_path: Path, bad: bytes) -> None:
    p = tmp_path / "x.warc.gz"
    p.write_bytes(bad)
    assert list(CCReader([str(p)])()) == []

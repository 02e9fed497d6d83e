"""Build small real WARC files from HTML pages (tests and the README demo).

The pages come from a registry package (``data_prep.models.ensure_html_pages``) and are written
into WARC files under ``.cache/`` or a temp dir at run time: third-party pages are never committed.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

FR_PAGES = [
    "franceculture.fr.idees.html", "laviedesidees.fr.evaluation.html", "blog.mondediplo.net.turpitude.html",
    "psl.eu.luniversite.html", "soundofscience.fr.1927.html", "lanouvellerepublique.fr.martin.html",
    "sauvonsluniversite.com.spip.html",
]
DE_PAGES = ["bmjv.de.konsum.html", "stuttgart.de.html", "simplyscience.ch.erdoel.html", "heise.de.lithium.html"]
EN_PAGES = ["blog.python.org.html", "lemire.me.json.html", "phys.org.tool.html", "dw.com.colonial.html"]

# Handcrafted bad input, appended to the test WARC: each must be skipped and counted, never crash.
LATIN1_FR = (
    "<html><head><title>Été</title></head><body><article><h1>Un été à la campagne</h1>"
    "<p>Cette page est encodée en latin-1 et ne déclare aucun jeu de caractères : le lecteur doit "
    "la décoder quand même, car beaucoup de pages anciennes du web français sont ainsi.</p>"
    "<p>Les élèves découvrent la forêt, les rivières et les châteaux de la région pendant les vacances "
    "d'été, et écrivent chaque soir un petit récit de leur journée.</p></article></body></html>"
).encode("latin-1")
NO_PARAGRAPHS = b"<html><head><script>var a = 1;</script><style>p{}</style></head><body><script>x()</script></body></html>"


def _record(writer: WARCWriter, url: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
    rec = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
    writer.write_record(rec)


def write_warc(path: Path, pages: Iterable[tuple[str, bytes, str]]) -> Path:
    """Write (url, body, content-type) response records to a gzipped WARC (one gzip member per record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, body, ctype in pages:
            _record(writer, url, body, ctype)
    return path


def page_url(name: str) -> str:
    return "https://" + name.removesuffix(".html").replace(".html", "") + "/"


def build_test_warc(pages_dir: Path, out: Path, names: list[str] | None = None, bad_records: bool = True,
                    mirror: bool = True) -> Path:
    """A tiny real WARC: fr/de/en pages, one mirrored page (exact duplicate paragraphs), and bad records.

    Bad records: a latin-1 page without charset, an empty page, a page with no paragraphs, a PDF,
    and a truncated gzip member at the end of the file (a corrupt/truncated record).
    """
    names = names if names is not None else FR_PAGES + DE_PAGES + EN_PAGES
    pages = [(page_url(n), (pages_dir / n).read_bytes(), "text/html; charset=utf-8") for n in names]
    if mirror and names:
        url, body, ctype = pages[0]
        pages.append((url.replace("https://", "https://mirror."), body, ctype))
    if bad_records:
        pages += [
            ("https://latin1.example.fr/", LATIN1_FR, "text/html"),
            ("https://empty.example.fr/", b"", "text/html"),
            ("https://noparagraphs.example.fr/", NO_PARAGRAPHS, "text/html"),
            ("https://example.fr/doc.pdf", b"%PDF-1.4 binary", "application/pdf"),
        ]
    write_warc(out, pages)
    if bad_records:
        # append a record whose gzip member is cut in the middle: a truncated download
        buf = io.BytesIO()
        w = WARCWriter(buf, gzip=True)
        _record(w, "https://truncated.example.fr/", pages[0][1][:20000])
        data = buf.getvalue()
        with open(out, "ab") as f:
            f.write(data[: len(data) // 2])
    return out


def write_wet(path: Path, docs: Iterable[tuple[str, str]]) -> Path:
    """A WET file (conversion records, already plain text), as CommonCrawl publishes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, text in docs:
            rec = writer.create_warc_record(url, "conversion", payload=io.BytesIO(text.encode()),
                                            warc_headers_dict={"Content-Type": "text/plain"})
            writer.write_record(rec)
    return path


def gz_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)

"""The pipeline steps datatrove 0.10.1 lacks, as datatrove ``PipelineStep``s.

- ``CCReader``: WARC/WET/JSONL reader on FastWARC that survives truncated/corrupt records (resyncs on
  the next gzip member) and gives every document a global, task-count-independent key.
- ``HtmlToText``: Resiliparse extraction (datatrove only ships Trafilatura), inside datatrove's
  timeout sandbox, then paragraph normalisation (one paragraph per line).
- ``LanguageID`` / ``QualityFilter``: fastText filters that read the model *in place* from a path
  (datatrove's copy models into ``$HF_HOME`` keyed by path, which goes stale on retraining, and
  its LID URL is hard-coded).
- ``ParagraphSignature`` → ``ParagraphFindDuplicates`` → ``ParagraphDedupFilter``: exact paragraph
  dedup across the run, hash-sharded like datatrove's sentence dedup, but on 128-bit hashes of the raw
  paragraph (no lower-casing/digit stripping) and keeping the copy with the smallest global key, so
  the result does not depend on the number of tasks.
"""

from __future__ import annotations

import gzip
import mmap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.typeshelper import StatHints

# signature record: 128-bit paragraph hash, global doc key, paragraph index, stage-1 rank (32 bytes)
SIG_DTYPE = np.dtype([("h1", "<u8"), ("h2", "<u8"), ("key", "<u8"), ("para", "<u4"), ("rank", "<u4")])
DUP_DTYPE = np.dtype([("key", "<u8"), ("para", "<u4")])
WARC_EXT = (".warc", ".warc.gz", ".wet", ".wet.gz", ".arc.gz")
JSONL_EXT = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")
HTML_TYPES = ("text/html", "application/xhtml+xml")


def input_format(path: str) -> str:
    """'warc' or 'jsonl' from the file name; ValueError otherwise (checked before any work starts)."""
    p = path.lower()
    if p.endswith(WARC_EXT):
        return "warc"
    if p.endswith(JSONL_EXT):
        return "jsonl"
    raise ValueError(f"unsupported input file {path!r}: expected one of {WARC_EXT + JSONL_EXT}")


def doc_key(file_idx: int, rec_idx: int) -> int:
    """Global document order: (input file index in the sorted input list, record index in the file)."""
    return (file_idx << 32) | rec_idx


def normalize_paragraphs(text: str) -> str:
    """One paragraph per line, inner whitespace collapsed, empty lines dropped (the dedup unit)."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "charset" and v:
            return v.strip("\"' ").lower()
    return None


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Bytes → str with the HTTP charset, else a detected one (non-UTF-8 pages are common in CC)."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    enc = _charset(content_type)
    if enc:
        try:
            return body.decode(enc), enc
        except (LookupError, UnicodeDecodeError):
            pass
    enc = detect_encoding(body)
    return bytes_to_str(body, enc), enc


class CCReader(PipelineStep):
    """Reads WARC (response records, HTML), WET (conversion records, text) and JSONL files.

    Files are sharded over tasks as ``files[rank::world_size]``. Bad input is skipped and counted:
    ``corrupt_record`` (undecodable gzip/WARC; the reader resyncs on the next gzip member),
    ``truncated_record``, ``empty_page``, ``non_html``, ``bad_json``; ``non_utf8`` counts pages
    decoded from another charset.
    """

    type = "📖 - READER"
    name = "📦 CC WARC/WET/JSONL"
    _requires_dependencies = ["resiliparse", "orjson"]

    def __init__(self, files: list[str], progress: bool = False, max_record_bytes: int = 20 * 2**20):
        super().__init__()
        self.files = list(files)
        self.progress = progress
        self.max_record_bytes = max_record_bytes

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tqdm import tqdm

        mine = [(i, f) for i, f in enumerate(self.files) if i % world_size == rank]
        total = sum(Path(f).stat().st_size for _, f in mine)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"read task {rank}", disable=not self.progress,
                  position=rank, leave=False, mininterval=1.0) as bar:
            for file_idx, path in mine:
                self.stat_update("input_files")
                self.stat_update("input_bytes", value=Path(path).stat().st_size, unit="file")
                reader = self._read_warc if input_format(path) == "warc" else self._read_jsonl
                for doc in reader(path, file_idx, bar):
                    self.stat_update(StatHints.forwarded)
                    yield doc

    # -- WARC / WET ----------------------------------------------------------------------------------
    def _read_warc(self, path: str, file_idx: int, bar: Any) -> DocumentsPipeline:
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        rec_idx = 0
        types = WarcRecordType.response | WarcRecordType.conversion
        with open(path, "rb") as f:
            start, done = 0, 0
            while True:
                f.seek(start)
                last = None
                try:
                    for rec in ArchiveIterator(f, record_types=types, parse_http=True):
                        last = rec.stream_pos
                        doc = self._warc_doc(rec, file_idx, rec_idx)
                        rec_idx += 1
                        pos = f.tell()
                        bar.update(max(0, pos - done))
                        done = max(done, pos)
                        if doc is not None:
                            yield doc
                    break
                except (OSError, ValueError, EOFError):
                    self.stat_update("corrupt_record")
                    rec_idx += 1
                    nxt = self._next_member(f, (last if last is not None else start) + 1)
                    if nxt is None:
                        break
                    start = nxt
            bar.update(max(0, Path(path).stat().st_size - done))

    @staticmethod
    def _next_member(f: Any, offset: int) -> int | None:
        """Offset of the next gzip member (or WARC header, uncompressed) after ``offset``."""
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            gz = mm.find(b"\x1f\x8b\x08", offset)
            raw = mm.find(b"WARC/1.", offset)
        hits = [h for h in (gz, raw) if h >= 0]
        return min(hits) if hits else None

    def _warc_doc(self, rec: Any, file_idx: int, rec_idx: int) -> Document | None:
        from fastwarc.warc import WarcRecordType

        url = rec.headers.get("WARC-Target-URI", "")
        rid = rec.headers.get("WARC-Record-ID", f"{file_idx}/{rec_idx}").strip("<>")
        expected = rec.content_length
        body = rec.reader.read(self.max_record_bytes + 1)
        self.stat_update("records")
        self.stat_update("record_bytes", value=len(body))
        meta: dict[str, Any] = {"url": url, "doc_key": doc_key(file_idx, rec_idx)}
        if len(body) > self.max_record_bytes:
            self.stat_update("too_large")
            return None
        if expected is not None and len(body) < expected:
            self.stat_update("truncated_record")
            return None
        if not body.strip():
            self.stat_update("empty_page")
            return None
        if rec.record_type == WarcRecordType.conversion:
            meta["format"] = "text"
            return Document(text=body.decode("utf-8", errors="replace"), id=rid, metadata=meta)
        ctype = rec.http_headers.get("Content-Type") if rec.http_headers is not None else None
        mime = (ctype or "").split(";")[0].strip().lower()
        if mime not in HTML_TYPES and not (not mime and body.lstrip()[:1] == b"<"):
            self.stat_update("non_html")
            return None
        try:
            text, enc = decode_html(body, ctype)
        except Exception:
            self.stat_update("decode_error")
            return None
        if enc.replace("-", "").replace("_", "") not in ("utf8", "ascii", "usascii"):
            self.stat_update("non_utf8")
        meta["format"] = "html"
        return Document(text=text, id=rid, metadata=meta)

    # -- JSONL (``text`` = plain text, or ``html``) -------------------------------------------------
    def _read_jsonl(self, path: str, file_idx: int, bar: Any) -> DocumentsPipeline:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                for rec_idx, line in enumerate(f):
                    bar.update(len(line))
                    if not line.strip():
                        continue
                    self.stat_update("records")
                    try:
                        obj = orjson.loads(line)
                        html = obj.get("html")
                        text = obj.get("text") if html is None else html
                        if not isinstance(text, str):
                            raise ValueError("no text/html field")
                    except (orjson.JSONDecodeError, ValueError, AttributeError):
                        self.stat_update("bad_json")
                        continue
                    if not text.strip():
                        self.stat_update("empty_page")
                        continue
                    meta = {"url": obj.get("url", ""), "doc_key": doc_key(file_idx, rec_idx),
                            "format": "html" if html is not None else "text"}
                    yield Document(text=text, id=str(obj.get("id", f"{Path(path).name}/{rec_idx}")), metadata=meta)
        except (OSError, EOFError):  # truncated .gz
            self.stat_update("corrupt_record")


def _resiliparse_extract(html: str, main_content: bool = True) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=main_content, alt_texts=False)


class HtmlToText(PipelineStep):
    """Resiliparse HTML→text in datatrove's sandbox (per-document timeout), then one paragraph per line.

    Plain-text documents (WET, JSONL ``text``) are only normalised. Documents left without any
    paragraph are dropped and counted as ``no_paragraphs``.
    """

    type = "🛢 - EXTRAC"
    name = "⛏ Resiliparse"
    _requires_dependencies = ["resiliparse"]

    def __init__(self, main_content: bool = True, timeout: float = 5.0, sandbox: bool = True):
        super().__init__()
        self.main_content = main_content
        self.timeout = timeout
        self.sandbox = sandbox

    def extract(self, html: str) -> str:
        return _resiliparse_extract(html, self.main_content)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with ExtractorSandbox(timeout=self.timeout, warmup_text="") as box:
            for doc in data:
                self.stat_update(StatHints.total)
                with self.track_time():
                    if doc.metadata.get("format") == "html":
                        try:
                            raw = box.process_document(doc.text, self.extract) if self.sandbox else self.extract(doc.text)
                        except TimeoutError:
                            self.stat_update("timeout")
                            continue
                        except EOFError:
                            self.stat_update("broken_process")
                            continue
                        except Exception:
                            self.stat_update("extract_error")
                            continue
                    else:
                        raw = doc.text
                    doc.text = normalize_paragraphs(raw)
                doc.metadata.pop("format", None)
                if not doc.text:
                    self.stat_update("no_paragraphs")
                    self.stat_update(StatHints.dropped)
                    continue
                self.stat_update("paragraphs", value=doc.text.count("\n") + 1)
                self.stat_update(StatHints.forwarded)
                self.update_doc_stats(doc)
                yield doc


class _FastTextStep(BaseFilter):
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(self, model_path: str):
        super().__init__()
        self.model_path = str(model_path)
        self._model = None

    @property
    def model(self) -> Any:
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(self.model_path)
        return self._model

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = None
        return state


class LanguageID(_FastTextStep):
    """fastText LID (lid.176): keeps documents whose top language is ``lang`` with score ≥ threshold.

    Sets ``lang``/``lang_score`` (top-1) in metadata; dropped documents are counted per language.
    Only the first ``max_chars`` characters are classified (LID cost grows with text length).
    """

    name = "🌍 fastText LID"

    def __init__(self, model_path: str, lang: str, threshold: float = 0.65, max_chars: int = 10000):
        super().__init__(model_path)
        self.lang = lang
        self.threshold = threshold
        self.max_chars = max_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text[: self.max_chars].replace("\n", " ")
        labels, scores = self.model.predict(text, k=1)
        lang = labels[0].removeprefix("__label__") if labels else "unk"
        score = float(scores[0]) if len(scores) else 0.0
        doc.metadata["lang"] = lang
        doc.metadata["lang_score"] = round(score, 4)
        if lang != self.lang:
            return False, f"lang_{lang}"
        if score < self.threshold:
            return False, "low_score"
        return True


class QualityFilter(_FastTextStep):
    """fastText quality classifier: keeps documents with P(``label``) ≥ threshold; sets ``quality_score``."""

    name = "🤖 fastText quality"

    def __init__(self, model_path: str, label: str = "hq", threshold: float = 0.5, max_chars: int = 100_000):
        super().__init__(model_path)
        self.label = label
        self.threshold = threshold
        self.max_chars = max_chars

    def score(self, text: str) -> float:
        labels, scores = self.model.predict(text[: self.max_chars].replace("\n", " "), k=-1)
        return float(dict(zip(labels, scores)).get(f"__label__{self.label}", 0.0))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        s = self.score(doc.text)
        doc.metadata["quality_score"] = round(s, 4)
        return s >= self.threshold or (False, "low_quality")


# ---------------------------------------------------------------------------------------------------
# exact paragraph dedup: signatures (stage 1) → find duplicates per hash bucket (stage 2) → filter (stage 3)
# ---------------------------------------------------------------------------------------------------
def paragraph_hash(par: str) -> tuple[int, int]:
    import xxhash

    v = xxhash.xxh3_128_intdigest(par.encode("utf-8"))
    return v >> 64, v & 0xFFFFFFFFFFFFFFFF


class ParagraphSignature(PipelineStep):
    """Writes one 32-byte signature per paragraph to ``sig_dir/<bucket>/<rank>.bin`` and passes docs on.

    bucket = low hash bits mod ``buckets``, so each find task sees every copy of its paragraphs.
    Memory is constant (buffers are flushed); disk is 32 bytes per paragraph.
    """

    type = "🫂 - DEDUPS"
    name = "💥 paragraph dedup 1/3: signatures"

    def __init__(self, sig_dir: str, buckets: int, min_chars: int = 0, flush_rows: int = 65536):
        super().__init__()
        self.sig_dir = str(sig_dir)
        self.buckets = buckets
        self.min_chars = min_chars
        self.flush_rows = flush_rows

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files = []
        for b in range(self.buckets):
            d = Path(self.sig_dir) / f"{b:05d}"
            d.mkdir(parents=True, exist_ok=True)
            files.append(open(d / f"{rank:05d}.bin", "wb"))  # "wb": a re-run of a failed task starts clean
        bufs: list[list[tuple[int, int, int, int, int]]] = [[] for _ in range(self.buckets)]

        def flush(b: int) -> None:
            if bufs[b]:
                np.array(bufs[b], dtype=SIG_DTYPE).tofile(files[b])
                bufs[b].clear()

        try:
            for doc in data:
                key = doc.metadata["doc_key"]
                with self.track_time():
                    for i, par in enumerate(doc.text.split("\n")):
                        if len(par) < self.min_chars:
                            continue
                        h1, h2 = paragraph_hash(par)
                        b = h2 % self.buckets
                        bufs[b].append((h1, h2, key, i, rank))
                        if len(bufs[b]) >= self.flush_rows:
                            flush(b)
                        self.stat_update("paragraph_signatures")
                yield doc
            for b in range(self.buckets):
                flush(b)
        finally:
            for f in files:
                f.close()


class ParagraphFindDuplicates(PipelineStep):
    """Task ``b`` loads every signature of hash bucket ``b``, sorts by (hash, global key, paragraph) and
    marks every copy but the first as a duplicate, written per stage-1 rank to ``dup_dir/<rank>/<b>.npy``.

    RAM ≈ 80 bytes × paragraphs in the bucket (records + sort index + sorted copy).
    """

    type = "🫂 - DEDUPS"
    name = "💥 paragraph dedup 2/3: find duplicates"

    def __init__(self, sig_dir: str, dup_dir: str):
        super().__init__()
        self.sig_dir = str(sig_dir)
        self.dup_dir = str(dup_dir)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files = sorted((Path(self.sig_dir) / f"{rank:05d}").glob("*.bin"))
        parts = [np.fromfile(f, dtype=SIG_DTYPE) for f in files]
        sigs = np.concatenate(parts) if parts else np.empty(0, dtype=SIG_DTYPE)
        del parts
        with self.track_time(unit="bucket"):
            if len(sigs):
                order = np.lexsort((sigs["para"], sigs["key"], sigs["h2"], sigs["h1"]))
                sigs = sigs[order]
                del order
                first = np.ones(len(sigs), dtype=bool)
                first[1:] = (sigs["h1"][1:] != sigs["h1"][:-1]) | (sigs["h2"][1:] != sigs["h2"][:-1])
                dups = sigs[~first]
            else:
                first, dups = np.ones(0, dtype=bool), sigs
        self.stat_update("paragraphs", value=len(sigs), unit="bucket")
        self.stat_update("unique_paragraphs", value=int(first.sum()), unit="bucket")
        self.stat_update("duplicate_paragraphs", value=len(dups), unit="bucket")
        for r in np.unique(dups["rank"]):
            sel = dups[dups["rank"] == r]
            out = np.empty(len(sel), dtype=DUP_DTYPE)
            out["key"], out["para"] = sel["key"], sel["para"]
            d = Path(self.dup_dir) / f"{int(r):05d}"
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{rank:05d}.npy", out)
        if data:
            yield from data


class RankFileReader(PipelineStep):
    """Reads the intermediate file of exactly this rank (``<rank>.docs.jsonl.gz``; absent = no docs).

    datatrove's JsonlReader shards a folder listing, which shifts when a rank wrote no file; the dedup
    filter must see the same documents as the signature step of the same rank.
    """

    type = "📖 - READER"
    name = "📒 stage-1 docs"

    def __init__(self, folder: str, progress: bool = False):
        super().__init__()
        self.folder = str(folder)
        self.progress = progress

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tqdm import tqdm

        path = Path(self.folder) / f"{rank:05d}.docs.jsonl.gz"
        if not path.is_file():
            return
        with gzip.open(path, "rb") as f:
            for line in tqdm(f, desc=f"filter task {rank}", unit="doc", disable=not self.progress,
                             position=rank, leave=False, mininterval=1.0):
                obj = orjson.loads(line)
                self.stat_update(StatHints.forwarded)
                yield Document(text=obj["text"], id=obj["id"], metadata=obj.get("metadata", {}))


class ParagraphDedupFilter(PipelineStep):
    """Removes the duplicate paragraphs found in stage 2; drops documents left empty (``emptied``)."""

    type = "🫂 - DEDUPS"
    name = "💥 paragraph dedup 3/3: filter"

    def __init__(self, dup_dir: str):
        super().__init__()
        self.dup_dir = str(dup_dir)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        remove: dict[int, set[int]] = defaultdict(set)
        for f in sorted((Path(self.dup_dir) / f"{rank:05d}").glob("*.npy")):
            for key, para in np.load(f).tolist():
                remove[key].add(para)
        for doc in data:
            self.stat_update(StatHints.total)
            pars = doc.text.split("\n")
            self.stat_update("paragraphs_in", value=len(pars))
            gone = remove.get(doc.metadata["doc_key"])
            if gone:
                pars = [p for i, p in enumerate(pars) if i not in gone]
                self.stat_update("paragraphs_removed", value=len(gone))
                if not pars:
                    self.stat_update("emptied")
                    self.stat_update(StatHints.dropped)
                    continue
                doc.text = "\n".join(pars)
            self.stat_update("paragraphs_out", value=len(pars))
            self.stat_update(StatHints.forwarded)
            self.update_doc_stats(doc)
            yield doc


def shard_adapter(self: Any, doc: Document) -> dict:
    """Output record: the fields the training DataModule and analyses use."""
    md = doc.metadata
    return {"text": doc.text, "id": doc.id, "url": md.get("url", ""), "lang": md.get("lang"),
            "lang_score": md.get("lang_score"), "quality_score": md.get("quality_score")}


class OutputCounter(PipelineStep):
    """Counts what reaches the shard writer (docs, paragraphs, UTF-8 bytes) for the run's stats."""

    type = "📊 - STATS"
    name = "📏 output counter"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("docs_out")
            self.stat_update("text_bytes_out", value=len(doc.text.encode("utf-8")))
            self.stat_update("paragraphs_out", value=doc.text.count("\n") + 1)
            yield doc

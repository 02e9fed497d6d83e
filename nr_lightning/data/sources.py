"""Streaming text-document sources: local files, shard folders/globs, or Hugging Face datasets.

A *source spec* is a string:

* ``path/to/file.txt``: one document per non-empty line (multi-paragraph documents: use JSONL);
* ``path/to/file.jsonl`` / ``.jsonl.gz`` / ``.json`` / ``.ndjson``: one JSON object per line, text in ``text_field``;
* ``path/to/file.parquet``: a column ``text_field``, read in record batches;
* a directory (all such files below it, recursively) or a glob (``shards/*.jsonl.gz``), in sorted path order;
* ``hf:<dataset>[:<config>][@<split>]``: ``datasets.load_dataset(..., streaming=True)`` (needs the hub).

Sources never hold a corpus in memory: :meth:`TextSource.iter_texts` is a generator and the order is
deterministic (sorted files, file order within a file). Sharding is round-robin over documents, so shard
``i`` of ``n`` gets documents ``i, i+n, i+2n, ...`` of the full stream (:func:`worker_shard` combines a
distributed rank with the current dataloader worker).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DataSourceError", "TextSource", "open_source", "worker_shard", "SUFFIXES"]

SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".txt.gz")
_READ_ERRORS = (UnicodeDecodeError, EOFError, gzip.BadGzipFile)
_MAKE_HINT = "run `make data` (python -m nr_lightning.data.corpora) to prepare the default corpora, or fix the path"


class DataSourceError(ValueError):
    """A data source is missing, empty or malformed (the message names the file and what to do)."""


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suf in SUFFIXES:
        if name.endswith(suf):
            return suf
    raise DataSourceError(f"unsupported file type {path} (expected one of {', '.join(SUFFIXES)})")


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


class TextSource:
    """A deterministic, restartable stream of document texts from one source spec."""

    def __init__(self, spec: str, text_field: str = "text") -> None:
        self.spec = str(spec)
        self.text_field = text_field

    def __repr__(self) -> str:
        return f"TextSource({self.spec!r})"

    @property
    def is_hf(self) -> bool:
        return self.spec.startswith("hf:")

    # ------------------------------------------------------------------ files

    def files(self) -> list[Path]:
        """The files this spec resolves to, sorted; raises a clear error when there are none."""
        if self.is_hf:
            return []
        spec = os.path.expanduser(self.spec)
        if _is_glob(spec):
            files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            files = [f for f in files if f.name.lower().endswith(SUFFIXES)]
            if not files:
                raise DataSourceError(f"data source {self.spec!r}: the glob matches no {'/'.join(SUFFIXES)} file; "
                                      + _MAKE_HINT)
            return files
        path = Path(spec)
        if not path.exists():
            raise DataSourceError(f"data source {self.spec!r} does not exist; " + _MAKE_HINT)
        if path.is_dir():
            # Skip hidden and underscore folders: data_prep keeps its intermediate files in <output>/_work/.
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)
                           and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts))
            if not files:
                raise DataSourceError(f"data source directory {self.spec!r} holds no {'/'.join(SUFFIXES)} file "
                                      "(no documents); " + _MAKE_HINT)
            return files
        _kind(path)
        return [path]

    def validate(self, full: bool = True) -> int:
        """Fail early (at setup, not mid-training) if the source is missing, holds no document or, with
        ``full``, has any record that would fail later: one streaming pass over every file (bytes, UTF-8,
        JSON), so a corrupt line deep in a file stops the run before step 1 instead of at step N (or, past
        the part a short run reads, never). Returns the number of documents (1 when not ``full``)."""
        if self.is_hf:
            return 0  # checked lazily: loading a hub dataset here would be slow
        n = 0
        for _ in self._iter_all():
            n += 1
            if not full:
                break
        if n == 0:
            raise DataSourceError(f"data source {self.spec!r} holds no documents (empty file(s) or only blank text)")
        return n

    @staticmethod
    def _iter_file(path: Path, field: str) -> Iterator[str]:
        kind = _kind(path)
        if kind == ".parquet":
            import pyarrow.parquet as pq

            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # pyarrow raises several types for a truncated / non-parquet file
                raise DataSourceError(f"{path}: not a readable parquet file ({e})") from e
            if field not in pf.schema_arrow.names:
                raise DataSourceError(f"{path}: no column {field!r} (columns: {pf.schema_arrow.names})")
            for batch in pf.iter_batches(columns=[field], batch_size=1024):
                for text in batch.column(0).to_pylist():
                    if text and text.strip():
                        yield text
            return
        opener = gzip.open if kind.endswith(".gz") else open
        read_errors = _READ_ERRORS  # bound locally: module globals may be gone when a generator closes at exit
        with opener(path, "rb") as f:
            try:
                for lineno, raw_line in enumerate(f, 1):
                    try:  # decoded per line, so a bad byte is reported with its line number
                        line = raw_line.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DataSourceError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line: "
                                              f"{e.reason}); re-encode the file as UTF-8 or remove the line") \
                            from None
                    if not line.strip():
                        continue
                    if kind.startswith(".txt"):
                        yield line.rstrip("\r\n")
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataSourceError(f"{path}:{lineno}: corrupt JSON line ({e.msg}: column {e.colno}); "
                                              f"fix or remove the line") from None
                    if not isinstance(obj, dict) or field not in obj:
                        raise DataSourceError(f"{path}:{lineno}: expected a JSON object with a {field!r} field")
                    text = obj[field]
                    if not isinstance(text, str):
                        raise DataSourceError(f"{path}:{lineno}: field {field!r} is {type(text).__name__}, not a string")
                    if text.strip():
                        yield text
            except read_errors as e:
                raise DataSourceError(f"{path}: unreadable ({type(e).__name__}: {e})") from None

    def _iter_hf(self) -> Iterator[str]:
        rest = self.spec[3:]
        split = "train"
        if "@" in rest:
            rest, split = rest.rsplit("@", 1)
        name, _, config = rest.partition(":")
        try:
            import datasets
        except ImportError as e:  # pragma: no cover - datasets is a core dependency
            raise DataSourceError("hf: sources need the `datasets` package") from e
        try:
            ds = datasets.load_dataset(name, config or None, split=split, streaming=True)
        except Exception as e:
            raise DataSourceError(f"data source {self.spec!r}: datasets.load_dataset({name!r}, {config or None!r}, "
                                  f"split={split!r}, streaming=True) failed: {e}") from e
        for row in ds:
            text = row.get(self.text_field)
            if text is None:
                raise DataSourceError(f"data source {self.spec!r}: rows have no {self.text_field!r} field "
                                      f"(fields: {sorted(row)}); set the text field")
            if text.strip():
                yield text

    def _iter_all(self) -> Iterator[str]:
        if self.is_hf:
            yield from self._iter_hf()
            return
        for path in self.files():
            yield from self._iter_file(path, self.text_field)

    def iter_texts(self, shard: int = 0, num_shards: int = 1) -> Iterator[str]:
        """Documents ``shard, shard + num_shards, ...`` of one full pass, in a deterministic order."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} out of range for num_shards={num_shards}")
        n = 0
        for i, text in enumerate(self._iter_all()):
            n += 1
            if i % num_shards == shard:
                yield text
        if n == 0:
            raise DataSourceError(f"data source {self.spec!r} holds no documents (empty file(s) or only blank text)")

    def __iter__(self) -> Iterator[str]:
        return self.iter_texts()


def open_source(spec: str | os.PathLike | TextSource, text_field: str = "text") -> TextSource:
    """Normalise a spec (or an existing source) to a :class:`TextSource`."""
    if isinstance(spec, TextSource):
        return spec
    return TextSource(str(spec), text_field=text_field)


def worker_shard(rank: int = 0, world_size: int = 1) -> tuple[int, int]:
    """(shard, num_shards) for this process: the distributed rank split further across dataloader workers."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
    return rank * workers + wid, world_size * workers

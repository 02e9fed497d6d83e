"""Token shards: a training corpus tokenised once into datatrove ``.ds`` files, then read at any offset.

A language's packed stream is its documents' tokens, each followed by EOS, concatenated in source order
and repeated over epochs. Preparing a source writes exactly that sequence (one epoch) as datatrove's
``DocumentTokenizer`` output: ``NNNNN_unshuffled.ds`` (little-endian uint16/uint32 token ids), ``.ds.index``
(uint64 document ends) and ``.ds.metadata``, one file per preparation task, concatenated in task order.
``manifest.json`` (written last) records the sizes and checksums that :meth:`TokenShards.check` verifies
at start-up in milliseconds, whatever the corpus size.

Cache: ``<tokens_dir>/<content hash>-<tokenizer hash>/``; the content hash covers the source's bytes (its
files in order, the text field), so an edited corpus is tokenised again and an unchanged one never is (a
stat memo under ``_sources/`` avoids re-hashing unchanged files at every start).

Run: ``python -m nr_lightning.data.shards SPEC [SPEC...] --tokenizer smollm2-135m [--tasks N] [--slurm ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .sources import DataSourceError, TextSource, open_source

__all__ = ["TokenShards", "prepare_shards", "shard_dir", "source_key", "tokenizer_key", "rebuild_command"]

SHARD_VERSION = 1
_PROBE = "Le chat dort. The cat sleeps; der Hund bellt 1234 — ça va? 東京\n\ttab"
_CHECK_BYTES = 1 << 16  # checksum the first and last 64 KiB of every .ds file: start-up cost independent of size


# ----------------------------------------------------------------------------------------------------- keys


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without special tokens (the packing's tokenisation, HF-compatible call)."""
    if hasattr(tokenizer, "model_max_length"):  # HF: silence the "longer than model max length" warning
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def tokenizer_key(tokenizer: Any) -> str:
    """Hash of what the tokenizer does: its serialised vocabulary/rules when it has them, its EOS and the ids
    of a multilingual probe text (so two tokenizers that differ in any way that shows get different shards)."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    try:
        probe = encode(tokenizer, [_PROBE])[0]
    except Exception:  # a toy tokenizer that only reads its own alphabet: its class, EOS and size identify it
        probe = None
    h.update(json.dumps([type(tokenizer).__name__, getattr(tokenizer, "eos_token_id", None),
                         len(tokenizer) if hasattr(tokenizer, "__len__") else getattr(tokenizer, "vocab_size", None),
                         probe]).encode())
    return h.hexdigest()[:16]


def _stat_memo(root: Path, src: TextSource, files: list[Path]) -> Path:
    stats = [[str(f.resolve()), (st := f.stat()).st_size, st.st_mtime_ns] for f in files]
    key = hashlib.sha256(json.dumps([src.text_field, stats]).encode()).hexdigest()[:24]
    return root / "_sources" / f"{key}.json"


def source_key(source: TextSource, root: Path | None = None) -> str:
    """Content hash of a source: its files' bytes in order (plus their kinds and the text field); ``hf:``
    sources are keyed by their spec. With ``root``, the hash of unchanged files (same size and mtime) is
    remembered under ``root/_sources`` so a start-up does not re-read the corpus."""
    if source.is_hf:
        return hashlib.sha256(json.dumps(["hf", source.spec, source.text_field]).encode()).hexdigest()[:16]
    files = source.files()
    memo = _stat_memo(root, source, files) if root is not None else None
    if memo is not None and memo.exists():
        return json.loads(memo.read_text(encoding="utf-8"))["content"]
    h = hashlib.sha256(json.dumps([source.text_field, [f.name.lower().rsplit(".", 1)[-1] for f in files]]).encode())
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        h.update(b"\0file\0")
    key = h.hexdigest()[:16]
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"content": key, "spec": source.spec}), encoding="utf-8")
        os.replace(tmp, memo)
    return key


def shard_dir(root: Path, source: TextSource, tokenizer: Any) -> Path:
    """Where the shards of ``source`` tokenised by ``tokenizer`` live (computed, nothing is written)."""
    return Path(root) / f"{source_key(source, Path(root))}-{tokenizer_key(tokenizer)}"


def rebuild_command(spec: str, root: Path) -> str:
    """The command that tokenises ``spec`` again into ``root`` (named in every damaged-shard error)."""
    return f"python -m nr_lightning.data.shards {spec} --tokens-dir {root} --rebuild (same --tokenizer as training)"


# ----------------------------------------------------------------------------------------------------- reader


class TokenShards:
    """One prepared corpus: read ``n`` tokens at any offset of its periodic stream (offsets wrap modulo one
    epoch), memory-mapped, without reading anything before it. ``tokens_read`` counts what was read."""

    def __init__(self, path: Path | str, spec: str = "") -> None:
        self.path = Path(path)
        self.spec = spec
        man = self.path / "manifest.json"
        if not man.exists():
            raise DataSourceError(f"token shards {self.path} have no manifest.json (preparation did not finish); "
                                  f"rebuild: {rebuild_command(spec or '<source>', self.path.parent)}")
        self.manifest = json.loads(man.read_text(encoding="utf-8"))
        self.files = [f for f in self.manifest["files"] if f["tokens"] > 0]
        self.n_tokens = int(self.manifest["tokens"])
        self.n_docs = int(self.manifest["docs"])
        self.dtype = np.dtype("<u4" if self.manifest["token_size"] == 4 else "<u2")
        self._cum = np.cumsum([0] + [f["tokens"] for f in self.files])
        self._maps: list[np.ndarray] | None = None
        self.tokens_read = 0

    def __getstate__(self) -> dict:  # dataloader workers reopen the memory maps themselves
        return {**self.__dict__, "_maps": None}

    def _damaged(self, name: str, why: str) -> DataSourceError:
        return DataSourceError(f"token shard {self.path / name} is damaged ({why}); rebuild it: "
                               f"{rebuild_command(self.spec or self.manifest.get('spec', '<source>'), self.path.parent)}")

    def check(self) -> None:
        """Sizes, document index and head/tail checksums of every file against the manifest: milliseconds,
        whatever the corpus size. A damaged shard raises a :class:`DataSourceError` naming the file and the
        command that rebuilds it."""
        if self.manifest.get("version") != SHARD_VERSION:
            raise self._damaged("manifest.json", f"format version {self.manifest.get('version')}, "
                                                 f"expected {SHARD_VERSION}")
        for f in self.files:
            ds = self.path / f["name"]
            idx = self.path / (f["name"] + ".index")
            for p, size in ((ds, f["tokens"] * self.dtype.itemsize), (idx, f["docs"] * 8)):
                if not p.exists():
                    raise self._damaged(p.name, "file missing")
                if p.stat().st_size != size:
                    raise self._damaged(p.name, f"{p.stat().st_size} bytes, expected {size}")
            if _head_tail_sha(ds, self.manifest.get("check_bytes", _CHECK_BYTES)) != f["sha256_head_tail"]:
                raise self._damaged(f["name"], "checksum mismatch")
            with open(idx, "rb") as fh:
                fh.seek(-8, os.SEEK_END)
                last = int.from_bytes(fh.read(8), "little")
            if last != f["tokens"]:
                raise self._damaged(idx.name, f"last document ends at token {last}, file holds {f['tokens']}")

    def _open(self) -> list[np.ndarray]:
        if self._maps is None:
            self._maps = [np.memmap(self.path / f["name"], dtype=self.dtype, mode="r") for f in self.files]
        return self._maps

    def read(self, offset: int, n: int) -> np.ndarray:
        """Tokens ``offset .. offset+n-1`` of the periodic stream (offset may exceed one epoch), as int64."""
        maps, out, off = self._open(), [], offset % self.n_tokens
        self.tokens_read += n
        while n > 0:
            i = int(np.searchsorted(self._cum, off, side="right")) - 1
            lo = off - int(self._cum[i])
            take = min(n, self.files[i]["tokens"] - lo)
            out.append(np.asarray(maps[i][lo:lo + take], dtype=np.int64))
            n -= take
            off = (off + take) % self.n_tokens
        return out[0] if len(out) == 1 else np.concatenate(out)


def _head_tail_sha(path: Path, n: int = _CHECK_BYTES) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        h.update(fh.read(n))
        if size > n:
            fh.seek(max(n, size - n))
            h.update(fh.read())
    return h.hexdigest()


def write_manifest(path: Path, spec: str, tokenizer_name: str) -> dict:
    """Record the datatrove output of a finished preparation (every task's .ds + .index) in manifest.json."""
    files = []
    for ds in sorted(path.glob("*.ds")):
        tokens = ds.stat().st_size
        meta = (path / (ds.name + ".metadata")).read_text(encoding="utf-8").split("\n") if (path / (ds.name + ".metadata")).exists() \
            else []
        size = int(meta[0].rsplit("|", 1)[1]) if meta else 2
        idx = path / (ds.name + ".index")
        files.append({"name": ds.name, "tokens": tokens // size, "docs": idx.stat().st_size // 8 if idx.exists() else 0,
                      "sha256_head_tail": _head_tail_sha(ds), "token_size": size})
    sizes = {f["token_size"] for f in files if f["tokens"]}
    man = {"version": SHARD_VERSION, "spec": spec, "tokenizer": tokenizer_name, "files": files,
           "check_bytes": _CHECK_BYTES,
           "tokens": sum(f["tokens"] for f in files), "docs": sum(f["docs"] for f in files),
           "token_size": sizes.pop() if len(sizes) == 1 else 2}
    if man["docs"] == 0:
        raise DataSourceError(f"data source {spec!r} holds no documents (empty file(s) or only blank text)")
    tmp = path / "manifest.json.tmp"
    tmp.write_text(json.dumps(man, indent=1), encoding="utf-8")
    os.replace(tmp, path / "manifest.json")
    return man


# ----------------------------------------------------------------------------------------------------- prepare


def _pipeline(spec: str, text_field: str, tokenizer: Any, out: Path, name: str) -> list:
    """Reader + datatrove DocumentTokenizer (no shuffling: the stream keeps the source's document order)."""
    from datatrove.data import Document
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.tokens import DocumentTokenizer

    class ReadSource(PipelineStep):
        """Documents of a source spec (any format :mod:`sources` reads); task ``r`` of ``R`` takes a
        contiguous run of files, so the tasks' outputs concatenated in rank order are the source's order."""

        name = "📖 source"

        def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
            src = open_source(spec, text_field)
            if src.is_hf or world_size == 1:
                texts = src.iter_texts() if rank == 0 else iter(())
            else:
                files = src.files()
                lo, hi = len(files) * rank // world_size, len(files) * (rank + 1) // world_size
                texts = (t for f in files[lo:hi] for t in TextSource._iter_file(f, text_field))
            for i, text in enumerate(texts):
                self.stat_update("documents")
                yield Document(text=text, id=f"{rank}/{i}")

    eos = int(tokenizer.eos_token_id)
    vocab = len(tokenizer) if hasattr(tokenizer, "__len__") else int(getattr(tokenizer, "vocab_size", 1 << 32))

    class Encoder:
        """What DocumentTokenizer calls (``encode_batch`` -> ``.ids``), backed by the training tokenizer's own
        call, so any HF-compatible tokenizer (not only a `tokenizers` file) produces the same ids as before."""

        def get_vocab_size(self) -> int:
            return vocab

        def encode_batch(self, texts: list[str]) -> list[SimpleNamespace]:
            return [SimpleNamespace(ids=[*ids, eos]) for ids in encode(tokenizer, texts)]

    tok = DocumentTokenizer(str(out), tokenizer_name_or_path=name, shuffle_documents=False, batch_size=512)
    tok.tokenizer = Encoder()  # overrides the cached_property that would load a `tokenizers` file by name
    return [ReadSource(), tok]


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__).replace("|", "_")


def prepare_shards(spec: str, tokenizer: Any, root: Path | str, text_field: str = "text", tasks: int = 1,
                   rebuild: bool = False, quiet: bool = True, slurm: dict | None = None,
                   workers: int | None = None) -> TokenShards:
    """Tokenise ``spec`` once into ``root`` (reused while the source's content and the tokenizer are unchanged)
    and return its checked :class:`TokenShards`. ``tasks`` > 1 splits the files over processes; ``slurm``
    (SlurmPipelineExecutor arguments, e.g. ``{"partition": "cpu", "time": "4:00:00"}``) submits an array
    job instead and returns None-equivalent errors until it has finished (run again to finalise)."""
    root = Path(root).expanduser()
    src = open_source(spec, text_field)
    final = shard_dir(root, src, tokenizer)
    if rebuild and final.exists():
        shutil.rmtree(final)
    if (final / "manifest.json").exists():
        shards = TokenShards(final, spec)
        shards.check()
        return shards
    name = _tokenizer_name(tokenizer)
    if slurm is not None:  # shared filesystem: tasks write into the final folder; a later call writes the manifest
        from datatrove.executor import SlurmPipelineExecutor

        logs = final / "_logs"
        ex = SlurmPipelineExecutor(_pipeline(spec, text_field, tokenizer, final, name), tasks=tasks,
                                   logging_dir=str(logs), **{"job_name": "nrl-tokenise", **slurm})
        if len(ex.get_incomplete_ranks()) == 0:
            write_manifest(final, spec, name)
            return prepare_shards(spec, tokenizer, root, text_field)
        ex.run()
        raise DataSourceError(f"tokenisation of {spec!r} submitted to SLURM ({tasks} tasks, logs in {logs}); "
                              "run the same command again when the job has finished to write the manifest")
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.utils.logging import logger

    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipeline = _pipeline(spec, text_field, tokenizer, tmp, name)
    # a bad record is reported once, as our DataSourceError, not as datatrove's logged traceback; in one task
    # our line below says what datatrove's "Tokenizing in ..." would (several tasks keep its per-task logs)
    silent = quiet or tasks == 1
    if silent:
        logger.disable("datatrove")
    if not quiet:
        print(f"data: tokenising {spec} -> {final} ({tasks} task(s))", file=sys.stderr)
    try:
        if tasks == 1:  # one task: the steps run in this process (the executor would add a manager process)
            data = None
            for step in pipeline:
                data = step(data, 0, 1)
            deque(data or (), maxlen=0)
        else:
            LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers or min(tasks, os.cpu_count() or 1),
                                  logging_dir=str(tmp / "_logs")).run()
        write_manifest(tmp, spec, name)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same preparation first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if silent:
            logger.enable("datatrove")
    shards = TokenShards(final, spec)
    shards.check()
    return shards


# ----------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nr_lightning.data.shards",
                                 description="Tokenise training sources once into token shards (datatrove).")
    ap.add_argument("specs", nargs="*", help="source specs (file, directory, glob, hf:...); default: the prepared "
                                             "default corpora <cache>/corpora/{en,fr,de}/train.jsonl")
    ap.add_argument("--tokenizer", default="smollm2-135m")
    ap.add_argument("--tokens-dir", default="", help="default: <cache>/tokens")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--tasks", type=int, default=1, help="parallel tasks (files are split contiguously)")
    ap.add_argument("--rebuild", action="store_true", help="delete and tokenise again")
    ap.add_argument("--slurm", default="", help="submit with datatrove's SlurmPipelineExecutor: comma-separated "
                                                 "key=value arguments, e.g. partition=cpu,time=4:00:00")
    a = ap.parse_args(argv)
    from nr_lightning.backbone import cache_dir, load_tokenizer

    root = Path(a.tokens_dir) if a.tokens_dir else cache_dir() / "tokens"
    specs = a.specs or [str(cache_dir() / "corpora" / lang / "train.jsonl") for lang in ("en", "fr", "de")]
    slurm = {k: int(v) if v.isdigit() else v for k, v in (kv.split("=", 1) for kv in a.slurm.split(","))} \
        if a.slurm else None
    tok = load_tokenizer(a.tokenizer)
    for spec in specs:
        s = prepare_shards(spec, tok, root, a.text_field, tasks=a.tasks, rebuild=a.rebuild, quiet=False, slurm=slurm)
        size = sum((s.path / f["name"]).stat().st_size for f in s.files)
        print(f"{spec}: {s.n_docs:,} documents, {s.n_tokens:,} tokens, {size / 1e6:.1f} MB in {s.path}")
    return 0


if __name__ == "__main__":
    from nr_lightning.errors import run_cli

    run_cli(main)

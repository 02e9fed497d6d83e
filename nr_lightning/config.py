"""Typed run configuration, composed from groups in experiments/ and key=value overrides.

    python -m nr_lightning.train method=neutral lang=fr backbone=tiny trainer.max_steps=50 data.p=0.5

`method`, `lang`, `backbone`, `trainer` pick a YAML file from the group folder of the same name in
experiments/; `experiment=<name>` picks a file of experiments/experiment/ that names group choices and pins
keys of its own (the command line's choices and dotted keys still win); dotted keys override single fields. The schema is the
dataclasses below (OmegaConf structured config): an unknown key or a bad value fails before
anything is loaded, naming the key and the valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .data.config import DataConfig, stratified_problem
from .errors import ConfigError
from .paths import EXPERIMENTS, REPO
from .registry import DEFAULT_METHOD, GATE_INITS, GATES, INITS, METHODS, MIXINGS, PLACEMENTS, method_class

GROUPS = ("method", "lang", "backbone", "trainer", "experiment")
METHOD_NAMES = METHODS


@dataclass
class BackboneConfig:
    # preset (smollm2-135m: the embedded SmolLM2-135M-Instruct, Q4_1 dequantised; smollm2-135m-en: its English
    # continued-pretrained base, `make backbone-en`; tiny), a local HF directory or a hub id
    name: str = "smollm2-135m"
    dtype: str = "float32"  # weights dtype: float32 | bfloat16 (fp32 is faster on CPUs without AMX)
    trust_remote_code: bool = False  # let transformers run the backbone's own modelling code (hub models that need it)


@dataclass
class MethodConfig:
    name: str = DEFAULT_METHOD  # one of registry.METHODS: finetune | lora | adapters | sigmoid | neutral
    budget: float = 0.2  # fraction of the backbone's non-embedding parameters
    gate: str | None = None  # elu | relu | sigmoid | none (None = the method's default)
    init: str | None = None  # low_variance | he (None = the method's default)
    init_divisor: float | None = None  # low-variance init: var = 1/(d * divisor); None = number of layers
    gate_init: str = "he"  # block gate w_b: he (var 2/d, the paper's reading) | low_variance (as W_in/W_gate)
    placement: str = "parallel"  # parallel | serial
    lora_alpha_ratio: float = 2.0  # LoRA alpha = ratio * rank
    alpha: float = 0.0  # weight of the sparsity loss (neutral: 0.01, docs/method.md)
    beta: float = 0.0  # weight of the gate BCE loss (sigmoid: 1.0)
    lr: float = 2e-4  # peak learning rate (paper: 5e-5 finetune/LoRA, 2e-4 adapters)


@dataclass
class OptimConfig:
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    eps: float = 1e-8  # AdamW epsilon
    schedule: str = "cosine"  # cosine | constant (both after linear warm-up)
    warmup_steps: int = 10  # linear warm-up from 0 to the peak lr
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of the peak lr
    grad_clip: float = 1.0  # 0 disables clipping
    # The optimizer's peak lr = method.lr * lr_multiplier. method.lr holds the paper's values (paper Sec. 4.1), tuned
    # for 100k-step runs; the short CPU-scale runs of experiments/config.yaml use 10x (trainer=paper resets 1).
    lr_multiplier: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = 100  # optimizer steps of the run
    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: Any = 1  # devices per node (an int, or a list of device ids)
    num_nodes: int = 1  # nodes (SLURM: the job's --nodes)
    strategy: str = "auto"  # auto | ddp | fsdp | deepspeed
    precision: str = "auto"  # auto (bf16-mixed where measured faster, GPUs included) | 32-true | bf16-mixed | 16-mixed
    accumulate_grad_batches: int = 1  # micro-batches per optimizer step
    log_every_n_steps: int = 1  # logger write interval (train/* scalars)
    checkpoint_every_n_steps: int = 50  # a checkpoint every N steps (plus last.ckpt)
    num_threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default
    compile: bool = False  # torch.compile the model (faster steps after a one-off compile)
    fused_loss: bool = True  # LM loss fused with the head, no logits kept (nr_lightning/training/loss.py); off under fsdp/deepspeed
    detect_anomaly: bool = False  # torch autograd anomaly detection (slow; finds the op that made a NaN)
    nan_policy: str = "stop"  # stop | skip: what a NaN/inf loss does
    dry_run: bool = False  # print the memory plan (layout, per-GPU memory estimates), do not train
    global_batch_tokens: int = 0  # >0: solve accumulate_grad_batches = this / (devices*nodes*batch_size*seq_len)
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (FSDP policy / HF for DDP)
    fsdp_sharding: str = "FULL_SHARD"  # FULL_SHARD (ZeRO-3-like) | SHARD_GRAD_OP (ZeRO-2-like) | HYBRID_SHARD | NO_SHARD
    deepspeed_stage: int = 2  # ZeRO stage for strategy=deepspeed (needs the deepspeed package)
    min_free_gb: float = 1.0  # refuse to start when the run directory's disk has less free space
    # where curves go, several at once: tensorboard (<run>/tb) | csv (<run>/csv/metrics.csv) | wandb (<run>/wandb,
    # offline unless WANDB_MODE=online; the `wandb` extra), e.g. trainer.loggers=[tensorboard,csv,wandb]
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class EvalConfig:
    every_n_steps: int = 50  # held-out bpb (the forgetting curves) every N steps; 0 = only at start and end
    max_docs: int = 48  # held-out documents per language for the in-training curves
    max_length: int = 512  # context window of the bpb pass (tokens)
    batch_size: int = 8  # windows per forward pass of the bpb pass
    at_start: bool = True  # evaluate the untouched model at step 0
    indomain: bool = False  # also curve the in-domain English held-out set (eval/bpb_en_indomain)
    # more held-out sets to curve, name -> JSONL path (eval/bpb_<name>; not in eval/bpb_sum), e.g. a dev copy of
    # the forgetting set for decisions that must not look at the evaluation set (docs/reproduction.md)
    extra: dict[str, str] = field(default_factory=dict)
    gate_stats: bool = True  # block-gate statistics per domain, gate spectra


@dataclass
class RunConfig:
    name: str | None = None  # run name (default: <method>-<lang>-<timestamp>)
    run_dir: str | None = None  # full path; overrides runs_root/name
    runs_root: str = "runs"  # parent directory of named runs
    ckpt_path: str | None = None  # resume: last | path/to.ckpt
    overwrite: bool = False  # replace an earlier run's outputs in run_dir (otherwise such a directory is refused)
    seed: int = 0  # seed of the adapter initialisation and of the random `tiny` preset
    lang: str = "fr"  # the new language (a file of experiments/lang/): sets data.learn
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment: str | None = None  # name of the experiment file this run came from (informational)


CHOICES = {
    "method.name": METHOD_NAMES,
    "method.gate": (None, *GATES),
    "method.init": (None, *INITS),
    "method.gate_init": GATE_INITS,
    "method.placement": PLACEMENTS,
    "data.mixing": MIXINGS,
    "backbone.dtype": ("float32", "bfloat16", "float16"),
    "optim.schedule": ("cosine", "constant"),
    "trainer.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
    "trainer.strategy": ("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed"),
    "trainer.precision": ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed"),
    "trainer.nan_policy": ("stop", "skip"),
    "trainer.fsdp_sharding": ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"),
    "trainer.deepspeed_stage": (1, 2, 3),
}
POSITIVE = ("optim.lr_multiplier", "trainer.max_steps", "trainer.accumulate_grad_batches", "eval.max_length", "eval.batch_size",
            "method.lr")
# key -> (lowest, highest, what it is): ranges, not only types (a negative warm-up or a 500% budget is a typo)
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "optim.warmup_steps": (0, None, "a number of steps"),
    "optim.weight_decay": (0, None, "a non-negative decay"),
    "optim.beta1": (0, 0.999999, "an Adam beta in [0, 1)"),
    "optim.beta2": (0, 0.999999, "an Adam beta in [0, 1)"),
    "optim.eps": (1e-30, None, "a positive epsilon"),
    "optim.min_lr_ratio": (0, 1, "a fraction of the peak lr in [0, 1]"),
    "optim.grad_clip": (0, None, "a non-negative norm (0 disables clipping)"),
    "method.alpha": (0, None, "a non-negative loss weight"),
    "method.beta": (0, None, "a non-negative loss weight"),
    "method.lora_alpha_ratio": (1e-30, None, "a positive ratio"),
    "trainer.num_nodes": (1, None, "a number of nodes"),
    "trainer.log_every_n_steps": (1, None, "a number of steps"),
    "trainer.checkpoint_every_n_steps": (0, None, "a number of steps (0: only the last checkpoint)"),
    "trainer.num_threads": (0, None, "a number of threads (0: torch's default)"),
    "trainer.global_batch_tokens": (0, None, "a number of tokens (0: off)"),
    "trainer.min_free_gb": (0, None, "GiB"),
    "eval.every_n_steps": (0, None, "a number of steps (0: only at start and end)"),
    "eval.max_docs": (1, None, "a number of documents"),
    "data.seq_len": (2, None, "a number of tokens"),
    "data.batch_size": (1, None, "a number of sequences"),
    "data.num_workers": (0, None, "a number of worker processes"),
}


def check_range(key: str, value: Any, low: float | None, high: float | None, what: str) -> None:
    """ConfigError naming ``key`` when ``value`` lies outside [low, high] (None: unbounded)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]" if low is not None else f"<= {high:g}"
        raise ConfigError(f"bad value {key}={value!r}: must be {bounds} ({what})")


def group_choices(group: str) -> list[str]:
    folder = EXPERIMENTS / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")) if folder.is_dir() else []


def _group_file(group: str, choice: str) -> Path:
    path = EXPERIMENTS / group / f"{choice}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {group} {choice!r}; valid choices: {', '.join(group_choices(group))} "
                          f"(files in {EXPERIMENTS / group})")
    return path


def load_yaml_mapping(path: Path) -> DictConfig:
    """A YAML file the user gives, as a mapping; a syntax error, binary content or a top-level list is one
    ConfigError naming the file (before any work)."""
    import yaml

    try:
        node = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException, ValueError) as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError(f"{path}: not valid YAML ({first}); fix the file") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got a list; fix the file")
    return node


def _load_group(group: str, choice: str) -> DictConfig:
    node = load_yaml_mapping(_group_file(group, choice))
    defaults = node.pop("defaults", None) if isinstance(node, DictConfig) else None
    merged = OmegaConf.create()
    for item in defaults or []:  # a group file can pull in other groups' files: defaults: [{method: neutral}]
        for g, c in dict(item).items():
            merged = OmegaConf.merge(merged, _load_group(g, c))
    return OmegaConf.merge(merged, node)


def _load_experiment(choice: str) -> tuple[DictConfig, dict[str, str]]:
    """An experiments/experiment/<choice>.yaml file: (its own keys, the group choices of its `defaults:`)."""
    path = _group_file("experiment", choice)
    node = load_yaml_mapping(path)
    picked: dict[str, str] = {}
    for item in node.pop("defaults", None) or []:
        for g, c in dict(item).items():
            if g not in GROUPS or g == "experiment":
                raise ConfigError(f"{path}: defaults may pick {', '.join(g for g in GROUPS if g != 'experiment')}, "
                                  f"not {g!r}")
            picked[g] = str(c)
    return node, picked


def compose(overrides: list[str] | None = None) -> RunConfig:
    """Defaults (experiments/config.yaml) + group choices + dotted overrides -> validated RunConfig."""
    overrides = list(overrides or [])
    schema = OmegaConf.structured(RunConfig)
    cfg = OmegaConf.merge(schema, OmegaConf.load(EXPERIMENTS / "config.yaml")) if (EXPERIMENTS / "config.yaml").is_file() \
        else schema
    choices: dict[str, str] = {}
    dotted: list[str] = []
    for arg in overrides:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value (e.g. method=neutral trainer.max_steps=50)")
        key, value = arg.split("=", 1)
        key = key.lstrip("+-")
        if key in GROUPS:
            choices[key] = value
        else:
            dotted.append(f"{key}={value}")
    try:
        # An experiment file names group choices (its `defaults:`) and pins keys of its own: the command line's
        # group choices win over its choices, its keys win over the groups', dotted overrides win over all.
        experiment = None
        if "experiment" in choices:
            experiment, picked = _load_experiment(choices["experiment"])
            choices = {**picked, **choices}
        defaults = {"method": DEFAULT_METHOD, "lang": "fr"}
        for group in ("backbone", "trainer", "method", "lang"):
            choice = choices.get(group, defaults.get(group))
            if choice is None:
                continue
            cfg = OmegaConf.merge(cfg, _load_group(group, choice))
            if group == "lang":
                cfg.lang = choice
        if experiment is not None:
            cfg = OmegaConf.merge(cfg, experiment)
            cfg.experiment = choices["experiment"]
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotted))
    except ConfigKeyError as e:
        key = getattr(e, "full_key", None) or str(e)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(schema, parent) if parent else schema
        valid = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else ""
        raise ConfigError(f"unknown config key {key!r}; valid keys{' under ' + parent if parent else ''}: {valid}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).split("\n")[0]
        raise ConfigError(f"bad config value{' for ' + repr(key) if key else ''}: {msg}") from None
    run: RunConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    validate(run)
    return run


def _non_finite(value: Any, key: str = "") -> str | None:
    """The dotted key of the first inf/nan number below ``value`` (inf and nan pass every `> 0` check)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return key
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


LOGGERS = ("tensorboard", "csv", "wandb")


def logger_problem(names: list[str]) -> str | None:
    """Why trainer.loggers cannot be built (unknown name, wandb not installed), else None."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        return f"bad value trainer.loggers: unknown logger {unknown[0]!r}; valid choices: {', '.join(LOGGERS)}"
    if "wandb" in names:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            return ("trainer.loggers names wandb, which is not installed: pip install 'nr-lightning[wandb]' "
                    "(or drop wandb from trainer.loggers)")
    return None


def validate(cfg: RunConfig) -> None:
    node = OmegaConf.structured(cfg)  # built once: it is the slow part of compose()
    bad = _non_finite(OmegaConf.to_container(node))
    if bad:
        raise ConfigError(f"bad value {bad}={OmegaConf.select(node, bad)!r}: numbers in the config must be finite")
    for key, valid in CHOICES.items():
        value = OmegaConf.select(node, key)
        if value not in valid:
            raise ConfigError(f"bad value {key}={value!r}; valid choices: {', '.join(str(v) for v in valid)}")
    for key in POSITIVE:
        value = OmegaConf.select(node, key)
        if not value or value <= 0:
            raise ConfigError(f"bad value {key}={value!r}: must be > 0")
    for key, (low, high, what) in RANGES.items():
        check_range(key, OmegaConf.select(node, key), low, high, what)
    kind = method_class(cfg.method.name)
    if (cfg.method.budget <= 0 or cfg.method.budget > 1) and not kind.trains_backbone:
        raise ConfigError(f"bad value method.budget={cfg.method.budget}: a fraction of the backbone's non-embedding "
                          f"parameters in (0, 1], e.g. 0.2")
    if cfg.method.init_divisor is not None and cfg.method.init_divisor <= 0:
        raise ConfigError(f"bad value method.init_divisor={cfg.method.init_divisor}: must be > 0 (or null)")
    if not 0.0 <= cfg.data.p <= 1.0:
        raise ConfigError(f"bad value data.p={cfg.data.p}: the English probability must be in [0, 1]")
    gate = cfg.method.gate or kind.default_gate or "none"
    if gate == "elu" and cfg.method.beta > 0:
        # The BCE trains sigmoid(g) as a classifier while the forward pass gates with ELU(g): driving g -> -inf
        # on English makes ELU(g) -> -1, which flips the residual instead of closing it (docs/method.md).
        raise ConfigError(f"method.beta={cfg.method.beta} with gate=elu: the gate BCE would push ELU(g) to -1 on "
                          "English (a flipped residual, not a closed one); use method.gate=sigmoid (or relu) with "
                          "method.beta > 0, or method.beta=0 with the ELU gate")
    problem = logger_problem(cfg.trainer.loggers)
    if problem:
        raise ConfigError(problem)
    problem = stratified_problem(cfg.data.mixing, cfg.data.p, cfg.data.batch_size)
    if problem:
        raise ConfigError(problem)
    langs = group_choices("lang")
    if langs and cfg.lang not in langs:
        raise ConfigError(f"unknown lang {cfg.lang!r}; valid choices: {', '.join(langs)}")


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: RunConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def from_dict(d: dict) -> RunConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), d))  # type: ignore[return-value]


# ConfigError, REPO and EXPERIMENTS stay importable from here (their homes: errors.py, paths.py)
__all__ = ["EXPERIMENTS", "REPO", "RunConfig", "ConfigError", "compose", "to_yaml", "to_dict", "from_dict", "GROUPS"]

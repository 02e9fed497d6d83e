"""How a run is laid out on hardware: world size, gradient accumulation, Lightning strategy, memory plan.

*Memory plan* here (and only here): the dry-run layout and per-GPU memory table of :func:`dry_run`; a training
run's ``plan.txt`` is its run summary (training/train.py), the data's per-sequence languages are its mixing
decisions (data/packing.py).

``trainer.dry_run=true`` calls :func:`dry_run`: it builds the backbone on the meta device (no weights are
allocated, so a 2B model plans in a second on a laptop), extends it with ``nrl.extend`` for the exact
parameter counts, and prints per-GPU memory for every method × strategy, without training.

Backbones: everything ``load_backbone`` accepts (a local HF directory, a ``config.json``, a hub id) plus
shape-only presets of the paper's backbones that exist only for planning (:data:`SHAPE_PRESETS`).

Memory model (per GPU, bytes; ``wb`` = bytes per weight of ``backbone.dtype``; extension weights take the
backbone's dtype, AdamW keeps two states per trainable weight in the same dtype):

    weights    = (backbone + extension) * wb        gradients = trainable * wb (DDP: bucket views, no copy)
    optimizer  = 2 * trainable * wb
    FSDP FULL_SHARD divides weights, gradients and optimizer by the world size N and adds two gathered
    decoder layers; SHARD_GRAD_OP (~ZeRO-2) divides only gradients and optimizer. With use_orig_params a
    layer's gradient shard covers its frozen weights too (see memory_estimate).
    activations ≈ B*S*L*(2*(8d + 2*d_kv) + 2*(d + 4F) + 8d) [+ adapter: B*S*L*2*(d + 4w)]; with activation
    checkpointing only each layer's input (B*S*L*2d) plus one layer's activations are kept.
    logits      = B*S*V*10 (bf16 logits, fp32 upcast and log-softmax for the cross entropy)

It is an estimate (no allocator fragmentation, CUDA context ~0.5 GiB, NCCL buffers): leave ~10-20% headroom.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, to_dict
from ..registry import METHODS, method_class

GIB = 2**30
METHOD_ORDER = METHODS


def _shape_presets() -> dict[str, Any]:
    from transformers import GemmaConfig, LlamaConfig

    return {
        # The paper's 1B English-only / multilingual backbones: 16 layers, d 2048, FFN 5632, gated SiLU, GQA.
        # Head counts and untied embeddings are our assumption (the paper gives neither).
        "paper-1b": LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                                num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096,
                                tie_word_embeddings=False, hidden_act="silu"),
        # Gemma-2B (google/gemma-2b config): 18 layers, d 2048, FFN 16384, gated tanh-GELU, MQA, tied 256k vocab.
        "gemma-2b": GemmaConfig(vocab_size=256000, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                                num_attention_heads=8, num_key_value_heads=1, head_dim=256,
                                max_position_embeddings=8192, hidden_act="gelu_pytorch_tanh",
                                tie_word_embeddings=True),
        # SmolLM2-135M (the embedded default), for planning without converting the GGUF first.
        "smollm2-135m": LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                    tie_word_embeddings=True, hidden_act="silu"),
    }


SHAPE_PRESETS = ("paper-1b", "gemma-2b", "smollm2-135m", "tiny")


# ----------------------------------------------------------------------------------------------- batch layout


def world_size(cfg: RunConfig) -> int:
    """devices × num_nodes as Lightning will see it ("auto"/-1: SLURM tasks per node, else visible GPUs, else 1)."""
    d = cfg.trainer.devices
    n: int
    if isinstance(d, (list, tuple)):
        n = len(d)
    elif d in ("auto", -1, "-1", None):
        env = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
        if env.isdigit():
            n = int(env)
        elif cfg.trainer.accelerator in ("gpu", "cuda", "auto"):
            import torch

            n = max(1, torch.cuda.device_count())
        else:
            n = 1
    elif isinstance(d, str) and "," in d:
        n = len([x for x in d.split(",") if x.strip()])
    else:
        n = int(d)
    return n * int(cfg.trainer.num_nodes)


def tokens_per_step(cfg: RunConfig) -> int:
    """Global batch in tokens: world size × micro-batch × seq_len × accumulation."""
    return world_size(cfg) * cfg.data.batch_size * cfg.data.seq_len * cfg.trainer.accumulate_grad_batches


def solve_accumulation(cfg: RunConfig) -> int:
    """accumulate_grad_batches = global_batch_tokens / (devices × nodes × batch_size × seq_len).

    Sets it on ``cfg`` and returns it; no-op when ``trainer.global_batch_tokens`` is 0. Fails when the global
    batch is not a multiple of one micro-step's tokens, or contradicts an explicit accumulate_grad_batches.
    """
    t = cfg.trainer
    if not t.global_batch_tokens:
        return t.accumulate_grad_batches
    ws = world_size(cfg)
    per = ws * cfg.data.batch_size * cfg.data.seq_len
    accum, rest = divmod(int(t.global_batch_tokens), per)
    if rest or accum < 1:
        lo, hi = max(1, accum), accum + 1
        raise ConfigError(
            f"trainer.global_batch_tokens={t.global_batch_tokens} is not a multiple of devices×nodes×batch_size×"
            f"seq_len = {ws}×{cfg.data.batch_size}×{cfg.data.seq_len} = {per} tokens; use {lo * per} "
            f"(accumulate {lo}) or {hi * per} (accumulate {hi}), or change data.batch_size")
    if t.accumulate_grad_batches not in (1, accum):
        raise ConfigError(f"trainer.accumulate_grad_batches={t.accumulate_grad_batches} contradicts "
                          f"trainer.global_batch_tokens={t.global_batch_tokens} (which needs {accum}); set only one")
    t.accumulate_grad_batches = accum
    return accum


# ----------------------------------------------------------------------------------------------- strategies


def _layer_classes(model: Any) -> set[type]:
    """The decoder-layer classes (HF ``_no_split_modules``): FSDP's wrapping and checkpointing unit."""
    from ..extension.arch import _base_model

    base = _base_model(model)
    names = set(getattr(base, "_no_split_modules", None) or [])
    classes = {type(m) for m in base.modules() if type(m).__name__ in names}
    if not classes:  # fall back to the type of the decoder's layers
        layers = getattr(getattr(base, "model", base), "layers", None)
        classes = {type(layers[0])} if layers is not None and len(layers) else set()
    return classes


def build_strategy(cfg: RunConfig, model: Any = None) -> Any:
    """The Lightning strategy for ``trainer.strategy``, with defaults that suit a frozen backbone + adapters.

    ddp: gloo on CPU, NCCL on GPU. fsdp: ``use_orig_params=True`` (a frozen backbone and trainable adapters
    share one flat parameter per decoder layer), one FSDP unit per decoder layer, full state dicts (the
    adapter-only checkpoint filter needs real names), optional activation checkpointing per layer.
    deepspeed: ZeRO stage ``trainer.deepspeed_stage`` when the package is installed.
    """
    t = cfg.trainer
    if t.strategy in ("auto", "ddp_spawn"):
        return t.strategy
    if t.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        cpu = t.accelerator == "cpu"
        return DDPStrategy(process_group_backend="gloo" if cpu else None, find_unused_parameters=False,
                           gradient_as_bucket_view=True)
    if t.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        layers = _layer_classes(model) if model is not None else set()
        return FSDPStrategy(auto_wrap_policy=layers or None, use_orig_params=True,
                            activation_checkpointing_policy=layers if t.activation_checkpointing and layers else None,
                            sharding_strategy=t.fsdp_sharding, state_dict_type="full", limit_all_gathers=True)
    if t.strategy == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ConfigError("trainer.strategy=deepspeed needs the `deepspeed` package (not installed); "
                              "use trainer.strategy=fsdp (trainer.fsdp_sharding=SHARD_GRAD_OP is ZeRO-2-like)") from None
        from lightning.pytorch.strategies import DeepSpeedStrategy

        return DeepSpeedStrategy(stage=t.deepspeed_stage)
    raise ConfigError(f"unknown trainer.strategy {t.strategy!r}")


def enable_activation_checkpointing(model: Any, cfg: RunConfig) -> bool:
    """Non-FSDP strategies: HF gradient checkpointing (non-reentrant, so frozen inputs are fine). FSDP does it
    per wrapped layer through its own policy instead."""
    if not cfg.trainer.activation_checkpointing or cfg.trainer.strategy == "fsdp":
        return False
    from ..extension.arch import _base_model

    _base_model(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return True


# ----------------------------------------------------------------------------------------------- meta model


def backbone_config(name: str, trust_remote_code: bool = False) -> Any:
    """A transformers config for a shape preset, a local HF directory / config.json, or a hub id."""
    from transformers import AutoConfig

    from ..backbone import cache_dir, tiny_llama_config

    if name == "tiny":
        return tiny_llama_config()
    presets = _shape_presets()
    if name in ("smollm2-135m", "smollm2-135m-en"):  # the English base has the embedded backbone's shape
        local = cache_dir() / "backbones" / name / "config.json"
        return AutoConfig.from_pretrained(str(local.parent)) if local.is_file() else presets["smollm2-135m"]
    if name in presets:
        return presets[name]
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".json":
        import json

        d = json.loads(p.read_text(encoding="utf-8"))
        return AutoConfig.for_model(d.pop("model_type"), **d)
    if p.exists() or name.startswith((".", "/", "~")):
        if not p.exists():
            raise ConfigError(f"backbone {name!r} does not exist; give a HF directory, a config.json, a hub id or "
                              f"one of the shape presets {', '.join(SHAPE_PRESETS)}")
        return AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - offline hub, typo: say what is accepted
        raise ConfigError(f"cannot read a config for backbone {name!r} ({type(e).__name__}); use a local HF "
                          f"directory, a config.json or a shape preset: {', '.join(SHAPE_PRESETS)}") from None


def meta_model(cfg: RunConfig, method: str | None = None) -> Any:
    """The extended model with every tensor on the meta device: exact parameter counts, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    from .. import extend

    conf = backbone_config(cfg.backbone.name, cfg.backbone.trust_remote_code)
    dtype = getattr(torch, cfg.backbone.dtype)
    m = cfg.method
    method = method or m.name
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf, dtype=dtype)
        same = method == m.name
        model = extend(model, method=method, budget=m.budget, gate=m.gate if same else None,
                       init=m.init if same else None, init_divisor=m.init_divisor, placement=m.placement,
                       lora_alpha_ratio=m.lora_alpha_ratio)
    return model


# ----------------------------------------------------------------------------------------------- memory plan


def _shape(model: Any) -> dict[str, int]:
    from ..extension.arch import _base_model

    c = _base_model(model).config
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return {"layers": c.num_hidden_layers, "d": c.hidden_size, "ffn": c.intermediate_size, "vocab": c.vocab_size,
            "d_q": heads * head_dim, "d_kv": (getattr(c, "num_key_value_heads", None) or heads) * head_dim}


def memory_estimate(report: dict, shape: dict, cfg: RunConfig, strategy: str, n_gpus: int,
                    activation_checkpointing: bool, layer_params: int) -> dict[str, float]:
    """Per-GPU GiB of weights, gradients, optimizer states, activations and logits (module docstring).

    FSDP note: with ``use_orig_params=True`` a decoder layer's frozen weights and its adapter share one flat
    parameter, and FSDP allocates that flat parameter's gradient in full: an adapter run's gradient shards are
    as large as the whole layers', not just the adapters' (optimizer states stay adapter-sized).
    """
    wb = 2 if cfg.backbone.dtype in ("bfloat16", "float16") else 4
    L = shape["layers"]
    total = report["backbone_total"] + report["extension"]
    trainable = report["trainable"]
    layer = layer_params + report["extension"] / L  # one decoder layer incl. its extension
    finetune = trainable >= report["backbone_total"]
    if strategy == "ddp":  # replicated; gradient_as_bucket_view=True: the DDP buckets are the gradients
        weights, grads, optim = total * wb, trainable * wb, 2 * trainable * wb
    else:
        flat_grads = (total if finetune else L * layer) * wb / n_gpus + layer * wb  # + one unsharded layer
        optim = 2 * trainable * wb / n_gpus
        gathered = 2 * layer * wb  # the current and the prefetched layer, unsharded
        weights = (total * wb / n_gpus + gathered) if strategy == "fsdp" else total * wb
        grads = flat_grads
    B, S, d, F = cfg.data.batch_size, cfg.data.seq_len, shape["d"], shape["ffn"]
    per_layer_token = 2 * (7 * d + shape["d_q"] + 2 * shape["d_kv"]) + 2 * (d + 4 * F) + 8 * d
    width = report.get("width") or 0
    if width:
        per_layer_token += 2 * (d + 4 * width)
    acts = B * S * (L * 2 * d + per_layer_token) if activation_checkpointing else B * S * L * per_layer_token
    logits = B * S * shape["vocab"] * 10
    out = {"weights": weights, "gradients": grads, "optimizer": optim, "activations": acts, "logits": logits}
    out = {k: v / GIB for k, v in out.items()}
    out["total"] = sum(out.values())
    return out


STRATEGY_ROWS = (("ddp", "DDP"), ("fsdp_grad_op", "FSDP SHARD_GRAD_OP / ZeRO-2"), ("fsdp", "FSDP FULL_SHARD"))


def memory_rows() -> tuple[str, ...]:
    """One method per distinct memory footprint (the adapter methods share one row)."""
    return tuple(dict.fromkeys(method_class(m).memory_row or m for m in METHODS))


def memory_table(cfg: RunConfig, methods: tuple[str, ...] | None = None) -> dict:
    """Parameter counts and per-GPU memory of each method under each strategy, with and without
    activation checkpointing, for the run's backbone, micro-batch and world size."""
    from ..extension import parameter_report

    methods = memory_rows() if methods is None else methods
    n = world_size(cfg)
    rows: dict[str, dict] = {}
    shape: dict[str, int] = {}
    for method in methods:
        model = meta_model(cfg, method)
        report = parameter_report(model)
        shape = _shape(model)
        layer_params = report["backbone_non_embedding"] // shape["layers"]
        mem = {}
        for key, _label in STRATEGY_ROWS:
            for ac in (False, True):
                mem[f"{key}{'+ac' if ac else ''}"] = memory_estimate(report, shape, cfg, key, n, ac, layer_params)
        wb = 2 if cfg.backbone.dtype in ("bfloat16", "float16") else 4
        ckpt = (report["trainable"] if method_class(method).trains_backbone else report["extension"]) * 3 * wb
        rows[method] = {"report": {k: report[k] for k in ("backbone_total", "backbone_non_embedding", "extension",
                                                           "trainable", "budget", "width", "rank")},
                        "memory_gib": mem, "checkpoint_gib": ckpt / GIB}
    return {"shape": shape, "world_size": n, "methods": rows}


def format_memory_plan(cfg: RunConfig, table: dict) -> str:
    """The dry-run text: the run's layout, then the memory table (GiB per GPU)."""
    t, d = cfg.trainer, cfg.data
    n = table["world_size"]
    tok = tokens_per_step(cfg)
    s = table["shape"]
    lines = [
        f"backbone {cfg.backbone.name} ({cfg.backbone.dtype}): {s['layers']} layers, d {s['d']}, FFN {s['ffn']}, "
        f"vocab {s['vocab']}, q/kv dims {s['d_q']}/{s['d_kv']}",
        f"world: {t.num_nodes} node(s) × {n // max(1, t.num_nodes)} device(s) = {n} ranks, strategy={t.strategy}, "
        f"precision={t.precision}, activation_checkpointing={t.activation_checkpointing}",
        f"batch: {n} ranks × {d.batch_size} seq × {d.seq_len} tokens × accumulate {t.accumulate_grad_batches} = "
        f"{tok:,} tokens/step; {t.max_steps:,} steps = {tok * t.max_steps / 1e9:.2f}B tokens",
        "",
        f"per-GPU memory estimate, GiB (micro-batch {d.batch_size} × {d.seq_len}; weights+grads+optimizer | "
        f"+activations+logits; +ac = activation checkpointing)",
    ]
    header = f"{'method':<10}{'trainable':>15}{'ckpt GiB':>10}" + "".join(f"{k:>22}" for k in
                                                                         ("ddp", "ddp+ac", "fsdp_grad_op", "fsdp",
                                                                          "fsdp+ac"))
    lines.append(header)
    for method, row in table["methods"].items():
        cells = []
        for key in ("ddp", "ddp+ac", "fsdp_grad_op", "fsdp", "fsdp+ac"):
            m = row["memory_gib"][key]
            states = m["weights"] + m["gradients"] + m["optimizer"]
            cells.append(f"{states:>9.1f} | {m['total']:>8.1f}")
        mark = "*" if method in (cfg.method.name, method_class(cfg.method.name).memory_row) else " "
        lines.append(f"{method + mark:<10}{row['report']['trainable']:>15,}{row['checkpoint_gib']:>10.2f}"
                     + "".join(f"{c:>22}" for c in cells))
    lines.append("(* = this run's method; adapters/sigmoid ≈ neutral; ckpt = weights + AdamW states that a "
                 "checkpoint holds: adapter-only for extension methods)")
    return "\n".join(lines)


def dry_run(cfg: RunConfig) -> dict:
    """Build the model on the meta device and print the run's memory plan (layout + memory table); train nothing."""
    solve_accumulation(cfg)
    methods = tuple(dict.fromkeys((*memory_rows(), cfg.method.name)))
    table = memory_table(cfg, methods)
    text = format_memory_plan(cfg, table)
    print(text, file=sys.stdout, flush=True)
    this = table["methods"][cfg.method.name]
    return {"dry_run": True, "config": to_dict(cfg), "world_size": table["world_size"],
            "tokens_per_step": tokens_per_step(cfg), "accumulate_grad_batches": cfg.trainer.accumulate_grad_batches,
            "parameters": this["report"], "memory_gib": this["memory_gib"], "table": table, "text": text}

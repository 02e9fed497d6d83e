"""Test helpers, imported as ``helpers`` (pyproject.toml puts tests/ on pytest's path, spawned workers included).

*Toy* models (``toy_config`` / ``toy_model``): random decoders of every supported architecture, vocabulary 256 by
default, for unit tests of extension code (seconds, no downloads, no tokenizer). They are not the
``backbone=tiny`` preset (nr_lightning/backbone.py: a random 2-layer Llama with SmolLM2's real 49k-token
tokenizer, for end-to-end CLI runs), which ``fake_run`` and the CLI tests use."""

from __future__ import annotations

import torch

from nr_lightning.registry import DEFAULT_METHOD

ARCHS = ("llama", "mistral", "qwen2", "gemma", "gemma2")


def toy_config(arch: str = "llama", vocab_size: int = 256, hidden: int = 64, layers: int = 2, ffn: int = 128):
    """A transformers config for a toy random model of the given architecture family (not ``backbone=tiny``)."""
    from transformers import AutoConfig

    if arch not in ARCHS:
        raise ValueError(f"unknown toy architecture {arch!r}; valid choices: {', '.join(ARCHS)}")
    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    extra = {"head_dim": hidden // 4} if arch.startswith("gemma") else {}
    return AutoConfig.for_model(arch, **common, **extra)


def toy_model(arch: str = "llama", seed: int = 0, **kw):
    """A toy random causal LM (vocab 256 unless ``vocab_size`` is given) in eval mode, as from_pretrained returns it."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(toy_config(arch, **kw), dtype=torch.float32)
    model.eval()
    return model


# The only skips the default suite may have: hardware a CPU-only machine lacks (FSDP needs a GPU in this
# Lightning). `.ci/run` sets NRL_STRICT_SKIPS=1, and tests/conftest.py then fails the run on any other skip.
HARDWARE_SKIPS = ("GPU", "CUDA", "FSDP")


def unexpected_skips(reasons: list[str]) -> list[str]:
    """The skip reasons that do not name missing hardware (GPU, CUDA, FSDP)."""
    return [r for r in reasons if not any(h in r for h in HARDWARE_SKIPS)]


def fixture_data_args(fixtures) -> list[str]:
    """Overrides pointing every data source of a fr-vs-en run at the small real text fixtures
    (shipped in nr_lightning/evaluation/data/text), so tiny runs need no `make data`."""
    from pathlib import Path

    t = Path(fixtures) / "text"
    return [f"data.new.path={t / 'sentences_fr_dev.jsonl'}", f"data.new.heldout={t / 'sentences_fr_dev.jsonl'}",
            f"data.en.path={t / 'sentences_en_dev.jsonl'}", f"data.en.heldout={t / 'sentences_en_dev.jsonl'}",
            f"data.heldout_en={t / 'pubmed_en_dev.jsonl'}"]


def fake_run(root, method: str = DEFAULT_METHOD, backbone: str = "tiny", **overrides: str):
    """A finished-run directory (config.yaml + extension/) on the tiny backbone (or a local HF directory given as
    `backbone`) with random, non-zero extension weights (zero-initialised W_out / LoRA B would hide mistakes),
    in about a second."""
    from pathlib import Path

    from nr_lightning.backbone import load_backbone
    from nr_lightning.config import compose, to_yaml
    from nr_lightning.extension import extend, save_extension

    group = ["backbone=tiny"] if backbone == "tiny" else [f"backbone.name={backbone}"]
    cfg = compose([f"method={method}", *group, *(f"{k}={v}" for k, v in overrides.items())])
    run = Path(root) / f"run-{method}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    base, _ = load_backbone(cfg.backbone.name, seed=cfg.seed)
    m = cfg.method
    model = extend(base, method=method, budget=m.budget, gate=m.gate, init=m.init, placement=m.placement,
                   lora_alpha_ratio=m.lora_alpha_ratio)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_extension(model, run / "extension")
    return run

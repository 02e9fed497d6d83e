"""Fixture corpora for sequence runs: <dir>/<lang>/{train,heldout}.jsonl from the shipped text fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpora(fixtures_dir: Path, tmp_path_factory) -> Path:
    text = fixtures_dir / "text"
    root = tmp_path_factory.mktemp("corpora")
    for lang in ("fr", "de", "en"):
        (root / lang).mkdir()
        for split in ("train", "heldout"):
            (root / lang / f"{split}.jsonl").symlink_to(text / f"sentences_{lang}_dev.jsonl")
    (root / "en_pubmed").mkdir()
    (root / "en_pubmed" / "heldout.jsonl").symlink_to(text / "pubmed_en_dev.jsonl")
    return root

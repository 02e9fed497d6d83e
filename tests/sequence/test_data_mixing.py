"""Several learned and retained languages: domain labels, balance within groups, per-language weights."""

from __future__ import annotations

import numpy as np
import pytest

from nr_lightning.data import MixedLanguageDataModule
from nr_lightning.data.packing import mixing_decisions


def test_uniform_decisions_unchanged_by_weights_support():
    """Without weights (or with equal weights) the decisions are the original modulo rule, bit for bit."""
    a = mixing_decisions(3, 0.3, 2, 2, 0, 5000)
    assert np.array_equal(a, mixing_decisions(3, 0.3, 2, 2, 0, 5000, weights=np.ones(4)))
    assert np.array_equal(a, mixing_decisions(3, 0.3, 2, 2, 0, 5000, weights=np.full(4, 2.5)))


def test_groups_balanced_and_weights_respected():
    n = 40_000
    langs = mixing_decisions(0, 0.2, 2, 2, 0, n)  # languages [fr, de | en, es]
    freq = np.bincount(langs, minlength=4) / n
    assert freq == pytest.approx([0.4, 0.4, 0.1, 0.1], abs=0.01)
    langs = mixing_decisions(0, 0.2, 2, 2, 0, n, weights=np.array([3.0, 1.0, 1.0, 1.0]))
    freq = np.bincount(langs, minlength=4) / n
    assert freq == pytest.approx([0.6, 0.2, 0.1, 0.1], abs=0.01)


def test_domain_labels_mark_every_language(corpora, smollm2_tokenizer):
    dm = MixedLanguageDataModule({"learn": ["fr", "de"], "retain": ["en"], "p": 0.3, "seq_len": 16,
                                  "batch_size": 8, "corpora_dir": str(corpora), "weights": {"de": 2.0}},
                                 smollm2_tokenizer)
    assert dm.languages == ["fr", "de", "en"] and dm.language_weights() == [1.0, 2.0, 1.0]
    it = iter(dm.train_dataloader())
    seen = set()
    for _ in range(6):
        b = next(it)
        for lang, dom in zip(b["lang"].tolist(), b["domain"].tolist()):
            assert dom == (0 if dm.languages[lang] == "en" else 1)
            seen.add(dm.languages[lang])
    assert seen == {"fr", "de", "en"}
    # a language moved to the retained group (e.g. an earlier stage under stacking) is original domain (0)
    dm2 = MixedLanguageDataModule({"learn": ["de"], "retain": ["en", "fr"], "p": 0.5, "seq_len": 16,
                                   "batch_size": 8, "corpora_dir": str(corpora)}, smollm2_tokenizer)
    b = next(iter(dm2.train_dataloader()))
    assert all(d == (0 if dm2.languages[x] in ("en", "fr") else 1) for x, d in zip(b["lang"].tolist(),
                                                                                   b["domain"].tolist()))


def test_bad_weights_refused(smollm2_tokenizer):
    with pytest.raises(ValueError, match="data.weights"):
        MixedLanguageDataModule({"learn": ["fr"], "weights": {"xx": 1.0}}, smollm2_tokenizer)
    with pytest.raises(ValueError, match="data.weights"):
        MixedLanguageDataModule({"learn": ["fr"], "weights": {"fr": 0.0}}, smollm2_tokenizer)

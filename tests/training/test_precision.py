"""trainer.precision=auto picks bf16 autocast only where it is measured faster."""

from __future__ import annotations

import nr_lightning.precision as prec


def test_auto_follows_the_measurement(monkeypatch):
    monkeypatch.setattr(prec, "bf16_speedup", lambda: 1.5)
    assert prec.resolve_precision("auto", "cpu")[0] == "bf16-mixed"
    monkeypatch.setattr(prec, "bf16_speedup", lambda: 0.6)
    assert prec.resolve_precision("auto", "cpu")[0] == "32-true"
    assert prec.resolve_precision("auto", "gpu")[0] == "bf16-mixed"
    assert prec.resolve_precision("32-true", "cpu") == ("32-true", "set in the config")


def test_speedup_is_a_positive_ratio():
    assert prec.bf16_speedup(n=64, k=64, m=64, repeats=2) > 0

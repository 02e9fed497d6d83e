"""trainer.precision=auto picks bf16 autocast only where it is measured faster."""

from __future__ import annotations

import nr_lightning.training.precision as prec


def test_auto_follows_the_measurement(monkeypatch):
    monkeypatch.setattr(prec, "bf16_speedup", lambda: 1.5)
    assert prec.resolve_precision("auto", "cpu")[0] == "bf16-mixed"
    monkeypatch.setattr(prec, "bf16_speedup", lambda: 0.6)
    assert prec.resolve_precision("auto", "cpu")[0] == "32-true"
    assert prec.resolve_precision("auto", "gpu")[0] == "bf16-mixed"
    assert prec.resolve_precision("32-true", "cpu") == ("32-true", "set in the config")


def _clock(monkeypatch, durations: list[float]) -> None:
    """perf_counter for bf16_speedup's timed blocks: block i (fp32, bf16, fp32, ...) lasts durations[i]."""
    ticks = iter(t for d in durations for t in (0.0, d))
    monkeypatch.setattr(prec.time, "perf_counter", lambda: next(ticks))


def test_speedup_is_fp32_over_bf16_best_of_repeats(monkeypatch):
    _clock(monkeypatch, [5.0, 1.0, 2.0, 3.0])  # repeat 1: fp32 5, bf16 1; repeat 2: fp32 2, bf16 3
    assert prec.bf16_speedup(n=8, k=8, m=8, repeats=2) == 2.0  # best fp32 2 / best bf16 1
    _clock(monkeypatch, [1.0, 4.0])
    assert prec.bf16_speedup(n=8, k=8, m=8, repeats=1) == 0.25  # bf16 slower: < 1, and auto keeps fp32

"""Benchmarks: the performance suite (`make bench` = `python benchmarks/suite.py`, docs/performance.md) and
standalone cross-checks against lm-evaluation-harness (docs/evaluation.md)."""

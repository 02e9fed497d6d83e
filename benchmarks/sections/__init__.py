"""The sections of the benchmark suite (benchmarks/suite.py lists them and runs them in order)."""

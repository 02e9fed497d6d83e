"""Evaluation: bits per byte on held-out text and multiple-choice benchmarks, both
numerically compatible with lm-evaluation-harness (see docs/evaluation.md)."""

from nr_lightning.evaluation.bpb import (
    BPBDetail,
    bits_per_byte,
    bits_per_byte_detail,
    rolling_windows,
    sharded_bits_per_byte,
)
from nr_lightning.evaluation.fixtures import FIXTURES, fixture_path
from nr_lightning.evaluation.lm_eval_adapter import HFLMCompatible, make_hflm
from nr_lightning.evaluation.multiple_choice import encode_pair, loglikelihoods, multiple_choice
from nr_lightning.evaluation.tasks import NORMALIZATIONS, TASKS, Task, TaskSpec, load_jsonl, load_task

__all__ = [
    "BPBDetail", "FIXTURES", "HFLMCompatible", "NORMALIZATIONS", "TASKS", "Task", "TaskSpec", "bits_per_byte", "bits_per_byte_detail",
    "encode_pair", "fixture_path", "load_jsonl", "load_task", "loglikelihoods", "make_hflm", "multiple_choice", "rolling_windows",
    "sharded_bits_per_byte",
]

"""The benchmark suite runs end to end on a tiny model (it measures nothing here; `make bench` does)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "suite.py"


@pytest.fixture(scope="module")
def suite():
    """benchmarks/suite.py loaded from its path, as `python benchmarks/suite.py` (make bench) runs it; it makes
    the repository root importable, so its modules (benchmarks.common, ...) import after it."""
    spec = importlib.util.spec_from_file_location("nrl_bench_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_flops_per_token_matches_perf_anchors(suite):
    from benchmarks.common import flops_per_token

    # SmolLM2-135M shapes (docs/performance.md): N_f = 134.48 M matmul params, T = 256
    s = {"matmul_params": 134_479_872, "layers": 30, "attn_width": 576}
    adapter = flops_per_token(s, 21_250_000, 256, "frozen")
    assert adapter / 1e6 == pytest.approx(718.5, rel=2e-3)
    assert flops_per_token(s, 0, 256, "finetune") / 1e6 == pytest.approx(860.0, rel=2e-3)
    assert flops_per_token(s, 0, 512, "eval") / 1e6 == pytest.approx(304.3, rel=2e-3)


def test_quick_run_writes_results(suite, tmp_path):
    from benchmarks.results import TARGETS
    from benchmarks.sections.training import TRAIN_METHODS

    r = suite.main(["--quick", "--threads", "1", "--only", "train,data,eval", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["train"]["methods"]) == set(TRAIN_METHODS)
    for row in saved["train"]["methods"].values():
        assert row["tok_s"] > 0 and 0 < row["fraction_of_limit"]
    # our LoRA and the hand-written PEFT loop train the same number of parameters
    m = saved["train"]["methods"]
    assert m["lora"]["trainable"] == m["peft_loop"]["trainable"]
    assert m["finetune"]["gflop_per_token"] > m["neutral"]["gflop_per_token"]
    # all scoring paths give the same bpb
    rows = saved["eval"]["rows"]
    assert rows["ours"]["bpb"] == pytest.approx(rows["ours_full_logits"]["bpb"], abs=1e-6)
    if "lm_eval" in rows:
        assert rows["ours"]["bpb"] == pytest.approx(rows["lm_eval"]["bpb"], abs=1e-4)
    assert {t["target"] for t in r["targets"]} == {t[0] for t in TARGETS}
    d = saved["data"]  # the data path: every reader reads what it yields; a resume reads one batch at any position
    assert all(v["read_over_trained"] == 1.0 for v in d["reads"].values()) and set(d["reads"]) == {"1", "8"}
    assert {v["tokens_read"] for k, v in d["resume"].items() if isinstance(v, dict)} == {4 * 256}
    side = d["resume_real_corpora"]  # the shard path beside the previous path, at the same positions
    assert set(side["shards"]) == set(side["previous"]) and all(v["first_batch_s"] > 0 for v in side["previous"].values())
    assert d["throughput_1b"]["h100_1b_40mfu_tok_s"] > 0 and d["prepare"]["s_per_gb"] > 0
    assert "| target | value | met |" in (tmp_path / "results.md").read_text()


def test_unknown_section_fails(suite, tmp_path):
    with pytest.raises(SystemExit, match="unknown section"):
        suite.main(["--quick", "--only", "trian", "--out", str(tmp_path)])

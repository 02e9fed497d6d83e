"""`nrl` on lm-eval's own command line: a trained run, a local task YAML over our JSONL file, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fake_run

REPO = Path(__file__).resolve().parents[2]


def test_lm_eval_cli_scores_a_run_like_our_multiple_choice(tmp_path, fixtures_dir):
    pytest.importorskip("lm_eval")  # dev dependency
    run = fake_run(tmp_path, "neutral")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    p = subprocess.run([sys.executable, "-m", "nr_lightning.evaluation.lm_eval_model", "--model", "nrl",
                        "--model_args", f"run={run}", "--tasks", "nrl_arc_challenge_fr",
                        "--include_path", "nr_lightning/evaluation/lm_eval_tasks", "--limit", "6",
                        "--output_path", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    files = list((tmp_path / "out").rglob("results_*.json"))
    res = json.loads(files[0].read_text())["results"]["nrl_arc_challenge_fr"]

    from nr_lightning.evaluation import multiple_choice
    from nr_lightning.evaluation.evaluate import EvalRun, load_model

    model, tok, _ = load_model(EvalRun(run=str(run)))
    ours = multiple_choice(model, tok, "arc_challenge_fr", shots=0, limit=6, normalization="none")
    # lm-eval's acc = argmax of the summed log-likelihood, acc_norm = per-character normalised
    assert res["acc,none"] == pytest.approx(ours["acc_none"])
    assert res["acc_norm,none"] == pytest.approx(ours["acc_per_char"])
    # our standard error is lm-eval's (sample std of the 0/1 scores over sqrt(n))
    from nr_lightning.evaluation.multiple_choice import accuracy_stderr

    assert res["acc_stderr,none"] == pytest.approx(accuracy_stderr(round(ours["acc_none"] * 6), 6))
    assert res["acc_norm_stderr,none"] == pytest.approx(accuracy_stderr(round(ours["acc_per_char"] * 6), 6))

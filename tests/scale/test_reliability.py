"""Reliability guarantees of a training run (docs/reliability.md): nothing lost across resumes, damaged
inputs caught before work starts, one clear line per user error."""

from __future__ import annotations

import json

import pytest


def _curves(run_dir) -> list[dict]:
    return json.loads((run_dir / "curves.json").read_text())


def test_curves_survive_resume(tmp_path, fixtures_dir, h):
    """The forgetting curve (step-0 baseline included) is in the checkpoint: after a resume curves.json and
    metrics.json hold every point of the uninterrupted run."""
    from nr_lightning.train import main

    extra = ["eval.every_n_steps=2", "eval.at_start=true", "eval.max_length=64", "trainer.checkpoint_every_n_steps=2"]
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    ref = main(h.run_args(ref_dir, fixtures_dir, 6, *extra))
    assert [c["step"] for c in _curves(ref_dir)] == [0, 2, 4, 6]
    main(h.run_args(run, fixtures_dir, 4, *extra))  # stops at step 4, as a requeued job would
    resumed = main([*h.run_args(run, fixtures_dir, 6, *extra), "ckpt_path=last"])
    assert resumed["resumed_from"].endswith(".ckpt")
    got, want = _curves(run), _curves(ref_dir)
    assert [c["step"] for c in got] == [0, 2, 4, 6]
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k] == pytest.approx(w[k], abs=1e-4), (g["step"], k)
    assert json.loads((run / "metrics.json").read_text())["curves"] == got
    assert resumed["curves"] == got and ref["curves"] == want

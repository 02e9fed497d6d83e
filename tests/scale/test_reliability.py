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


def _flip_tensor_bytes(path) -> None:
    """Flip bytes in the middle of the largest tensor record (what a bad disk or copy does)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for i in range(start, start + 4):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_bit_flipped_newest_checkpoint_falls_back_with_warning(tmp_path):
    import os

    import torch

    from nr_lightning.checkpointing import resolve_checkpoint
    from nr_lightning.config import ConfigError

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    old, new = ckpts / "step000002.ckpt", ckpts / "last.ckpt"
    torch.save({"state_dict": {"w": torch.randn(4096)}, "global_step": 2}, old)
    torch.save({"state_dict": {"w": torch.randn(4096)}, "global_step": 4}, new)
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    assert resolve_checkpoint(tmp_path, "last") == new
    _flip_tensor_bytes(new)
    with pytest.warns(UserWarning, match=r"skipped damaged checkpoint\(s\) last.ckpt \(corrupt record"):
        assert resolve_checkpoint(tmp_path, "last") == old
    with pytest.raises(ConfigError, match="not a usable checkpoint: corrupt record"):
        resolve_checkpoint(tmp_path, str(new))


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this creates a file: proof that code ran


def test_checkpoint_loading_is_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    import torch

    from nr_lightning.checkpointing import AtomicCheckpointIO
    from nr_lightning.config import ConfigError

    marker = tmp_path / "code-ran"
    planted = tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "payload": _Planted(str(marker))}, planted)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ConfigError, match="not plain weights"):
        AtomicCheckpointIO().load_checkpoint(planted)
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3, "name": "x"}, good)
    assert AtomicCheckpointIO().load_checkpoint(good)["global_step"] == 3


@pytest.mark.parametrize("arg", ["method.lr=inf", "optim.grad_clip=nan", "data.p=-inf", "method.alpha=.inf"])
def test_non_finite_config_numbers_are_refused(arg):
    from nr_lightning.config import ConfigError, compose

    with pytest.raises(ConfigError, match=rf"bad value {arg.split('=')[0]}=.*must be finite"):
        compose([arg])

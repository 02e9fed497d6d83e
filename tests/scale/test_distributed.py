"""Multi-process training on CPU: DDP (gloo) equals one process with the same global batch; FSDP."""

from __future__ import annotations

import pytest

from nr_lightning.training.checkpointing import read_losses


def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path, fixtures_dir, h):
    from nr_lightning.training.train import main

    steps = 4
    # method.alpha=0: the sparsity loss averages over the *English tokens of a micro-batch*, so it does not
    # decompose over ranks (mean of per-rank means != global mean when ranks hold different English shares);
    # the LM cross entropy and the gate BCE average over all tokens and do.
    common = ["method.alpha=0", "trainer.checkpoint_every_n_steps=2"]
    ddp = h.run_cli(h.run_args(tmp_path / "ddp", fixtures_dir, steps, *common, "trainer.strategy=ddp",
                               "trainer.devices=2", "data.batch_size=2"))
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    assert "MEMBER: 1/2" in ddp.stderr and "MEMBER: 2/2" in ddp.stderr, "both ranks must run"
    a = read_losses(tmp_path / "ddp" / "losses.jsonl")
    assert sorted(a) == list(range(1, steps + 1)) and abs(a[steps] - a[1]) > 1e-2
    # one process with the doubled batch, and one reaching the same global batch by accumulation
    # (trainer.global_batch_tokens=256 = 1 device x 2 sequences x 64 tokens x accumulate 2)
    main(h.run_args(tmp_path / "single", fixtures_dir, steps, *common, "data.batch_size=4"))
    acc = main(h.run_args(tmp_path / "accum", fixtures_dir, steps, *common, "data.batch_size=2",
                          "trainer.global_batch_tokens=256"))
    assert acc["config"]["trainer"]["accumulate_grad_batches"] == 2
    for other in ("single", "accum"):
        b = read_losses(tmp_path / other / "losses.jsonl")
        assert sorted(b) == sorted(a)
        for s in a:
            assert a[s] == pytest.approx(b[s], abs=1e-4), (other, s, a[s], b[s])
    # the DDP run's checkpoint restores in a single process (ranks took disjoint sequences: 4 per step)
    import torch

    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["MixedLanguageDataModule"]["sequences_consumed"] == steps * 4


def test_fsdp_on_cpu_or_skip_with_reason(tmp_path, fixtures_dir, h):
    import lightning as L

    from nr_lightning.config import compose
    from nr_lightning.scale.plan import build_strategy

    cfg = compose(["trainer.strategy=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"])
    try:
        L.Trainer(accelerator="cpu", devices=2, strategy=build_strategy(cfg), logger=False)
    except (ValueError, RuntimeError) as e:
        pytest.skip(f"FSDP is not available on CPU in this Lightning: {e}")
    proc = h.run_cli(h.run_args(tmp_path / "fsdp", fixtures_dir, 2, "trainer.strategy=fsdp", "trainer.devices=2",
                                "data.batch_size=2"))
    assert proc.returncode == 0, proc.stderr[-4000:]

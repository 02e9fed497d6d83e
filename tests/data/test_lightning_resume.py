"""The DataModule inside a real Lightning Trainer: checkpoint + resume continues the exact stream."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch


class Recorder(L.LightningModule):
    """Records every batch it trains on (lr 0: only the data path matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(torch.cat([batch["input_ids"], batch["domain"][:, None], batch["lang"][:, None]], 1))
        return (self.w * batch["input_ids"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(tmp_path, **kw):
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path), **kw)


def _reference(make_dm, n_batches):
    dm = make_dm(p=0.3)
    rows = []
    for b in itertools.islice(iter(dm.train_dataloader()), n_batches):
        rows.append(torch.cat([b["input_ids"], b["domain"][:, None], b["lang"][:, None]], 1))
    return rows


@pytest.mark.parametrize("accum,limit", [(2, None), (1, 3)])
def test_fit_checkpoint_resume_continues_stream(make_dm, tmp_path, accum, limit):
    ref = _reference(make_dm, 8 * accum)
    extra = {"limit_train_batches": limit} if limit else {}
    m1, dm1 = Recorder(), make_dm(p=0.3)
    t1 = _trainer(tmp_path, max_steps=4, accumulate_grad_batches=accum, **extra)
    t1.fit(m1, datamodule=dm1)
    ckpt = tmp_path / "half.ckpt"
    t1.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)["MixedLanguageDataModule"]
    assert state["sequences_consumed"] == 4 * accum * 4 and state["global_step"] == 4
    assert all(torch.equal(a, b) for a, b in zip(m1.seen, ref))  # also across epoch boundaries (limit=3)

    m2, dm2 = Recorder(), make_dm(p=0.3)
    t2 = _trainer(tmp_path, max_steps=8, accumulate_grad_batches=accum, **extra)
    t2.fit(m2, datamodule=dm2, ckpt_path=str(ckpt))
    assert len(m2.seen) == 4 * accum
    assert all(torch.equal(a, b) for a, b in zip(m2.seen, ref[4 * accum:]))

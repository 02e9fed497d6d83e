"""MFU: FLOPs per trained token of an extended model, the device peak and their ratio."""

from __future__ import annotations

import pytest
import torch

from helpers import toy_model
from nr_lightning import extend
from nr_lightning.training.throughput import mfu, peak_flops, train_flops_per_token


def test_flops_per_token_counts_frozen_and_trained_matmuls():
    model = toy_model("llama")  # 2 layers, d=64, ffn=128, vocab 256, untied head
    n_backbone = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attn = 4 * 32 * 64 * 2
    extend(model, method="adapters", width=8)
    n_adapter = 2 * 3 * 64 * 8
    assert train_flops_per_token(model, 32) == 4 * (n_backbone + n_adapter) + 2 * n_adapter + 3 * attn
    finetune = toy_model("llama")
    extend(finetune, method="finetune")
    assert train_flops_per_token(finetune, 32) == 6 * n_backbone + 3 * attn


def test_mfu_and_peak():
    assert mfu(1000.0, 6e9, 1e15) == pytest.approx(0.006)
    assert peak_flops(torch.device("cpu"), "bf16-mixed") is None  # no published CPU peak: no MFU logged

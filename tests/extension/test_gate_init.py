"""The block gate's own initialisation (paper Sec. 3: the low variance is for W_in and W_gate, not w_b)."""

from __future__ import annotations

import math

import pytest
import torch

import nr_lightning as nrl
from helpers import toy_model
from nr_lightning.extension import adapters
from nr_lightning.extension.adapter import ResidualAdapter

IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("gate_init", ["he", "low_variance"])
@pytest.mark.parametrize("method", ["sigmoid", "neutral"])
def test_identity_at_init_for_both_gate_inits(method, gate_init):
    ref = _logits(toy_model())
    model = nrl.extend(toy_model(), method=method, gate_init=gate_init)
    assert torch.equal(_logits(model), ref)


def test_gate_init_changes_only_the_block_gate_weight():
    torch.manual_seed(3)
    he = nrl.extend(toy_model(), method="neutral", gate_init="he")
    torch.manual_seed(3)
    lv = nrl.extend(toy_model(), method="neutral", gate_init="low_variance")
    a, b = dict(he.named_parameters()), dict(lv.named_parameters())
    assert a.keys() == b.keys()
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ and all(k.endswith("block_gate.weight") for k in differ), differ
    assert len(differ) == len(adapters(he))  # every layer's w_b, nothing else


def test_gate_init_variances():
    d, layers = 512, 8
    torch.manual_seed(0)
    he = ResidualAdapter(d, 64, gate="elu", init="low_variance", init_divisor=layers, gate_init="he")
    torch.manual_seed(0)
    lv = ResidualAdapter(d, 64, gate="elu", init="low_variance", init_divisor=layers, gate_init="low_variance")
    # He's variance 2/d for w_b; the adapter's low variance 1/(d L) for W_in/W_gate (and w_b when asked)
    assert he.block_gate.weight.std().item() == pytest.approx(math.sqrt(2 / d), rel=0.15)
    assert lv.block_gate.weight.std().item() == pytest.approx(math.sqrt(1 / (d * layers)), rel=0.15)
    assert torch.equal(he.w_in.weight, lv.w_in.weight) and torch.equal(he.w_gate.weight, lv.w_gate.weight)
    assert he.w_in.weight.std().item() == pytest.approx(math.sqrt(1 / (d * layers)), rel=0.15)
    assert torch.equal(he.block_gate.bias, torch.zeros(1))


def test_gate_init_round_trips_through_save_and_load(tmp_path):
    model = nrl.extend(toy_model(), method="neutral", gate_init="low_variance")
    nrl.save_extension(model, tmp_path / "ext")
    again = nrl.load_extension(toy_model(), tmp_path / "ext")
    assert again.nrl_config.gate_init == "low_variance"
    assert torch.equal(_logits(again), _logits(model))


def test_bad_gate_init_lists_choices():
    with pytest.raises(ValueError, match="he, low_variance"):
        nrl.extend(toy_model(), method="neutral", gate_init="xavier")

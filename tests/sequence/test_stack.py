"""Stacked adapter stages: exact identity when a stage is added, frozen earlier stages, save/load, router."""

from __future__ import annotations

import pytest
import torch

from helpers import toy_model
from nr_lightning import adapters, extend, local_losses, parameter_report, save_extension
from nr_lightning.extension import (
    add_router,
    add_stage,
    load_stack,
    load_stages,
    n_stages,
    save_stages,
    scale_stages,
)
from nr_lightning.extension.api import backbone_non_embedding

IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def _train(model, steps: int = 3, domain: int = 1) -> None:
    """A few AdamW steps (with weight decay) on the trainable weights, CE + local losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(steps):
        out = model(input_ids=IDS, labels=IDS)
        local = local_losses(model, torch.full((2,), domain))
        (out.loss + 0.1 * local["sparsity"] + local["gate_bce"]).backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("method", ["neutral", "adapters"])
def test_new_zero_initialised_stage_equals_previous_model_exactly(method):
    model = extend(toy_model(), method, budget=0.1)
    _train(model)
    before = _logits(model)
    add_stage(model)
    assert n_stages(model) == 2
    assert torch.equal(_logits(model), before)
    _train(model)  # stage 2 trains ...
    after2 = _logits(model)
    assert not torch.equal(after2, before), "stage 2 trained"
    add_stage(model)  # ... and a third, zero-initialised stage still changes nothing
    assert n_stages(model) == 3
    assert torch.equal(_logits(model), after2)


def test_training_a_stage_keeps_earlier_stages_and_backbone_bit_identical():
    model = extend(toy_model(), "neutral", budget=0.1)
    _train(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_stage(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".nrl_adapter." in n for n in trainable)
    _train(model, steps=4, domain=0)
    now = dict(model.named_parameters())
    for n, old in frozen.items():  # stage 0 moved from .nrl_adapter. to .nrl_stages.0.
        assert torch.equal(now[n.replace(".nrl_adapter.", ".nrl_stages.0.")], old), n
    changed = [n for n in trainable if n.endswith("w_out.weight") and now[n].abs().sum() > 0]
    assert changed, "the new stage trained"


def test_single_stage_tools_act_on_the_newest_stage():
    model = extend(toy_model(), "neutral", budget=0.1)
    n_nonemb = backbone_non_embedding(model)
    report = parameter_report(model)
    _train(model)
    add_stage(model)
    assert backbone_non_embedding(model) == n_nonemb  # stages never count as backbone
    new_report = parameter_report(model)
    assert (new_report["extension"], new_report["trainable"], new_report["backbone_total"]) == \
        (report["extension"], report["trainable"], report["backbone_total"])
    newest = adapters(model)
    assert len(newest) == 2 and all(a.w_out.weight.abs().sum() == 0 for a in newest)
    model(input_ids=IDS)
    losses = local_losses(model, torch.zeros(2))
    assert losses["sparsity"].item() == 0.0  # the zero-initialised newest stage, not stage 0
    assert losses["gate_bce"].requires_grad
    single_names = {n for n, _ in extend(toy_model(), "neutral", budget=0.1).named_parameters()}
    assert any(".nrl_adapter." in n for n in single_names) and not any("nrl_stages" in n for n in single_names)


def test_save_stages_and_load_roundtrip(tmp_path):
    model = extend(toy_model(), "sigmoid", budget=0.1)
    _train(model)
    save_extension(model, tmp_path / "first")
    add_stage(model, budget=0.05)
    _train(model)
    save_stages(model, tmp_path / "stack")
    assert (tmp_path / "stack" / "sequence.json").is_file() and (tmp_path / "stack" / "stage_1").is_dir()
    loaded = load_stack(toy_model(), tmp_path / "stack")
    assert torch.equal(_logits(loaded.eval()), _logits(model))
    assert n_stages(loaded) == 2 and loaded.nrl_config.width == model.nrl_config.width
    # stage 0's folder is a plain single-stage extension, loadable on its own
    first = load_stages(toy_model(), [tmp_path / "stack" / "stage_0"])
    ref = load_stages(toy_model(), [tmp_path / "first"])
    assert torch.equal(_logits(first.eval()), _logits(ref.eval()))


def test_add_stage_refuses_lora():
    with pytest.raises(ValueError, match="adapter method"):
        add_stage(extend(toy_model(), "lora", rank=2))


def test_zero_router_is_the_average_of_stages(tmp_path):
    model = extend(toy_model(), "neutral", budget=0.1)
    _train(model)
    add_stage(model)
    _train(model)
    save_stages(model, tmp_path)
    averaged = _logits(scale_stages(load_stack(toy_model(), tmp_path), [0.5, 0.5]))
    add_router(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".nrl_router." in n for n in trainable)
    torch.testing.assert_close(_logits(model), averaged, rtol=1e-5, atol=1e-6)


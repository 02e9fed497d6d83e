"""O-LoRA penalty: lambda * sum_prev sum_modules |A_new A_prev^T|, as a loss term of the ExtensionModule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nr_lightning import extend
from nr_lightning.extension.olora import OLoRAPenalty, lora_a_matrices, module_key, olora_penalty


def test_penalty_equals_hand_computation():
    a_new = {"m1": torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]]), "m2": torch.tensor([[1.0, 1.0]])}
    prev1 = {"m1": torch.tensor([[3.0, 0.0, 1.0]]), "m2": torch.tensor([[2.0, -1.0], [0.5, 0.5]])}
    prev2 = {"m1": torch.tensor([[0.0, 1.0, 1.0]])}  # m2 absent in stage 2: skipped
    # m1 x prev1: [1*3+0+0, 0+0+1] = [3, 1] -> 4;  m2 x prev1: [2-1, 0.5+0.5] = [1, 1] -> 2
    # m1 x prev2: [0+2+0, 0-1+1] = [2, 0] -> 2
    assert olora_penalty(a_new, [prev1, prev2]).item() == pytest.approx(8.0)
    assert OLoRAPenalty([prev1, prev2], lam=0.25)(_FakeModel(a_new))["olora"].item() == pytest.approx(2.0)


def test_penalty_zero_for_orthogonal_subspaces():
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    a_new, a_prev = q[:4], q[4:10]  # rows of an orthogonal matrix: disjoint subspaces
    assert olora_penalty({"m": a_new}, [{"m": a_prev}]).item() == pytest.approx(0.0, abs=1e-5)
    assert olora_penalty({"m": a_new}, [{"m": a_new}]).item() > 1.0


def test_penalty_on_peft_model_has_gradients(toy_llama):
    model = extend(toy_llama, "lora", rank=2)
    a = lora_a_matrices(model)
    assert len(a) == 2 * 3 and all(k.startswith("model.layers.") and k.endswith("_proj") for k in a)
    prev = {k: torch.randn_like(v) for k, v in a.items()}
    term = OLoRAPenalty([prev], lam=0.5)(model)["olora"]
    term.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert term.item() > 0 and all(g is not None and g.abs().sum() > 0 for g in grads)
    saved = {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.ones(1)}
    assert module_key(next(iter(saved))) == "model.layers.0.mlp.up_proj"


def test_extension_module_adds_extra_loss(toy_llama):
    from nr_lightning.config import compose
    from nr_lightning.training.module import ExtensionModule

    model = extend(toy_llama, "lora", rank=2)
    model.nrl_extra_loss = lambda m: {"olora": torch.tensor(3.0)}
    module = ExtensionModule(model, compose(["method=lora", "backbone=tiny"]))
    module.log = lambda *a, **k: None  # no trainer attached
    module._trainer = SimpleNamespace(world_size=1, accumulate_grad_batches=1, global_step=0, training=True)
    ids = torch.randint(0, 256, (2, 8))
    loss = module.training_step({"input_ids": ids, "domain": torch.ones(2, dtype=torch.long)}, 0)
    ce = model(input_ids=ids, labels=ids).loss
    assert loss.item() == pytest.approx(ce.item() + 3.0, rel=1e-5)


class _FakeModel(torch.nn.Module):
    def __init__(self, mats: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for k, v in mats.items():
            self.register_parameter(f"{k}_lora_A_weight", torch.nn.Parameter(v))
        self.mats = mats

    def named_parameters(self, *a, **k):  # PEFT-style names
        return iter((f"base_model.model.{k}.lora_A.default.weight", v) for k, v in self.mats.items())

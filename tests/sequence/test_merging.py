"""Merge utilities against hand computations on toy tensors; LoRA/adapter merges on tiny models."""

from __future__ import annotations

import pytest
import torch

from helpers import toy_model
from nr_lightning import extend, save_extension
from nr_lightning.extension.merging import merge_stages, merge_task_tensors
from nr_lightning.extension.stack import stage_adapters

T1 = torch.tensor([1.0, -2.0, 3.0, -0.5])
T2 = torch.tensor([-1.5, 1.0, 2.0, 0.2])


def test_linear_is_the_average():
    assert torch.equal(merge_task_tensors([T1, T2], "linear"), (T1 + T2) / 2)
    assert torch.allclose(merge_task_tensors([T1, T2], "linear", weights=[1.0, 0.5]), T1 + 0.5 * T2)


def test_ties_hand_computed():
    # trim to the top 50% magnitudes: T1 -> [0, -2, 3, 0], T2 -> [-1.5, 0, 2, 0]
    # elected sign (sign of the sum [-1.5, -2, 5, 0]): [-, -, +, + (ties >= 0)]
    # disjoint mean over agreeing entries: [-1.5/1, -2/1, (3+2)/2, 0]
    expected = torch.tensor([-1.5, -2.0, 2.5, 0.0])
    assert torch.equal(merge_task_tensors([T1, T2], "ties", density=0.5), expected)
    # magnitude = the trim alone, then the weighted sum
    assert torch.equal(merge_task_tensors([T1, T2], "magnitude", density=0.5, weights=[1.0, 1.0]),
                       torch.tensor([-1.5, -2.0, 5.0, 0.0]))


def test_dare_hand_computed_with_fixed_seed():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    got = merge_task_tensors([T1, T2], "dare", density=0.5, seed=7)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is left untouched"
    torch.manual_seed(7)  # PEFT draws torch.bernoulli from the global generator, in task order
    m1 = torch.bernoulli(torch.full_like(T1, 0.5))
    m2 = torch.bernoulli(torch.full_like(T2, 0.5))
    expected = 0.5 * (T1 * m1 / 0.5) + 0.5 * (T2 * m2 / 0.5)
    assert torch.equal(got, expected)
    assert torch.equal(merge_task_tensors([T1, T2], "dare", density=0.5, seed=7), got)  # reproducible
    big = [torch.randn(4000), torch.randn(4000)]
    kept = merge_task_tensors([big[0], torch.zeros(4000)], "dare", density=0.3, seed=1, weights=[1.0, 1.0])
    assert (kept != 0).float().mean().item() == pytest.approx(0.3, abs=0.03)  # ~density kept, rescaled
    assert torch.allclose(kept[kept != 0], big[0][kept != 0] / 0.3)


def test_dare_ties_and_bad_method():
    # no drop (density 1): TIES' election on the untrimmed tensors; sum [-0.5, -1, 5, -0.3] -> signs [-, -, +, -]
    out = merge_task_tensors([T1, T2], "dare_ties", density=1.0)
    assert torch.equal(out, torch.tensor([-1.5, -2.0, 2.5, -0.5]))
    with pytest.raises(ValueError, match="valid choices: linear, ties"):
        merge_task_tensors([T1], "svd")


def _trained_lora(seed: int):
    backbone = toy_model()  # reseeds to 0: seed after it, or every "stage" is the same LoRA
    torch.manual_seed(seed)
    model = extend(backbone, "lora", rank=2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return model


def test_lora_linear_merge_matches_peft_merge(tmp_path):
    models = [_trained_lora(s) for s in (1, 2)]
    lora = [{n: p.detach().clone() for n, p in m.named_parameters() if "lora_" in n} for m in models]
    assert all(not torch.equal(lora[0][n], lora[1][n]) for n in lora[0]), "two different stages"
    for i, m in enumerate(models):
        save_extension(m, tmp_path / f"s{i}")
    # unequal weights: a merge that swaps, drops or duplicates a stage gives other weights
    merged = merge_stages(toy_model(), [tmp_path / "s0", tmp_path / "s1"], "linear", weights=[1.0, 0.5])
    # reference: PEFT merges each LoRA into the base weights; the second one's delta is weighted 0.5
    base = dict(toy_model().named_parameters())
    ref = models[0].merge_and_unload()
    delta = {n: p - base[n] for n, p in models[1].merge_and_unload().named_parameters()}
    for n, p in ref.named_parameters():
        p.data += 0.5 * delta[n]
    for (n, p), (_, q) in zip(merged.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_adapter_merges(tmp_path):
    for i in range(2):
        backbone = toy_model()  # reseeds to 0: seed after it, or both stages are the same adapter
        torch.manual_seed(i)
        m = extend(backbone, "neutral", budget=0.1)
        with torch.no_grad():
            for a in m.modules():
                if hasattr(a, "w_out"):
                    a.w_out.weight.normal_(0, 0.1)
        save_extension(m, tmp_path / f"s{i}")
    paths = [tmp_path / "s0", tmp_path / "s1"]
    linear = merge_stages(toy_model(), paths, "linear", weights=[0.5, 2.0])
    layer = linear.model.layers[0].mlp
    from safetensors.torch import load_file

    key = "model.layers.0.mlp.nrl_adapter.w_out.weight"
    w0, w1 = (load_file(str(p / "extension.safetensors"))[key] for p in paths)
    assert not torch.equal(w0, w1), "two different stages"
    # each stage keeps its own weights, scaled by its own weight, in order
    first, second = stage_adapters(layer)
    assert torch.equal(first.w_out.weight, 0.5 * w0)
    assert torch.equal(second.w_out.weight, 2.0 * w1)
    dare = merge_stages(toy_model(), paths, "dare", density=0.5, seed=0)
    w = dare.model.layers[0].mlp.nrl_stages[0].w_out.weight
    assert 0 < (w == 0).float().mean() < 1
    with pytest.raises(ValueError, match="not meaningful for adapters"):
        merge_stages(toy_model(), paths, "ties")

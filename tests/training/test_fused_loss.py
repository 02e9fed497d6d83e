"""The fused head + cross-entropy loss equals HF's causal-LM loss, in value and in every gradient."""

from __future__ import annotations

import pytest
import torch

import nr_lightning as nrl
from helpers import toy_model
from nr_lightning.config import compose
from nr_lightning.evaluation.scoring import hidden_and_head
from nr_lightning.training.loss import causal_lm_loss, linear_cross_entropy
from nr_lightning.training.module import ExtensionModule


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen2"])
@pytest.mark.parametrize("method", ["neutral", "lora", "finetune"])
def test_fused_loss_equals_hf_loss_and_grads(arch, method):
    model = nrl.extend(toy_model(arch), method=method, budget=0.2)
    with torch.no_grad():  # non-zero adapter / LoRA outputs so their gradients are not trivially tied
        for n, p in model.named_parameters():
            if "w_out" in n or "lora_B" in n:
                p.normal_(0, 0.05)
    ids = torch.randint(0, model.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    ref = model(input_ids=ids, labels=ids).loss
    ref.backward()
    g_ref = _grads(model)
    model.zero_grad(set_to_none=True)
    fused = hidden_and_head(model)
    assert fused is not None
    loss = causal_lm_loss(ids, fused)
    loss.backward()
    g = _grads(model)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert g.keys() == g_ref.keys() and g
    for n in g:
        assert torch.allclose(g[n], g_ref[n], atol=1e-6, rtol=1e-4), n


def test_chunking_and_softcap_match_reference():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    h = torch.randn(23, 8, requires_grad=True)
    t = torch.randint(0, 50, (23,))
    for cap in (None, 2.0):
        z = head(h)
        z = torch.tanh(z / cap) * cap if cap else z
        ref = torch.nn.functional.cross_entropy(z, t)
        gh, gw, gb = torch.autograd.grad(ref, [h, head.weight, head.bias])
        got = linear_cross_entropy(h, head, t, softcap=cap, chunk_rows=5)  # 23 rows: 4 full chunks + 3
        fh, fw, fb = torch.autograd.grad(got * 3.0, [h, head.weight, head.bias])  # grad_out scaling too
        assert got.item() == pytest.approx(ref.item(), rel=1e-6)
        for a, b in ((fh, gh), (fw, gw), (fb, gb)):
            assert torch.allclose(a, 3.0 * b, atol=1e-6)


def test_module_uses_fused_loss_and_option_turns_it_off():
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "domain": torch.tensor([0, 1])}
    values = {}
    for flag in ("true", "false"):
        cfg = compose(["method=neutral", f"trainer.fused_loss={flag}"])
        module = ExtensionModule(nrl.extend(toy_model("llama"), method="neutral", budget=0.2), cfg)
        assert (module._fused is not None) == (flag == "true")
        values[flag] = module.compute_loss(batch)[0].item()
    assert values["true"] == pytest.approx(values["false"], rel=1e-6)
    fsdp = compose(["method=neutral", "trainer.strategy=fsdp"])
    assert ExtensionModule(nrl.extend(toy_model("llama"), method="neutral"), fsdp)._fused is None

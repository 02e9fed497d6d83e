"""Behaviour of the extension core (docs/method.md), on toy random decoders (tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

import nr_lightning as nrl
from helpers import ARCHS, toy_model
from nr_lightning.extension import ADAPTER_METHODS, METHODS, adapters, find_ffns

IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_identity_at_init(arch, method):
    ref = logits(toy_model(arch))
    model = nrl.extend(toy_model(arch), method=method)
    assert torch.equal(logits(model), ref), "extended model must equal the backbone bit for bit at step 0"


@pytest.mark.parametrize("method", ["serial"])
def test_identity_serial_placement(method):
    ref = logits(toy_model())
    assert torch.equal(logits(nrl.extend(toy_model(), method="neutral", placement=method)), ref)


@pytest.mark.parametrize("method", ["lora", "adapters", "sigmoid", "neutral"])
@pytest.mark.parametrize("budget", [0.05, 0.2, 0.5])
def test_budget_within_one_percent(method, budget):
    # d=512: the width granularity allows 1%. One LoRA rank is ~1/(budget*d) of the budget (4% at 5%, d=512):
    # rounding alone exceeds 1% there, so LoRA is checked at 5% only on the real backbone's shape below.
    if method == "lora" and budget < 0.1:
        budget = 0.2
    model = nrl.extend(toy_model(hidden=512, ffn=1024, layers=2), method=method, budget=budget)
    rep = nrl.parameter_report(model)
    assert abs(rep["budget"] - budget) / budget < 0.01, rep
    n_emb = 256 * 512 * (1 if model.get_base_model().config.tie_word_embeddings else 2) if method == "lora" else \
        256 * 512 * (1 if model.config.tie_word_embeddings else 2)
    assert rep["backbone_non_embedding"] == rep["backbone_total"] - n_emb  # embeddings and head excluded
    assert "non-embedding" in rep["denominator"]
    assert rep["trainable"] == rep["extension"]


def test_budget_on_smollm2_shape():
    """On the default backbone's shape (d 576, f 1536, 30 layers) the paper's 20% lands within 0.5%."""
    from nr_lightning.extension.api import solve_rank, solve_width

    n, layers, d, f = 106_203_456, 30, 576, 1536
    h = solve_width(0.2, n, layers, d, gated=True)
    assert abs(layers * (3 * d * h + d + 1) / n - 0.2) < 0.001
    for b in (0.05, 0.1, 0.2, 0.5):
        r = solve_rank(b, n, layers, d, f)
        assert abs(layers * 3 * r * (d + f) / n - b) / b < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_only_extension_trains_and_backbone_untouched(method):
    model = nrl.extend(toy_model(), method=method)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if method == "finetune":
        assert len(trainable) == len(before)
    elif method == "lora":
        assert trainable and all("lora_" in n for n in trainable)
        assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {"gate_proj", "up_proj", "down_proj"}
    else:
        assert trainable and all(".nrl_adapter." in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # two steps: B / W_out move in step 1, A / W_in in step 2
        out = model(input_ids=IDS, labels=IDS)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    if method == "finetune":
        assert changed
    else:
        assert changed and changed <= set(trainable)


def _nonzero_adapters(model):
    with torch.no_grad():
        for a in adapters(model):
            a.w_out.weight.normal_(0, 0.1)


def test_sparsity_loss_semantics():
    model = nrl.extend(toy_model(), method="neutral")
    _nonzero_adapters(model)
    model(input_ids=IDS)
    only_new = nrl.local_losses(model, torch.tensor([1, 1]))
    assert only_new["sparsity"].item() == 0.0
    mixed = nrl.local_losses(model, torch.tensor([0, 1]))
    assert mixed["sparsity"].item() > 0
    # by hand: mean over layers of mean over the English row's tokens of |phi(g) A(x)|_1 / d
    expected = torch.stack([a.last_residual_l1[0].mean() for a in adapters(model)]).mean()
    torch.testing.assert_close(mixed["sparsity"], expected)
    # per-token labels work too and agree
    tok = nrl.local_losses(model, torch.tensor([0, 1])[:, None].expand(2, IDS.shape[1]))
    torch.testing.assert_close(tok["sparsity"], mixed["sparsity"])


def test_gradients_flow_to_gate_and_adapter():
    model = nrl.extend(toy_model(), method="neutral")
    _nonzero_adapters(model)
    model(input_ids=IDS)
    losses = nrl.local_losses(model, torch.tensor([0, 1]))
    (losses["sparsity"] + losses["gate_bce"]).backward()
    for a in adapters(model):
        assert a.block_gate.weight.grad.abs().sum() > 0
        assert a.w_out.weight.grad.abs().sum() > 0
        assert a.w_in.weight.grad.abs().sum() > 0


def test_gate_bce_uses_domain_labels():
    model = nrl.extend(toy_model(), method="sigmoid")
    model(input_ids=IDS)
    dom = torch.tensor([0, 1])
    bce = nrl.local_losses(model, dom)["gate_bce"]
    by_hand = torch.stack([
        torch.nn.functional.binary_cross_entropy(torch.sigmoid(a.last_gate_logits),
                                                 dom[:, None].expand_as(a.last_gate_logits).float())
        for a in adapters(model)]).mean()
    torch.testing.assert_close(bce, by_hand)
    flipped = nrl.local_losses(model, 1 - dom)["gate_bce"]
    assert not torch.allclose(bce, flipped)


@pytest.mark.parametrize("method", ["finetune", "lora", "adapters"])
def test_local_losses_zero_without_gate_or_adapter(method):
    model = nrl.extend(toy_model(), method=method)
    model(input_ids=IDS)
    losses = nrl.local_losses(model, torch.tensor([0, 1]))
    assert losses["gate_bce"].item() == 0.0
    if method != "adapters":
        assert losses["sparsity"].item() == 0.0


def test_low_variance_init_variance():
    layers, d = 8, 1024
    model = nrl.extend(toy_model(hidden=d, ffn=64, layers=layers, vocab_size=32), method="neutral", width=512)
    w = torch.cat([a.w_in.weight.flatten() for a in adapters(model)] + [a.w_gate.weight.flatten() for a in adapters(model)])
    assert abs(w.var().item() - 1 / (d * layers)) / (1 / (d * layers)) < 0.02
    he = nrl.extend(toy_model(hidden=d, ffn=64, layers=2, vocab_size=32), method="adapters", width=512)
    w = torch.cat([a.w_in.weight.flatten() for a in adapters(he)])
    assert abs(w.var().item() - 2 / d) / (2 / d) < 0.02
    div = nrl.extend(toy_model(hidden=d, ffn=64, layers=2, vocab_size=32), method="neutral", width=512, init_divisor=4)
    w = torch.cat([a.w_in.weight.flatten() for a in adapters(div)])
    assert abs(w.var().item() - 1 / (d * 4)) / (1 / (d * 4)) < 0.02
    assert all(a.w_out.weight.abs().sum() == 0 for a in adapters(model))


@pytest.mark.parametrize("method", METHODS)
def test_save_load_roundtrip(tmp_path, method):
    model = nrl.extend(toy_model(), method=method)
    with torch.no_grad():  # make the extension non-trivial
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    expected = logits(model)
    nrl.save_extension(model, tmp_path / "ext")
    loaded = nrl.load_extension(toy_model(), tmp_path / "ext")
    assert torch.equal(logits(loaded), expected)
    size = (tmp_path / "ext" / "extension.safetensors").stat().st_size
    backbone_bytes = sum(p.numel() * 4 for p in toy_model().parameters())
    if method == "finetune":
        assert size < 1.1 * backbone_bytes
    else:
        ext_bytes = nrl.parameter_report(model)["extension"] * 4
        assert size < ext_bytes + 64_000 and size < 0.5 * backbone_bytes


def test_load_into_wrong_backbone_fails(tmp_path):
    nrl.save_extension(nrl.extend(toy_model(), method="neutral"), tmp_path / "ext")
    with pytest.raises(ValueError, match="different backbone"):
        nrl.load_extension(toy_model(hidden=128), tmp_path / "ext")
    with pytest.raises(FileNotFoundError, match="save_extension"):
        nrl.load_extension(toy_model(), tmp_path / "missing")


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "prefix"}, "valid choices: finetune, lora, adapters, sigmoid, neutral"),
    ({"method": "neutral", "gate": "tanh"}, "valid choices: elu, relu, sigmoid, none"),
    ({"method": "neutral", "init": "xavier"}, "valid choices: low_variance, he"),
    ({"method": "neutral", "placement": "both"}, "valid choices: parallel, serial"),
    ({"method": "neutral", "budget": -1}, "budget"),
    ({"method": "lora", "gate": "elu"}, "adapter methods"),
])
def test_bad_options_list_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nrl.extend(toy_model(), **kwargs)


def test_unsupported_architecture_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(ValueError, match="GPT2"):
        nrl.extend(model, method="neutral")


def test_extend_twice_refused():
    model = nrl.extend(toy_model(), method="neutral")
    with pytest.raises(ValueError, match="already extended"):
        nrl.extend(model, method="neutral")


@pytest.mark.parametrize("arch, act", [("llama", "silu"), ("gemma", "gelu_pytorch_tanh"), ("gemma2", "gelu_pytorch_tanh")])
def test_adapter_follows_backbone_activation(arch, act):
    model = nrl.extend(toy_model(arch), method="neutral")
    assert {a.activation for a in adapters(model)} == {act}


def test_gate_spectra():
    model = nrl.extend(toy_model(layers=3), method="neutral")
    spec = nrl.gate_spectra(model)
    assert len(spec["backbone"]) == len(spec["adapter"]) == 3
    w = find_ffns(model)[0].module.gate_proj.weight
    torch.testing.assert_close(spec["backbone"][0], torch.linalg.svdvals(w.detach()))
    a = adapters(model)[0].w_gate.weight
    assert spec["adapter"][0].shape[0] == min(a.shape)
    assert torch.all(spec["adapter"][0][:-1] >= spec["adapter"][0][1:])
    lora = nrl.extend(toy_model(layers=3), method="lora")
    spec = nrl.gate_spectra(lora)
    assert len(spec["backbone"]) == 3 and spec["adapter"] == []


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_generate_works(method):
    model = nrl.extend(toy_model(), method=method)
    out = model.generate(IDS[:1, :4], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)

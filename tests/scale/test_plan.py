"""Global batch solving, strategy construction and the meta-device dry-run memory plan."""

from __future__ import annotations

import sys

import pytest

from nr_lightning.config import ConfigError, compose
from nr_lightning.scale.plan import build_strategy, solve_accumulation, tokens_per_step, world_size


def test_global_batch_tokens_solves_accumulation():
    cfg = compose(["trainer.devices=2", "trainer.num_nodes=2", "data.batch_size=4", "data.seq_len=512",
                   "trainer.global_batch_tokens=65536"])
    assert world_size(cfg) == 4
    assert solve_accumulation(cfg) == 8 and cfg.trainer.accumulate_grad_batches == 8
    assert tokens_per_step(cfg) == 65536
    paper = compose(["trainer=paper", "trainer.num_nodes=2", "data.batch_size=4",
                     "trainer.global_batch_tokens=262144"])  # SPEC: 64 x 4096 tokens, 2 nodes x 8 GPUs
    assert solve_accumulation(paper) == 1
    with pytest.raises(ConfigError, match=r"not a multiple .* 4×4×512 = 8192 tokens; use 57344 \(accumulate 7\)"):
        solve_accumulation(compose(["trainer.devices=2", "trainer.num_nodes=2", "data.batch_size=4",
                                    "data.seq_len=512", "trainer.global_batch_tokens=60000"]))
    with pytest.raises(ConfigError, match="contradicts"):
        solve_accumulation(compose(["trainer.accumulate_grad_batches=3", "trainer.global_batch_tokens=2048",
                                    "data.batch_size=4", "data.seq_len=256"]))
    untouched = compose(["trainer.accumulate_grad_batches=3"])
    assert solve_accumulation(untouched) == 3


def test_fsdp_strategy_defaults_wrap_decoder_layers(toy_llama):
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from nr_lightning import extend

    model = extend(toy_llama, method="neutral", budget=0.2)
    cfg = compose(["trainer.strategy=fsdp", "trainer.activation_checkpointing=true", "trainer.accelerator=gpu"])
    s = build_strategy(cfg, model)
    assert isinstance(s, FSDPStrategy)
    assert s.kwargs["use_orig_params"] is True  # frozen backbone + trainable adapters in one flat parameter
    policy = s.kwargs["auto_wrap_policy"]
    assert {c.__name__ for c in policy._module_classes} == {"LlamaDecoderLayer"}
    assert s._activation_checkpointing_kwargs
    assert s._state_dict_type == "full"
    ddp = build_strategy(compose(["trainer.strategy=ddp"]), model)
    assert isinstance(ddp, DDPStrategy) and ddp._process_group_backend == "gloo"


def test_deepspeed_without_the_package_is_a_config_error(toy_llama, monkeypatch):
    from nr_lightning import extend

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` fails, installed or not
    with pytest.raises(ConfigError, match="needs the `deepspeed` package"):
        build_strategy(compose(["trainer.strategy=deepspeed"]), extend(toy_llama, method="neutral", budget=0.2))


@pytest.mark.parametrize("backbone, layers, vocab, nonemb", [
    ("paper-1b", 16, 32000, 16 * (2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 5632 + 2 * 2048) + 2048),
    ("gemma-2b", 18, 256000, 18 * (2 * 2048 * 2048 + 2 * 2048 * 256 + 3 * 2048 * 16384 + 2 * 2048) + 2048),
])
def test_dry_run_plans_paper_backbones_on_meta(backbone, layers, vocab, nonemb, capsys):
    from nr_lightning.training.train import main

    out = main(["method=neutral", f"backbone.name={backbone}", "backbone.dtype=bfloat16", "trainer=paper",
                "trainer.num_nodes=2", "data.batch_size=4", "trainer.global_batch_tokens=262144",
                "trainer.dry_run=true"])
    assert out["dry_run"] and out["world_size"] == 16 and out["tokens_per_step"] == 64 * 4096
    rep = out["parameters"]
    assert rep["backbone_non_embedding"] == nonemb
    assert rep["budget"] == pytest.approx(0.2, abs=0.01)
    assert out["table"]["shape"]["layers"] == layers and out["table"]["shape"]["vocab"] == vocab
    mem = out["table"]["methods"]
    # sharding must shrink model states; finetune needs the most of them under DDP
    ddp_states = {m: sum(r["memory_gib"]["ddp"][k] for k in ("weights", "gradients", "optimizer"))
                  for m, r in mem.items()}
    fsdp_states = {m: sum(r["memory_gib"]["fsdp"][k] for k in ("weights", "gradients", "optimizer"))
                   for m, r in mem.items()}
    assert ddp_states["finetune"] > ddp_states["neutral"] and ddp_states["finetune"] > ddp_states["lora"]
    assert all(fsdp_states[m] < ddp_states[m] for m in mem)
    assert mem["neutral"]["memory_gib"]["ddp+ac"]["activations"] < mem["neutral"]["memory_gib"]["ddp"]["activations"]
    text = capsys.readouterr().out
    assert "per-GPU memory estimate" in text and "finetune" in text and "fsdp+ac" in text


def test_dry_run_unknown_backbone_is_clear():
    from nr_lightning.training.train import main

    with pytest.raises(ConfigError, match="shape presets|does not exist"):
        main(["backbone.name=./no/such/dir", "trainer.dry_run=true"])

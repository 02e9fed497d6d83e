"""Exports leave the framework: each exported model gives the framework model's logits (tiny backbone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import fake_run
from nr_lightning.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def make_run(root: Path, method: str, **overrides: str) -> Path:
    return fake_run(root, method, **overrides)


IDS = torch.tensor([[1, 5, 900, 42, 7, 3000, 11, 2]])


def framework_logits(run: Path) -> torch.Tensor:
    from nr_lightning.evaluation.evaluate import EvalRun, load_model

    model, _, _ = load_model(EvalRun(run=str(run)))
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _safetensors_only(out: Path) -> None:
    files = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".pth", ".ckpt"}, files


def test_adapters_export_is_a_plain_wider_hf_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from nr_lightning.extension.export import export

    run = make_run(tmp_path, "adapters")
    info = export(run, tmp_path / "hf")
    assert info["format"] == "hf"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")  # no trust_remote_code, no nr_lightning hooks
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.intermediate_size > 176
    assert model.model.layers[0].mlp.down_proj.in_features == model.config.intermediate_size
    with torch.no_grad():
        got = model(input_ids=IDS).logits
    ref = framework_logits(run)
    assert not torch.allclose(ref, framework_logits_backbone(run), atol=1e-3)  # the adapter changes the output
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    _safetensors_only(tmp_path / "hf")


def framework_logits_backbone(run: Path) -> torch.Tensor:
    from nr_lightning.backbone import load_backbone

    model, _ = load_backbone("tiny", seed=0)
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_lora_export_loads_in_peft_and_merged(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from nr_lightning.backbone import load_backbone
    from nr_lightning.extension.export import export

    run = make_run(tmp_path, "lora")
    ref = framework_logits(run)
    info = export(run, tmp_path / "peft")
    assert info["format"] == "peft" and (tmp_path / "peft" / "adapter_config.json").is_file()
    backbone, _ = load_backbone("tiny", seed=0)
    peft = PeftModel.from_pretrained(backbone, tmp_path / "peft").eval()
    with torch.no_grad():
        torch.testing.assert_close(peft(input_ids=IDS).logits, ref, atol=1e-5, rtol=1e-5)
    export(run, tmp_path / "merged", format="hf")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=IDS).logits, ref, atol=1e-4, rtol=1e-4)
    _safetensors_only(tmp_path / "peft")
    _safetensors_only(tmp_path / "merged")


def test_finetune_export_is_an_hf_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from nr_lightning.extension.export import export

    run = make_run(tmp_path, "finetune")
    export(run, tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, framework_logits(run), atol=1e-5, rtol=1e-5)
    _safetensors_only(tmp_path / "hf")


def test_gated_export_formats(tmp_path):
    """auto: an HF directory with modeling_nrl.py (tests/export/test_stock_loading.py loads it with transformers
    alone); extension: our own format through load_exported; peft refuses a non-LoRA run."""
    from nr_lightning.extension.export import export, load_exported

    run = make_run(tmp_path, "neutral")
    with pytest.raises(ConfigError, match="format=peft holds LoRA"):
        export(run, tmp_path / "peft", format="peft")
    info = export(run, tmp_path / "hf")
    assert info["format"] == "hf" and info["remote_code"] == "modeling_nrl.py" and "trust_remote_code=True" in info["loader"]
    assert (tmp_path / "hf" / "modeling_nrl.py").is_file()
    info = export(run, tmp_path / "ext", format="extension")
    assert info["format"] == "extension" and "load_exported" in info["loader"]
    model, _ = load_exported(tmp_path / "ext")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, framework_logits(run), atol=0, rtol=0)
    _safetensors_only(tmp_path / "ext")
    _safetensors_only(tmp_path / "hf")


def test_export_errors_name_the_problem(tmp_path):
    from nr_lightning.extension.export import main

    run = make_run(tmp_path, "sigmoid")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, match in (([f"run={run}", f"out={tmp_path / 'full'}"], "not empty"),
                        ([f"run={run}"], "out=DIR"),
                        ([f"run={run}", f"out={tmp_path / 'o'}", "format=onnx"], "valid choices: auto, peft")):
        with pytest.raises(ConfigError, match=match):
            main(args)
    # the CLI turns them into one `error:` line (one subprocess: interpreter start-up is the slow part)
    p = subprocess.run([sys.executable, "-m", "nr_lightning", "export", f"run={run}", f"out={tmp_path / 'o'}",
                        "format=peft"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "holds LoRA" in p.stderr, p.stderr[-2000:]


def test_model_card_front_matter_and_run_facts(tmp_path):
    import json

    from omegaconf import OmegaConf

    from nr_lightning.config import compose, to_dict
    from nr_lightning.extension.export import export
    from nr_lightning.extension.model_card import reproduce_command

    run = make_run(tmp_path, "neutral", **{"method.budget": "0.1", "data.p": "0.25"})
    curves = [{"step": 0, "eval/bpb_fr": 1.7, "eval/bpb_en": 0.95}, {"step": 40, "eval/bpb_fr": 1.4, "eval/bpb_en": 0.97}]
    (run / "metrics.json").write_text(json.dumps({"global_step": 40, "curves": curves,
                                                  "final_bpb": {"fr": 1.4, "en": 0.97}}))
    (run / "losses.jsonl").write_text("".join(json.dumps({"step": s, "tokens": 128}) + "\n" for s in range(40)))
    (run / "eval.json").write_text(json.dumps({"bpb": {"fr": 1.35, "en": 0.96}, "delta": {"bpb": {"fr": -0.36, "en": 0.012}},
                                               "tasks": {"arc_easy_fr": {"acc": 0.3, "acc_norm": 0.31, "n": 100, "shots": 5}}}))
    export(run, tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    front = OmegaConf.to_container(OmegaConf.create(card.split("---\n")[1]))
    assert front["library_name"] == "transformers" and front["language"] == ["en", "fr"]
    assert {"neutral", "budget-0.1", "custom_code"} <= set(front["tags"]) and front["nr_lightning"]["budget"] == 0.1
    assert "| fr | 1.3500 | -0.3600 |" in card and "| en | 0.9600 | +0.0120 |" in card  # eval.json wins, its own Δ
    assert "5,120 tokens" in card and "| arc_easy_fr | 0.3100 | 100 | 5 |" in card and "trust_remote_code=True" in card
    cmd = reproduce_command(to_dict(compose(["method=neutral", "backbone=tiny", "method.budget=0.1", "data.p=0.25"])))
    assert cmd.startswith("python -m nr_lightning.train method=neutral lang=fr ") and "method.budget=0.1" in cmd
    assert cmd in card
    (run / "eval.json").unlink()  # without an evaluation: the run's last eval, Δ against step 0 (the backbone)
    export(run, tmp_path / "peft-less")
    card = (tmp_path / "peft-less" / "README.md").read_text()
    assert "| fr | 1.4000 | -0.3000 |" in card and "| en | 0.9700 | +0.0200 |" in card

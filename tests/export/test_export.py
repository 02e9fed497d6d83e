"""Exports leave the framework: each exported model gives the framework model's logits (tiny backbone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nr_lightning.config import ConfigError
from nr_lightning.testing import fake_run

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

    from nr_lightning.export import export

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
    from nr_lightning.export import export

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

    from nr_lightning.export import export

    run = make_run(tmp_path, "finetune")
    export(run, tmp_path / "hf")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, framework_logits(run), atol=1e-5, rtol=1e-5)
    _safetensors_only(tmp_path / "hf")


def test_gated_export_uses_the_extension_format_and_refuses_hf(tmp_path):
    from nr_lightning.export import export, load_exported

    run = make_run(tmp_path, "neutral")
    with pytest.raises(ConfigError, match="block gate.*format=extension"):
        export(run, tmp_path / "hf", format="hf")
    with pytest.raises(ConfigError, match="format=peft holds LoRA"):
        export(run, tmp_path / "peft", format="peft")
    info = export(run, tmp_path / "ext")
    assert info["format"] == "extension" and "load_exported" in info["loader"]
    model, _ = load_exported(tmp_path / "ext")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, framework_logits(run), atol=0, rtol=0)
    _safetensors_only(tmp_path / "ext")


def test_export_errors_name_the_problem(tmp_path):
    from nr_lightning.export import main

    run = make_run(tmp_path, "sigmoid")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, match in (([f"run={run}", f"out={tmp_path / 'full'}"], "not empty"),
                        ([f"run={run}"], "out=DIR"),
                        ([f"run={run}", f"out={tmp_path / 'o'}", "format=onnx"], "valid choices: auto, peft")):
        with pytest.raises(ConfigError, match=match):
            main(args)
    # the CLI turns them into one `error:` line (one subprocess: interpreter start-up is the slow part)
    p = subprocess.run([sys.executable, "-m", "nr_lightning.export", f"run={run}", f"out={tmp_path / 'o'}",
                        "format=hf"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "block gate" in p.stderr, p.stderr[-2000:]

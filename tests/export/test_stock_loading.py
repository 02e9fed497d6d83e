"""Exports load the way users load them: stock transformers / PEFT, a fresh interpreter in which nr_lightning
cannot be imported, and the export directory moved elsewhere after writing. Logits and greedy generations
must equal the framework model's (tiny Llama preset and a local Gemma directory as backbones)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from helpers import fake_run, toy_model

IDS = torch.tensor([[1, 5, 900, 42, 7, 3000, 11, 2]])
NEW_TOKENS = 6

# Runs in a fresh `python -I` (no PYTHONPATH, no user site); the editable install would still find nr_lightning,
# so it is blocked outright: any import of it fails.
LOADER = textwrap.dedent('''
    import json, os, sys
    sys.modules["nr_lightning"] = None
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import AutoPeftModelForCausalLM, PeftModel

    ids = torch.tensor(json.loads(sys.argv[2]))
    out, refused = {}, {}
    for name, kind in json.loads(sys.argv[1]).items():
        d = os.path.abspath(name)
        models = {}
        if kind == "peft":
            models["explicit"] = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d + "/base_model"), d)
            cwd = os.getcwd()
            os.chdir(d)  # base_model_name_or_path = "base_model" resolves from the export directory
            models["auto"] = AutoPeftModelForCausalLM.from_pretrained(d)
            os.chdir(cwd)
        else:
            models["hf"] = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=kind == "remote")
            if kind == "remote":
                try:
                    AutoModelForCausalLM.from_pretrained(d, trust_remote_code=False)
                    refused[name] = False
                except ValueError:
                    refused[name] = True
        AutoTokenizer.from_pretrained(d)
        for how, m in models.items():
            m.eval()
            with torch.no_grad():
                out[f"{name}/{how}/logits"] = m(input_ids=ids).logits.contiguous()
                out[f"{name}/{how}/generate"] = m.generate(input_ids=ids, max_new_tokens=int(sys.argv[3]), do_sample=False,
                                                           pad_token_id=0).contiguous()
    save_file(out, "loaded.safetensors", metadata={"refused": json.dumps(refused)})
''')


def framework(run: Path):
    from nr_lightning.extension.export import _load_run

    model, _, _ = _load_run(run)
    with torch.no_grad():
        return (model(input_ids=IDS).logits,
                model.generate(input_ids=IDS, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0))


def stacked_run(root: Path) -> Path:
    """Two stages (neutral; then sigmoid, serial) mixed by a router: every piece of the stacked format."""
    from nr_lightning.backbone import load_backbone
    from nr_lightning.config import compose, to_yaml
    from nr_lightning.extension import add_router, add_stage, extend, save_stages

    cfg = compose(["method=neutral", "backbone=tiny"])
    run = root / "run-stack"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    model = extend(load_backbone("tiny", seed=cfg.seed)[0], method="neutral", budget=0.2)
    torch.manual_seed(2)
    for step in (lambda m: add_stage(m, method="sigmoid", placement="serial"), add_router, lambda m: m):
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.05)
        model = step(model)
    save_stages(model, run / "extension")
    return run


def test_every_export_loads_with_stock_tools_in_a_fresh_process_after_a_move(tmp_path):
    from nr_lightning.backbone import load_tokenizer

    tok = load_tokenizer("tiny")
    gemma = tmp_path / "gemma-backbone"  # a local backbone directory of another family (GELU FFN, own class)
    toy_model("gemma", vocab_size=len(tok)).save_pretrained(gemma)
    tok.save_pretrained(gemma)
    runs = {"lora": fake_run(tmp_path / "r1", "lora", backbone=str(gemma)),
            "neutral": fake_run(tmp_path / "r2", "neutral"),
            "gemma_neutral": fake_run(tmp_path / "r4", "neutral", backbone=str(gemma)),
            "stack": stacked_run(tmp_path / "r6")}
    kinds = load_moved_exports_in_a_fresh_process(tmp_path, runs)
    assert kinds == {"lora": "peft", "neutral": "remote", "gemma_neutral": "remote", "stack": "remote"}
    # the LoRA base beside the adapter is the clean backbone: its own names, no PEFT wrappers
    with safe_open(str(tmp_path / "elsewhere" / "lora" / "base_model" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "model.layers.0.mlp.gate_proj.weight" in keys and len(keys) > 10
    assert not [k for k in keys if "lora_" in k or "base_layer" in k]
    moved = tmp_path / "elsewhere"
    assert json.loads((moved / "lora" / "adapter_config.json").read_text())["base_model_name_or_path"] == "base_model"
    assert json.loads((moved / "gemma_neutral" / "config.json").read_text())["model_type"] == "nrl_gemma"


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["smollm2-135m"])
def test_real_backbone_exports_load_with_stock_tools(tmp_path, backbone):
    """The converted SmolLM2 (a preset that exists on no hub): the PEFT base copy and the remote code at full size."""
    from nr_lightning.backbone import load_backbone

    try:
        load_backbone(backbone)
    except FileNotFoundError as e:
        pytest.fail(f"{backbone} is not available here: {e}")
    runs = {"lora": fake_run(tmp_path / "r1", "lora", backbone=backbone),
            "neutral": fake_run(tmp_path / "r2", "neutral", backbone=backbone)}
    assert load_moved_exports_in_a_fresh_process(tmp_path, runs) == {"lora": "peft", "neutral": "remote"}


def load_moved_exports_in_a_fresh_process(tmp_path: Path, runs: dict[str, Path]) -> dict[str, str]:
    """Export every run, move the exports, load them in `python -I` without nr_lightning, compare with the
    framework's logits and greedy generations; returns name -> peft | remote | hf."""
    from nr_lightning.extension.export import export

    ref = {name: framework(run) for name, run in runs.items()}
    written, kinds = tmp_path / "written", {}
    for name, run in runs.items():
        info = export(run, written / name)
        kinds[name] = "peft" if info["format"] == "peft" else "remote" if info.get("remote_code") else "hf"
        assert (written / name / "README.md").read_text().startswith("---\n")
    moved = tmp_path / "elsewhere"
    shutil.move(str(written), str(moved))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NRL_"))}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), TOKENIZERS_PARALLELISM="false")
    p = subprocess.run([sys.executable, "-I", "-c", LOADER, json.dumps(kinds), json.dumps(IDS.tolist()),
                        str(NEW_TOKENS)],
                       cwd=moved, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    got = load_file(str(moved / "loaded.safetensors"))
    with safe_open(str(moved / "loaded.safetensors"), "pt") as f:
        refused = json.loads(f.metadata()["refused"])
    # without trust_remote_code the gated models refuse to load (never a silent stock model without adapters)
    assert refused == {n: True for n, k in kinds.items() if k == "remote"}
    for name, (logits, generated) in ref.items():
        hows = ("explicit", "auto") if kinds[name] == "peft" else ("hf",)
        for how in hows:
            torch.testing.assert_close(got[f"{name}/{how}/logits"], logits, atol=1e-5, rtol=1e-5,
                                       msg=lambda m, n=name, h=how: f"{n} ({h}): {m}")
            assert torch.equal(got[f"{name}/{how}/generate"], generated), (name, how)
    return kinds

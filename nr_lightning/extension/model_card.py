"""The README.md (Hugging Face model card) every export writes: front matter plus the run's facts.

Front matter: base_model, language, library_name, pipeline_tag, tags (method, budget). Body: the method and
its budget, the training data and the tokens seen, the final bits-per-byte per held-out set with its change
against the backbone, downstream accuracies when the run was evaluated, how to load the export and the
command that reproduces the run. Reads only files the run wrote (config.yaml, metrics.json, losses.jsonl,
eval.json, base_eval.json); torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from ..registry import method_class

# a preset's model card names the weights it was made from (the presets are conversions, not hub checkpoints)
PRESET_ORIGIN = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-135m-en": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
_OMIT_KEYS = {"name", "run_dir", "runs_root", "ckpt_path", "overwrite"}  # where a run is written, not what it is


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, key + "."))
        else:
            out[key] = v
    return out


def _value(v) -> str:
    return "null" if v is None else json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def reproduce_command(cfg: dict) -> str:
    """`python -m nr_lightning.train ...` with the group choices and every key that differs from them,
    checked by composing it back (falls back to every key when the groups cannot rebuild the config)."""
    from ..config import compose, to_dict

    groups = [f"method={cfg['method']['name']}", f"lang={cfg['lang']}"]
    want = {k: v for k, v in _leaves(cfg).items() if k.split(".")[0] not in _OMIT_KEYS and k != "experiment"}
    try:
        base = _leaves(to_dict(compose(groups)))
        args = groups + [f"{k}={_value(v)}" for k, v in want.items() if base.get(k) != v]
        got = _leaves(to_dict(compose(args)))
        if all(got.get(k) == v for k, v in want.items()):
            return "python -m nr_lightning.train " + " ".join(args)
    except Exception:  # noqa: BLE001 - a config from another version: spell out every key instead
        pass
    return "python -m nr_lightning.train " + " ".join(f"{k}={_value(v)}" for k, v in want.items())


def _tokens(run: Path, cfg: dict, steps: int | None) -> str:
    losses = run / "losses.jsonl"
    if losses.is_file():
        n = 0
        for line in losses.read_text(encoding="utf-8").splitlines():
            try:
                n += int(json.loads(line).get("tokens", 0))
            except ValueError:
                continue
        if n:
            return f"{n:,} tokens (losses.jsonl)"
    if steps:
        t, d = cfg.get("trainer", {}), cfg.get("data", {})
        per = d.get("batch_size", 0) * d.get("seq_len", 0) * t.get("accumulate_grad_batches", 1) * \
            t.get("devices", 1) * t.get("num_nodes", 1)
        if per:
            return f"{steps * per:,} tokens planned ({steps} steps × {per:,} tokens per step)"
    return "not recorded"


def _bpb_rows(metrics: dict, ev: dict, base_ev: dict) -> list[str]:
    final = dict(metrics.get("final_bpb") or {})
    source = "metrics.json (the run's last evaluation)"
    if ev.get("bpb"):
        final.update(ev["bpb"])
        source = "eval.json (`python -m nr_lightning.evaluate`)"
    if not final:
        return []
    ref, ref_name = {}, ""
    if (ev.get("delta") or {}).get("bpb"):
        ref = {k: final[k] - d for k, d in ev["delta"]["bpb"].items() if k in final and d is not None}
        ref_name = "the backbone, scored by the same evaluation"
    elif base_ev.get("bpb"):
        ref, ref_name = base_ev["bpb"], f"the backbone's base_eval.json ({base_ev.get('label') or 'same protocol'})"
    else:
        curves = metrics.get("curves") or []
        if curves and curves[0].get("step") == 0:
            ref = {k[len("eval/bpb_"):]: v for k, v in curves[0].items() if k.startswith("eval/bpb_")}
            ref_name = "step 0 (the extension starts as the identity: the backbone's own bpb)"
    rows = [f"Bits per byte, lower is better; source: {source}. Δ against {ref_name or 'the backbone: not recorded'}.",
            "", "| held-out set | bpb | Δ vs backbone |", "|---|---|---|"]
    for k, v in final.items():
        d = f"{v - ref[k]:+.4f}" if k in ref and ref[k] is not None else "—"
        rows.append(f"| {k} | {v:.4f} | {d} |")
    return rows


def model_card(run: Path, cfg: dict, info: dict) -> str:
    """The README.md text for an export of `run` (cfg: the run's config as a dict; info: what export returned)."""
    metrics, ev = _load_json(run / "metrics.json"), _load_json(run / "eval.json")
    base_ev = _load_json(run / "base_eval.json")
    method, backbone = cfg["method"]["name"], cfg["backbone"]["name"]
    kind = method_class(method)
    budget = None if kind.trains_backbone else cfg["method"].get("budget")
    learn = list((cfg.get("data") or {}).get("learn") or [cfg.get("lang")])
    retain = list((cfg.get("data") or {}).get("retain") or ["en"])
    langs = list(dict.fromkeys([*retain, *learn]))
    base_model = info.get("base_model") if info.get("base_model") not in (None, "base_model") else None
    base_model = base_model or PRESET_ORIGIN.get(backbone) or (backbone if "/" in backbone and
                                                               not Path(backbone).exists() else None)
    lib = "peft" if info["format"] == "peft" else "transformers"
    tags = ["nr-lightning", method, f"budget-{budget}" if budget is not None else "full-finetune",
            *kind.hub_tags, *(["custom_code"] if info.get("remote_code") else [])]
    front = {"library_name": lib, "pipeline_tag": "text-generation", "language": langs, "tags": tags,
             "nr_lightning": {"method": method, "budget": budget, "backbone": backbone, "format": info["format"]}}
    if base_model:
        front["base_model"] = base_model
    yaml = OmegaConf.to_yaml(OmegaConf.create(front)).strip()
    steps = metrics.get("global_step")
    data = cfg.get("data") or {}
    params = metrics.get("parameters") or {}
    lines = ["---", yaml, "---", "", f"# {run.name}: {method} on {backbone}", "",
             f"Extends `{backbone}` to {', '.join(learn)} with **{method}**"
             + (f" (budget {budget} of the backbone's non-embedding parameters"
                + (f"; {params['extension']:,} extension parameters" if params.get("extension") else "") + ")"
                if budget is not None else " (every weight trained)")
             + ", trained with nr-lightning (neutral residues, ICML 2025).", "",
             "## Training", "",
             f"- data: learn {learn}, retain {retain} with probability p = {data.get('p')} of retain-language "
             f"batches; sequence length {data.get('seq_len')}, batch size {data.get('batch_size')}",
             f"- steps: {steps if steps is not None else 'not recorded'}; tokens: {_tokens(run, cfg, steps)}",
             f"- peak learning rate {cfg['method'].get('lr')}, seed {cfg.get('seed')}", ""]
    bpb = _bpb_rows(metrics, ev, base_ev)
    lines += ["## Held-out bits per byte", "", *(bpb or ["No evaluation recorded in the run directory."]), ""]
    tasks = ev.get("tasks") or {}
    if tasks:
        lines += ["## Downstream", "", "| task | accuracy | n | shots |", "|---|---|---|---|"]
        for name, t in tasks.items():
            acc = t.get("acc_norm", t.get("acc"))
            lines.append(f"| {name} | {acc:.4f} | {t.get('n')} | {t.get('shots')} |" if acc is not None
                         else f"| {name} | — | {t.get('n')} | {t.get('shots')} |")
        lines.append("")
    lines += ["## Load", "", "```python", *_load_snippet(info), "```", "",
              "## Reproduce", "", "```bash", reproduce_command(cfg),
              f"python -m nr_lightning export run={run} out=DIR format={info['format']}", "```", ""]
    return "\n".join(lines)


def _load_snippet(info: dict) -> list[str]:
    if info["format"] == "peft":
        if info.get("base_model") == "base_model":
            return ["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                    'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("DIR/base_model"), "DIR")',
                    'tokenizer = AutoTokenizer.from_pretrained("DIR")']
        return ["from peft import AutoPeftModelForCausalLM", 'model = AutoPeftModelForCausalLM.from_pretrained("DIR")']
    if info["format"] == "extension":
        return ["from nr_lightning.extension.export import load_exported", 'model, tokenizer = load_exported("DIR")']
    remote = ", trust_remote_code=True" if info.get("remote_code") else ""
    return ["from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("DIR"{remote})',
            'tokenizer = AutoTokenizer.from_pretrained("DIR")']


def write_model_card(out: Path, run: Path, run_cfg, info: dict) -> Path:
    """Write out/README.md (replacing PEFT's blank template); returns its path."""
    from ..config import to_dict

    path = Path(out) / "README.md"
    path.write_text(model_card(Path(run), to_dict(run_cfg), info), encoding="utf-8")  # a fresh export dir
    return path

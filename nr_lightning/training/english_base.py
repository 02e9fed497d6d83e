"""The English base backbone, `backbone=smollm2-135m-en`: `make backbone-en` (= `nrl base`).

Why it exists: the embedded backbone is SmolLM2-135M-*Instruct*, quantised to Q4_1 and dequantised. It is not a
base model, and any training on plain text repairs it: English bpb then falls whatever a method does, so
"English did not get worse" measures healing, not remembering (docs/reproduction.md). The reproduction protocol
therefore starts from this model instead: the dequantised backbone after continued pretraining (full
finetuning) on the English training stream until held-out English stops improving.

What it does, deterministically (fixed seed, fixed data order, constant lr after warm-up):
1. `python -m nr_lightning.train method=finetune data.p=1 ...` into `runs/backbone-en/`, evaluating every
   `EVERY` steps the bpb of held-out in-domain English (Wikipedia, `en_indomain`) and of the real-PubMed *dev*
   abstracts (`pubmed_en_dev.jsonl`; the forgetting evaluation set `pubmed_en_more.jsonl` is never looked at);
2. keeps the weights of the evaluation with the lowest sum of the two and stops once it has not improved by
   `MIN_DELTA` for `PATIENCE` evaluations (or at `MAX_STEPS`);
3. writes those weights, the tokenizer and `nrl_base.json` (the curve, the chosen step, the command) to
   `<cache>/backbones/smollm2-135m-en` (safetensors). Re-running resumes an interrupted build from its last
   checkpoint; a finished build is reused.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import lightning as L

from ..evaluation.fixtures import TEXT
from ..paths import ENGLISH_BASE as NAME
from ..paths import REPO, base_dir, is_built

SOURCE = "smollm2-135m"
PUBMED_DEV = TEXT / "pubmed_en_dev.jsonl"  # model selection only
PUBMED_EVAL = TEXT / "pubmed_en_more.jsonl"  # the forgetting set of the reproduction: never used for selection
EVERY, PATIENCE, MIN_DELTA, MAX_STEPS = 25, 3, 0.001, 300
SELECT = ("eval/bpb_en", "eval/bpb_en_indomain")  # PubMed dev + in-domain Wikipedia


def train_args(run_dir: Path, max_steps: int = MAX_STEPS) -> list[str]:
    """The continued-pretraining run (the train CLI's overrides)."""
    return [f"backbone={SOURCE}", "method=finetune", "lang=fr", "data.p=1.0", "data.retain=[en]",
            f"data.heldout_en={PUBMED_DEV}", "data.seq_len=256", "data.batch_size=8",
            "method.lr=1e-4", "optim.lr_multiplier=1", "optim.schedule=constant", "optim.warmup_steps=10",
            f"trainer.max_steps={max_steps}", f"trainer.checkpoint_every_n_steps={EVERY}",
            f"eval.every_n_steps={EVERY}", "eval.max_docs=48", "eval.indomain=true", "eval.gate_stats=false",
            f"run_dir={run_dir}", "seed=0"]


class KeepBest(L.Callback):
    """After each held-out evaluation: save the weights if the selection sum improved, stop after `patience`
    evaluations without an improvement of `min_delta`. Its state is in the checkpoint, so a resumed build
    continues the same comparison."""

    def __init__(self, curves, out: Path, patience: int = PATIENCE, min_delta: float = MIN_DELTA) -> None:
        self.curves, self.out, self.patience, self.min_delta = curves, out, patience, min_delta
        self.best, self.best_step, self.bad, self._seen = float("inf"), -1, 0, -1

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.curves.history or self.curves.history[-1]["step"] == self._seen:
            return
        last = self.curves.history[-1]
        self._seen = last["step"]
        score = sum(last[k] for k in SELECT)
        if score < self.best - self.min_delta:
            self.best, self.best_step, self.bad = score, last["step"], 0
            if trainer.is_global_zero:
                tmp = self.out.with_name(self.out.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                pl_module.model.save_pretrained(tmp, safe_serialization=True)
                shutil.rmtree(self.out, ignore_errors=True)
                tmp.rename(self.out)
        else:
            self.bad += 1
            if self.bad >= self.patience:
                print(f"[nr-lightning] English base: no improvement > {self.min_delta} for {self.patience} "
                      f"evaluations; best step {self.best_step} (sum {self.best:.4f})", file=sys.stderr)
                trainer.should_stop = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad, "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad, self._seen = state["best"], state["best_step"], state["bad"], state["seen"]


def build(runs_root: str | Path = "runs", max_steps: int = MAX_STEPS, force: bool = False) -> Path:
    """Build (or resume building) the English base; return its HF directory."""
    from ..backbone import load_tokenizer, weights_sha256
    from . import train
    from .callbacks import ForgettingCurves

    out = base_dir()
    if is_built() and not force:
        print(f"[nr-lightning] English base already built: {out}", file=sys.stderr)
        return out
    run_dir = Path(runs_root) / "backbone-en"
    best = run_dir / "best"
    args = train_args(run_dir, max_steps)
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    t0 = time.time()

    def extra(callbacks: list) -> list:
        curves = next(c for c in callbacks if isinstance(c, ForgettingCurves))
        return [KeepBest(curves, best)]

    how = []
    if resume:
        how = ["ckpt_path=last"]
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        # A build stopped before its first checkpoint left only logs: nothing to resume, so it starts again.
        print(f"[nr-lightning] {run_dir} has no checkpoint yet: the English base build starts again",
              file=sys.stderr)
        how = ["overwrite=true"]
    result = train.main(args + how, extra_callbacks=extra)
    if result.get("preempted"):  # SIGTERM/SIGINT/SIGUSR1: checkpointed, not finished; never a base from it
        print(f"[nr-lightning] English base build stopped by {result.get('signal') or 'a signal'} at step "
              f"{result.get('global_step')}: checkpoint {result.get('checkpoint')} kept; run the same command "
              f"again to resume", file=sys.stderr)
        raise SystemExit(3)
    curves = result.get("curves") or json.loads((run_dir / "curves.json").read_text(encoding="utf-8"))
    keep = result.get("extra_callbacks", [None])[0]
    if not (best / "model.safetensors").is_file():
        raise RuntimeError(f"no improving evaluation was saved under {best}; see {run_dir}/curves.json")
    scores = [(sum(h[k] for k in SELECT), h["step"]) for h in curves if all(k in h for k in SELECT)]
    chosen = keep.best_step if keep is not None else min(scores)[1]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best, tmp)
    load_tokenizer(SOURCE).save_pretrained(tmp)
    meta = {"name": NAME, "source": f"{SOURCE} (SmolLM2-135M-Instruct, Q4_1 GGUF, dequantised)",
            "selected_step": chosen, "selection": f"min of {' + '.join(SELECT)} (PubMed dev + in-domain)",
            "patience": PATIENCE, "min_delta": MIN_DELTA, "every": EVERY, "curve": curves,
            # paths relative to the checkout, so the recorded command runs in anyone's clone
            "command": "python -m nr_lightning.train " + " ".join(args).replace(f"{REPO}/", ""),
            "date": time.strftime("%Y-%m-%d"),
            # bit-identical on the same kind of CPU: a sweep reuses an archived evaluation of equal weights
            "weights_sha256": weights_sha256(str(tmp)),
            "build_seconds_this_call": round(time.time() - t0)}
    (tmp / "nrl_base.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"[nr-lightning] English base: step {chosen} -> {out}", file=sys.stderr)
    return out


def cli() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="nrl base", description=__doc__.split("\n")[0])
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--max-steps", type=int, default=MAX_STEPS)
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache holds a finished base")
    a = ap.parse_args()
    build(a.runs_root, a.max_steps, a.force)


if __name__ == "__main__":
    cli()

"""The ``nrl`` model of lm-evaluation-harness: any trained run (or backbone) on lm-eval's own CLI.

    python -m nr_lightning.evaluation.lm_eval_model --model nrl --model_args run=runs/<name> \\
        --tasks nrl_arc_challenge_fr --include_path nr_lightning/evaluation/lm_eval_tasks
    nrl-lm-eval ...  (the same, as a console script of this package)

lm-eval 0.4.13 finds models only in its registry (``lm_eval.api.registry.model_registry``) and has no
plug-in discovery, so this launcher registers ``nrl`` there and then runs lm-eval's unchanged command
line (every option of ``lm_eval`` works). From Python, importing this module is enough:
``lm_eval.simple_evaluate(model="nrl", model_args="run=runs/<name>", tasks=[...])``.

``nrl`` is lm-eval's ``HFLM`` around the run's extended model (:func:`make_hflm`), so scoring, batching
and truncation are lm-eval's. Exported runs (``nr_lightning.extension.export``) need none of this:
``lm_eval --model hf --model_args pretrained=DIR`` (plus ``,trust_remote_code=True`` for gated methods and
stacked stages; ``pretrained=DIR/base_model,peft=DIR`` for a LoRA export). The launcher scores a run in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"  # local task YAMLs (--include_path)


@register_model("nrl")
class NRLM(HFLM):
    """lm-eval model built from ``run=runs/<name>`` (an extension run) or ``backbone=<preset|path>``."""

    def __init__(self, run: str | None = None, backbone: str | None = None, batch_size: int | str = 1,
                 max_length: int | None = None, **kwargs) -> None:
        from transformers import PreTrainedModel

        from .evaluate import EvalRun, load_model
        from .lm_eval_adapter import HFLMCompatible

        if not run and not backbone:
            raise ValueError("the nrl model needs --model_args run=runs/<name> (or backbone=<preset|path>)")
        model, tok, _ = load_model(EvalRun(run=run, backbone=backbone))
        kwargs.pop("pretrained", None)
        kwargs.pop("device", None)  # the model is already placed; HFLM ignores device for instances
        if not isinstance(model, PreTrainedModel):  # PEFT-wrapped LoRA
            model = HFLMCompatible(model)
        super().__init__(pretrained=model, tokenizer=tok, backend="causal", batch_size=batch_size,
                         max_length=max_length, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """lm-eval's CLI with ``nrl`` registered (same arguments as ``lm_eval``)."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()

"""The interface every extension method implements (one subclass per method, one module each).

Torch is imported inside the methods, not at module level: the run config (torch-free) reads a method's
class attributes to validate a config.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Method:
    """An extension method. Class attributes describe it; the static methods act on a model."""

    name: ClassVar[str] = ""
    # Trains every backbone weight: no budget (its "extension" is the whole backbone), full checkpoints.
    trains_backbone: ClassVar[bool] = False
    # A gated residual adapter in every FFN block (gate/init/placement apply; stages stack and route).
    adapter: ClassVar[bool] = False
    # Its defaults when the config leaves them None (adapter methods only).
    default_gate: ClassVar[str | None] = None
    default_init: ClassVar[str | None] = None
    # The method is defined by its sparsity loss on English (alpha > 0): alpha=0 is its ablation.
    sparsity_loss: ClassVar[bool] = False
    # Stages of this method can be stacked (strategy=stack) / orthogonalised (strategy=olora).
    stackable: ClassVar[bool] = False
    orthogonal_stages: ClassVar[bool] = False
    # The row of the dry-run memory table that stands for this method (methods with the same memory share one).
    memory_row: ClassVar[str] = ""
    # Marker and colour of the method in trade-off plots.
    plot_style: ClassVar[tuple[str, str]] = ("x", "gray")
    # Extra Hugging Face hub tags of an export's model card (besides nr-lightning, the name and the budget).
    hub_tags: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- applied
    @staticmethod
    def apply(backbone: Any, cfg: Any, ffns: list, *, width: int | None, rank: int | None,
              init_divisor: float | None) -> Any:
        """Add the method to ``backbone`` (filling the solved sizes of ``cfg``, an ExtensionConfig), set what
        trains (``requires_grad``), return the model to train."""
        raise NotImplementedError

    # ---------------------------------------------------------------- counted, saved, loaded
    @staticmethod
    def weights(model: Any) -> dict:
        """Name -> tensor of the weights that make up the extension (what save_extension writes)."""
        raise NotImplementedError

    @staticmethod
    def extension_count(model: Any) -> int:
        """Parameters of the extension (the budget's numerator)."""
        raise NotImplementedError

    @staticmethod
    def budget_numerator(extension: int, trainable: int) -> int:
        return extension

    @staticmethod
    def dedupe(tensors: dict) -> dict:
        """The tensors to write (a method holding tied weights keeps one copy of each storage)."""
        return tensors

    @staticmethod
    def load_weights(model: Any, tensors: dict, source: Any) -> None:
        """Load saved weights into a model rebuilt by ``apply``; raise ValueError naming what does not fit."""
        raise NotImplementedError

    @staticmethod
    def checkpoint_keys(module: Any) -> set[str]:
        """Lightning state-dict keys a training checkpoint keeps (empty: the whole state dict)."""
        trainable = {id(p) for p in module.model.parameters() if p.requires_grad}
        return {f"model.{n}" for n, p in module.model.named_parameters() if id(p) in trainable}

    # ---------------------------------------------------------------- exported, merged
    @staticmethod
    def export_format(cfg: Any) -> str:
        """The format `export format=auto` writes: peft | hf | extension."""
        return "hf"

    @staticmethod
    def hf_representable(model: Any, cfg: Any) -> str | None:
        """Why this extension cannot become a plain Hugging Face model (None when it can)."""
        return None

    @staticmethod
    def to_hf(model: Any) -> Any:
        """The plain Hugging Face model (merged), for format=hf when `hf_representable` has no objection."""
        raise NotImplementedError

    @staticmethod
    def task_vector(tensors: dict, meta: dict, state: dict) -> dict | None:
        """What this stage adds to the backbone's weights, name -> delta (None: merged as stages instead)."""
        return None

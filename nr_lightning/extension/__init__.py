"""Model extension: neutral residues and the baselines of the paper, on any supported HF decoder."""

from .adapter import GATES, INITS, PLACEMENTS, ResidualAdapter
from .api import (
    ADAPTER_METHODS,
    METHODS,
    ExtensionConfig,
    adapters,
    backbone_non_embedding,
    extend,
    extend_like,
    extension_config,
    extension_parameters,
    gate_spectra,
    load_extension,
    local_losses,
    nonfinite_weight,
    parameter_report,
    save_extension,
)
from .arch import SUPPORTED_FFNS, find_ffns
from .stack import add_router, add_stage, load_stack, load_stages, n_stages, save_stages, scale_stages

__all__ = [
    "ADAPTER_METHODS", "GATES", "INITS", "METHODS", "PLACEMENTS", "SUPPORTED_FFNS", "ExtensionConfig",
    "ResidualAdapter", "adapters", "backbone_non_embedding", "extend", "extend_like", "extension_config", "extension_parameters",
    "find_ffns", "gate_spectra", "load_extension", "local_losses", "nonfinite_weight", "parameter_report", "save_extension",
    "add_router", "add_stage", "load_stack", "load_stages", "n_stages", "save_stages", "scale_stages",
]

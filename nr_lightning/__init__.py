"""nr-lightning: extend a pretrained LM with a new language without forgetting (neutral residues, ICML 2025)."""

from .extension import (
    METHODS,
    adapters,
    extend,
    gate_spectra,
    load_extension,
    local_losses,
    parameter_report,
    save_extension,
)

__version__ = "0.1.0"
__all__ = ["METHODS", "adapters", "extend", "gate_spectra", "load_extension", "local_losses", "parameter_report",
           "save_extension", "__version__"]

"""Former name of :mod:`mitokit.models.checkpoint` (model folders: save, find, load).

Kept so existing imports work; new code imports :mod:`mitokit.models.checkpoint`, which also
avoids confusion with :mod:`mitokit.io` (slides and annotation files).
"""

from mitokit.models.checkpoint import (
    CONFIG,
    FORMAT,
    VERSION,
    WEIGHTS,
    expand_checkpoints,
    load_model,
    load_state,
    load_weights,
    model_folder,
    read_model_config,
    save_model,
)

__all__ = [
    "CONFIG",
    "FORMAT",
    "VERSION",
    "WEIGHTS",
    "expand_checkpoints",
    "load_model",
    "load_state",
    "load_weights",
    "model_folder",
    "read_model_config",
    "save_model",
]

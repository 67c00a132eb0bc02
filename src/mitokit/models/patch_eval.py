"""Former home of the patch evaluation, now :mod:`mitokit.metrics.patches` (re-exported here)."""

from mitokit.metrics.patches import (
    evaluate_patch_file,
    json_key,
    patch_figures,
    select_rows,
    validation_threshold,
)

__all__ = [
    "evaluate_patch_file",
    "json_key",
    "patch_figures",
    "select_rows",
    "validation_threshold",
]

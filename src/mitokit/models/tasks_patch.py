"""Former home of the patch classifier task, now :mod:`mitokit.models.classifier`.

Kept so existing imports work: the task is in :mod:`mitokit.models.classifier.patch_task`, its
data (label tables, splits, transforms) in :mod:`mitokit.models.classifier.data`.
"""

from mitokit.models.classifier.data import (
    NEGATIVE_NAMES,
    PatchTable,
    PatchTransform,
    center_crop,
    fold_split,
    patch_path,
    read_patch_table,
    read_split_ids,
    split_pool,
)
from mitokit.models.classifier.patch_task import TASK, PatchClassifierTask

__all__ = [
    "NEGATIVE_NAMES",
    "TASK",
    "PatchClassifierTask",
    "PatchTable",
    "PatchTransform",
    "center_crop",
    "fold_split",
    "patch_path",
    "read_patch_table",
    "read_split_ids",
    "split_pool",
]

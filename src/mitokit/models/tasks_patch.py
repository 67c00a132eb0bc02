"""Former home of the patch classifier task, now :mod:`mitokit.models.classifier`.

Kept so existing imports work: the task is in :mod:`mitokit.models.classifier.patch_task`, its
data (label tables, splits, transforms) in :mod:`mitokit.models.classifier.data`.
"""

from mitokit.models.classifier import data as _data
from mitokit.models.classifier import patch_task as _patch_task
from mitokit.models.classifier.data import *  # noqa: F403
from mitokit.models.classifier.patch_task import *  # noqa: F403

__all__ = sorted({*_data.__all__, *_patch_task.__all__})

"""Former home of the tile models (BC, Reg, Reg-NS), now :mod:`mitokit.models.classifier`.

Kept so existing imports work: the tasks are in :mod:`mitokit.models.classifier.tile_task`,
:class:`TileScoreDataset` in :mod:`mitokit.models.classifier.data`, and the tile images with
their box labels (shared with the detector and the weak localiser) in
:mod:`mitokit.models.tile_source`.
"""

from mitokit.models import tile_source as _tile_source
from mitokit.models.classifier import tile_task as _tile_task
from mitokit.models.classifier.data import TileScoreDataset as TileScoreDataset
from mitokit.models.classifier.tile_task import *  # noqa: F403
from mitokit.models.tile_source import *  # noqa: F403
from mitokit.models.tile_source import _ImageOpener as _ImageOpener

__all__ = sorted({"TileScoreDataset", "_ImageOpener", *_tile_task.__all__, *_tile_source.__all__})

"""Former home of the tile models (BC, Reg, Reg-NS), now :mod:`mitokit.models.classifier`.

Kept so existing imports work: the tasks are in :mod:`mitokit.models.classifier.tile_task`,
:class:`TileScoreDataset` in :mod:`mitokit.models.classifier.data`, and the tile images with
their box labels (shared with the detector and the weak localiser) in
:mod:`mitokit.models.tile_source`.
"""

from mitokit.models.classifier.data import TileScoreDataset
from mitokit.models.classifier.tile_task import (
    TILE_CLASSIFIER,
    TILE_REGRESSOR,
    TileClassifierTask,
    TileRegressorTask,
)
from mitokit.models.tile_source import (
    IMAGE_SUFFIXES,
    TILES_FOLDER_LABELS,
    TileSource,
    _ImageOpener,
    event_tile_training_set,
    grid_tiles,
    image_files,
    image_size,
    read_tile_source,
    resolve_labels,
    split_images,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "TILES_FOLDER_LABELS",
    "TILE_CLASSIFIER",
    "TILE_REGRESSOR",
    "TileClassifierTask",
    "TileRegressorTask",
    "TileScoreDataset",
    "TileSource",
    "_ImageOpener",
    "event_tile_training_set",
    "grid_tiles",
    "image_files",
    "image_size",
    "read_tile_source",
    "resolve_labels",
    "split_images",
]

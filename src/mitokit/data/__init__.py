"""Samples for training and inference: tiles, tissue masks, patches, samplers, stain, datasets.

Every function takes a slide (an object with ``read_region`` and ``dimensions``, as
:func:`mitokit.io.open_slide` returns) or a plain ``HxWx3`` uint8 array, which
:class:`ArraySlide` wraps. Coordinates are level-0 pixels, x = column, boxes ``[x1, y1, x2, y2]``.
"""

from mitokit._lazy import lazy_getattr
from mitokit.data.arrays import ArraySlide, SlideLike, as_slide, read_rgb
from mitokit.data.patches import extract_patches, patches_from_annotations
from mitokit.data.stain import HEDJitter, MacenkoNormalizer, hed_jitter
from mitokit.data.tiling import Tile, as_tiles, tile_boxes, tile_grid, tiles_for_slide
from mitokit.data.tissue import TissueMask, require_tissue, tissue_fraction, tissue_mask

# Names whose modules import torch load on first use, so that generating data, reading slides
# and the CLI's fast paths do not pay torch's import time and memory.
_LAZY = {
    "PatchDataset": "mitokit.data.datasets",
    "TileDataset": "mitokit.data.datasets",
    "collate_detection": "mitokit.data.datasets",
    "to_tensor": "mitokit.data.datasets",
    "ClassBalancedBatchSampler": "mitokit.data.sampling",
    "EventTileSampler": "mitokit.data.sampling",
    "negatives_at_ratio": "mitokit.data.sampling",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "ArraySlide",
    "ClassBalancedBatchSampler",
    "EventTileSampler",
    "HEDJitter",
    "MacenkoNormalizer",
    "PatchDataset",
    "SlideLike",
    "Tile",
    "TileDataset",
    "TissueMask",
    "as_slide",
    "as_tiles",
    "collate_detection",
    "extract_patches",
    "hed_jitter",
    "negatives_at_ratio",
    "patches_from_annotations",
    "read_rgb",
    "require_tissue",
    "tile_boxes",
    "tile_grid",
    "tiles_for_slide",
    "tissue_fraction",
    "tissue_mask",
    "to_tensor",
]

"""Regular tile grids over images and slides.

A grid is a list of boxes ``[x1, y1, x2, y2]`` (x = column), row by row from the top-left. What
happens at the right and bottom edges, where the last tile would stick out, is the edge policy:

``False`` / ``"drop"``
    Only full tiles inside the image; a strip narrower than the stride at the edge is not covered.
    Right for training, where every tile must be real pixels. A tile larger than the image gives
    an empty grid.
``"pad"``
    The grid goes on until the edge is covered; the last tiles stick out and are read padded
    (slide readers return white outside). ``True`` means ``"pad"``.
``"shift"``
    As ``"pad"``, but the last tile of each row and column is moved back to end exactly at the
    edge, so every tile is full and the image is covered exactly (the last two tiles overlap more
    than the stride says). Right for inference coverage. An image smaller than the tile gets one
    tile at the origin, padded.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mitokit.data import tissue as _tissue
from mitokit.data.arrays import as_slide, level_downsample, level_size, slide_name
from mitokit.data.tissue import TissueMask, tissue_fraction, tissue_mask
from mitokit.errors import input_error
from mitokit.types import BoxXYXY, LocationXY, SizeWH

EdgePolicy = Literal[False, True, "drop", "pad", "shift"]

_POLICIES = {False: "drop", "drop": "drop", True: "pad", "pad": "pad", "shift": "shift"}


def tile_grid(
    size_wh: SizeWH,
    *,
    tile: int | SizeWH,
    stride: int | SizeWH | None = None,
    origin: LocationXY = (0, 0),
    include_partial: EdgePolicy = False,
) -> np.ndarray:
    """Boxes of a regular grid of tiles over a region.

    Example: a 1000-pixel tile cut into 250-pixel sub-tiles at stride 125 gives 7 x 7 = 49
    sub-tiles: ``tile_grid((1000, 1000), tile=250, stride=125, origin=(x, y))``.

    Args:
        size_wh: (width, height) of the region to tile.
        tile: Tile side, or (width, height).
        stride: Step between tiles, or (x step, y step); defaults to the tile (no overlap).
        origin: Top-left (x, y) of the region in level-0 pixels; added to every box.
        include_partial: Edge policy, see the module docstring.

    Returns:
        ``(N, 4)`` int64 boxes ``[x1, y1, x2, y2]``, row-major (y outer, x inner); ``(0, 4)``
        when no tile fits.

    Raises:
        MitokitError: A non-positive tile or stride, a negative size, an unknown edge policy.
    """
    policy = _policy(include_partial)
    w, h = _pair(size_wh, "size", minimum=0)
    tw, th = _pair(tile, "tile", minimum=1)
    sx, sy = (tw, th) if stride is None else _pair(stride, "stride", minimum=1)
    ox, oy = _pair(origin, "origin", minimum=None)
    xs = _positions(w, tw, sx, policy)
    ys = _positions(h, th, sy, policy)
    if len(xs) == 0 or len(ys) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    x1 = gx.ravel() + ox
    y1 = gy.ravel() + oy
    return np.stack([x1, y1, x1 + tw, y1 + th], axis=1).astype(np.int64)


@dataclass(frozen=True)
class Tile:
    """One tile of a slide.

    Attributes:
        x: Left edge in level-0 pixels.
        y: Top edge in level-0 pixels.
        w: Width in pixels of ``level`` (what ``read_region`` is asked for).
        h: Height in pixels of ``level``.
        level: Pyramid level the tile is read from.
        tissue: Fraction of the tile covered by tissue, in [0, 1].
        image: Id of the image or slide, when known.
        downsample: Downsample of ``level`` relative to level 0.
    """

    x: int
    y: int
    w: int
    h: int
    level: int = 0
    tissue: float = 1.0
    image: str | None = None
    downsample: float = 1.0

    @property
    def box(self) -> BoxXYXY:
        """``[x1, y1, x2, y2]`` in level-0 pixels."""
        return (
            self.x,
            self.y,
            self.x + round(self.w * self.downsample),
            self.y + round(self.h * self.downsample),
        )

    def read(self, slide: Any) -> np.ndarray:
        """Read the tile's pixels, ``h x w x 3`` uint8, from ``slide`` (or an array)."""
        region = as_slide(slide).read_region((self.x, self.y), self.level, (self.w, self.h))
        return np.asarray(region)[:, :, :3]


def as_tiles(tiles: Iterable[Tile | tuple[str, Sequence[float]]]) -> list[Tile]:
    """Normalise tiles given as :class:`Tile` records or ``(image_id, [x1, y1, x2, y2])`` pairs.

    Pairs become level-0 tiles (coordinates rounded to whole pixels).

    Raises:
        MitokitError: A tile without an image id, or a malformed box.
    """
    out: list[Tile] = []
    for i, item in enumerate(tiles):
        if isinstance(item, Tile):
            if item.image is None:
                raise input_error(None, f"tile {i} has no image id")
            out.append(item)
            continue
        try:
            image_id, box = item
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise input_error(
                None, f"tile {i} must be a Tile or (image_id, [x1, y1, x2, y2]), got {item!r}"
            ) from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            raise input_error(None, f"tile {i} has an empty or invalid box {list(box)}")
        x, y = round(x1), round(y1)
        out.append(Tile(x, y, round(x2) - x, round(y2) - y, image=str(image_id)))
    return out


def tile_boxes(tiles: Sequence[Tile]) -> np.ndarray:
    """``(T, 4)`` float64 level-0 boxes of tiles."""
    if not tiles:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([t.box for t in tiles], dtype=np.float64)


def tiles_for_slide(
    slide: Any,
    *,
    tile: int | SizeWH,
    stride: int | SizeWH | None = None,
    level: int = 0,
    mask: TissueMask | None = None,
    min_tissue: float = 0.1,
    include_partial: EdgePolicy = "shift",
    require_tissue: bool = False,
    image: str | None = None,
) -> Iterator[Tile]:
    """Tiles of a slide (or an ``HxWx3`` array) that hold enough tissue.

    The grid is laid over ``level`` (``tile`` and ``stride`` are in pixels of that level);
    tile positions are reported in level-0 pixels. The default edge policy ``"shift"`` covers
    the slide exactly with full tiles.

    Args:
        slide: A slide or an array.
        tile: Tile side (or width, height) in pixels of ``level``.
        stride: Step in pixels of ``level``; defaults to ``tile``.
        level: Pyramid level to tile.
        mask: A tissue mask of the slide; computed with :func:`tissue_mask` when None.
        min_tissue: Keep tiles whose tissue fraction is at least this (0 keeps every tile).
        include_partial: Edge policy (see :func:`tile_grid`).
        require_tissue: Raise when the mask holds no tissue at all, instead of yielding nothing.
        image: Image id recorded in each :class:`Tile`.

    Yields:
        :class:`Tile` records, row-major.

    Raises:
        MitokitError: Bad settings (raised at the call, not at the first iteration), or no
            tissue with ``require_tissue=True`` (``"no tissue found in <path>"``).
    """
    if not (isinstance(min_tissue, numbers.Real) and 0.0 <= float(min_tissue) <= 1.0):
        raise input_error(None, f"min_tissue must be in [0, 1], got {min_tissue}")
    src = as_slide(slide)
    ds = level_downsample(src, level)
    size = level_size(src, level)
    grid = tile_grid(size, tile=tile, stride=stride, include_partial=include_partial)
    if mask is None:
        mask = tissue_mask(src)
    if require_tissue:
        _tissue.require_tissue(mask, slide_name(src) or image)
    return _iter_tiles(grid, mask, ds, int(level), float(min_tissue), image)


def _iter_tiles(
    grid: np.ndarray,
    mask: TissueMask,
    ds: float,
    level: int,
    min_tissue: float,
    image: str | None,
) -> Iterator[Tile]:
    for gx1, gy1, gx2, gy2 in grid.tolist():
        x, y = round(gx1 * ds), round(gy1 * ds)
        box = (x, y, x + round((gx2 - gx1) * ds), y + round((gy2 - gy1) * ds))
        frac = tissue_fraction(mask.mask, box, mask.downsample)
        if min_tissue > 0 and frac < min_tissue:
            continue
        yield Tile(x, y, gx2 - gx1, gy2 - gy1, level, frac, image, ds)


def _policy(value: Any) -> str:
    try:
        return _POLICIES[value]
    except (KeyError, TypeError):
        raise input_error(
            None, f"unknown edge policy {value!r} (False/'drop', True/'pad', 'shift')"
        ) from None


def _pair(value: Any, what: str, *, minimum: int | None) -> tuple[int, int]:
    """Two ints from an int or a pair, checked against ``minimum``."""
    items = (value, value) if isinstance(value, numbers.Number) else tuple(value)
    if len(items) != 2:
        raise input_error(None, f"{what} must be a number or a pair, got {value!r}")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise input_error(None, f"{what} must be whole numbers, got {value!r}")
        if int(v) != v:
            raise input_error(None, f"{what} must be whole numbers, got {value!r}")
        if minimum is not None and v < minimum:
            bound = "positive" if minimum == 1 else f">= {minimum}"
            raise input_error(None, f"{what} must be {bound}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def _positions(length: int, tile: int, stride: int, policy: str) -> np.ndarray:
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    if policy == "drop":
        if length < tile:
            return np.zeros(0, dtype=np.int64)
        return np.arange((length - tile) // stride + 1, dtype=np.int64) * stride
    n = 1 if length <= tile else math.ceil((length - tile) / stride) + 1
    pos = np.arange(n, dtype=np.int64) * stride
    if policy == "shift" and length >= tile:
        pos[-1] = length - tile
    return pos


__all__ = ["EdgePolicy", "Tile", "as_tiles", "tile_boxes", "tile_grid", "tiles_for_slide"]

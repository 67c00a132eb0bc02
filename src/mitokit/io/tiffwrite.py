"""Write tiled pyramidal BigTIFFs that OpenSlide and tifffile both read, with their mpp.

Layout: one tiled page per level, level 0 first, each next level half the size (rounded up) of
the one before and marked as a reduced image (NewSubfileType 1). OpenSlide's generic-tiff driver
reads such pages as levels, and tifffile groups them into one series with ``levels``. (Sub-IFDs
would hide the reduced levels from OpenSlide.) Every page carries XResolution/YResolution in
pixels per centimetre (``1e4 / mpp`` at level 0), from which OpenSlide's ``openslide.mpp-x`` and
:func:`mitokit.io.slides.open_slide` recover the mpp.

Level 0 is streamed tile by tile from the source, so a slide far larger than memory can be
written from a :class:`TileSource`. While a level is written, the next one is reduced from its
tiles (2 x 2 box average) into a buffer that stays in memory when small and is a scratch file
beside the output otherwise; memory use is bounded by a few tiles plus that small buffer.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error, positive_float
from mitokit.io.atomic import atomic_path
from mitokit.io.slides import to_rgb8
from mitokit.types import SizeWH

__all__ = ["COMPRESSIONS", "TileReader", "TileSource", "write_pyramidal_tiff"]

COMPRESSIONS = ("jpeg", "deflate", "none")
"""Tile compressions :func:`write_pyramidal_tiff` offers."""

TileReader = Callable[[int, int, int, int], np.ndarray]
"""``read(x, y, w, h)`` -> the ``(h, w, 3)`` uint8 RGB level-0 block at ``(x, y)``."""

_IN_MEMORY_BYTES = 128 * 2**20
"""A reduced level buffer up to this size stays in memory; a larger one is a scratch file."""


@dataclass(frozen=True)
class TileSource:
    """A level-0 image produced piece by piece, for writing images larger than memory.

    Attributes:
        size: Level-0 ``(width, height)`` in pixels.
        read: Called as ``read(x, y, w, h)`` for each tile, in row-major order, with blocks
            lying inside the image; returns the ``(h, w, 3)`` uint8 RGB pixels (greyscale and
            RGBA are accepted and converted as :func:`mitokit.io.slides.to_rgb8` does).
    """

    size: SizeWH
    read: TileReader


def write_pyramidal_tiff(
    path: str | os.PathLike,
    image: Any,
    *,
    mpp: float,
    tile_size: int = 256,
    levels: int | None = None,
    compression: str = "jpeg",
    quality: int = 90,
) -> Path:
    """Write a tiled pyramidal BigTIFF with its microns per pixel, atomically.

    Args:
        path: The output file (usually ``.tif`` or ``.tiff``).
        image: The level-0 pixels: an ``(h, w, 3)`` uint8 array (``(h, w)`` grey and
            ``(h, w, 4)`` RGBA are converted), a :class:`TileSource`, or an open slide (anything
            with ``dimensions`` and ``read_region`` like :class:`mitokit.io.slides.Slide`).
        mpp: Microns per pixel at level 0; stored as the resolution tags.
        tile_size: Tile width and height, a multiple of 16.
        levels: Number of levels including level 0. By default, levels are added until one fits
            in a single tile.
        compression: ``"jpeg"`` (YCbCr, lossy), ``"deflate"`` (lossless) or ``"none"``.
        quality: JPEG quality, 1..100; ignored by the other compressions.

    Returns:
        The path written.

    Raises:
        MitokitError: An argument is invalid, or the source yields wrongly shaped tiles.
    """
    path = Path(os.fspath(path))
    width, height, read = _as_reader(path, image)
    mpp = positive_float(path, mpp, "mpp")
    _check_options(path, tile_size, compression, quality)
    sizes = _level_sizes(path, width, height, tile_size, levels)

    import tifffile

    options = _compression_options(compression, quality)
    with (
        atomic_path(path) as tmp,
        tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".mitokit-pyramid-") as scratch,
        tifffile.TiffWriter(tmp, bigtiff=True) as writer,
    ):
        for level, (w, h) in enumerate(sizes):
            following = None
            if level + 1 < len(sizes):
                following = _allocate(sizes[level + 1], Path(scratch) / f"level{level + 1}.raw")
            # pixels per centimetre of this level; its pixels are (width / w) level-0 pixels
            x_per_cm, y_per_cm = 1e4 * w / (mpp * width), 1e4 * h / (mpp * height)
            writer.write(
                _tiles(path, read, w, h, tile_size, following),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile_size, tile_size),
                resolution=(x_per_cm, y_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                software="mitokit",
                metadata=None,
                **options,
            )
            if following is not None:
                read = _array_reader(following)
    return path


def _check_options(path: Path, tile_size: Any, compression: Any, quality: Any) -> None:
    """Refuse a tile size, compression or JPEG quality :func:`write_pyramidal_tiff` cannot use."""
    if not isinstance(tile_size, int) or tile_size < 16 or tile_size % 16:
        raise input_error(path, f"tile_size must be a positive multiple of 16, got {tile_size!r}")
    if compression not in COMPRESSIONS:
        raise input_error(path, f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise input_error(path, f"quality must be an integer in 1..100, got {quality!r}")


def _compression_options(compression: str, quality: int) -> dict[str, Any]:
    """tifffile's ``write`` arguments for a compression of :data:`COMPRESSIONS`."""
    if compression == "jpeg":
        # RGB in, stored as YCbCr with 2 x 2 chroma subsampling (as scanners do)
        return {
            "photometric": "rgb",
            "compression": "jpeg",
            "compressionargs": {"level": quality},
            "subsampling": (2, 2),
        }
    if compression == "deflate":
        return {
            "photometric": "rgb",
            "compression": "zlib",
            "compressionargs": {"level": 6},
            "predictor": True,
        }
    return {"photometric": "rgb", "compression": None}


def _tiles(
    path: Path,
    read: TileReader,
    width: int,
    height: int,
    tile_size: int,
    following: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """Yield full-size tiles in row-major order; reduce each into ``following`` on the way."""
    for y in range(0, height, tile_size):
        for x in range(0, width, tile_size):
            w, h = min(tile_size, width - x), min(tile_size, height - y)
            tile = read(x, y, w, h)
            if tile.shape != (h, w, 3) or tile.dtype != np.uint8:
                raise input_error(
                    path,
                    f"tile source gave {tile.dtype} {tile.shape} at ({x}, {y}), "
                    f"expected uint8 {(h, w, 3)}",
                )
            if following is not None:
                small = _halve(tile)
                following[y // 2 : y // 2 + small.shape[0], x // 2 : x // 2 + small.shape[1]] = (
                    small
                )
            if (h, w) != (tile_size, tile_size):  # edge tile: repeat the border (clean JPEG)
                tile = np.pad(tile, ((0, tile_size - h), (0, tile_size - w), (0, 0)), mode="edge")
            yield tile


def _halve(tile: np.ndarray) -> np.ndarray:
    """2 x 2 box average, the size rounded up (an odd last row or column is repeated)."""
    h, w = tile.shape[:2]
    if h % 2 or w % 2:
        tile = np.pad(tile, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    t = tile.astype(np.uint16)
    total = t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def _level_sizes(
    path: Path, width: int, height: int, tile_size: int, levels: int | None
) -> list[SizeWH]:
    """Sizes of the levels: each half the one before, rounded up."""
    sizes = [(width, height)]
    if levels is None:
        while max(sizes[-1]) > tile_size:
            w, h = sizes[-1]
            sizes.append((math.ceil(w / 2), math.ceil(h / 2)))
        return sizes
    if not isinstance(levels, int) or levels < 1:
        raise input_error(path, f"levels must be a positive integer, got {levels!r}")
    while len(sizes) < levels:
        w, h = sizes[-1]
        if w == 1 and h == 1:
            raise input_error(path, f"{levels} levels do not fit a {width} x {height} image")
        sizes.append((math.ceil(w / 2), math.ceil(h / 2)))
    return sizes


def _allocate(size: SizeWH, scratch: Path) -> np.ndarray:
    """An ``(h, w, 3)`` uint8 buffer: in memory when small, else a scratch memory map."""
    w, h = size
    if w * h * 3 <= _IN_MEMORY_BYTES:
        return np.empty((h, w, 3), np.uint8)
    return np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(h, w, 3))


def _array_reader(array: np.ndarray) -> TileReader:
    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.asarray(array[y : y + h, x : x + w])

    return read


def _as_reader(path: Path, image: Any) -> tuple[int, int, TileReader]:
    """``(width, height, read)`` for an array, a TileSource or a slide."""
    if isinstance(image, TileSource):
        width, height = (int(v) for v in image.size)
        source = image.read

        def read(x: int, y: int, w: int, h: int) -> np.ndarray:
            return _rgb(path, source(x, y, w, h))

    elif hasattr(image, "read_region") and hasattr(image, "dimensions"):
        width, height = (int(v) for v in image.dimensions)
        slide = image

        def read(x: int, y: int, w: int, h: int) -> np.ndarray:
            return slide.read_region((x, y), 0, (w, h))

    elif isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
            raise input_error(path, f"expected an (h, w, 3) image, got shape {image.shape}")
        _rgb(path, image[:1, :1])  # fail early on an unsupported dtype or channel count
        height, width = image.shape[:2]

        def read(x: int, y: int, w: int, h: int) -> np.ndarray:
            return _rgb(path, image[y : y + h, x : x + w])

    else:
        raise input_error(
            path, f"cannot write {type(image).__name__}: pass an array, a TileSource or a slide"
        )
    if width < 1 or height < 1:
        raise input_error(path, f"empty image {width} x {height}")
    return width, height, read


def _rgb(path: Path, block: Any) -> np.ndarray:
    try:
        return to_rgb8(np.asarray(block))
    except MitokitError:
        raise
    except ValueError as exc:
        raise input_error(path, f"cannot write these pixels: {exc}") from exc

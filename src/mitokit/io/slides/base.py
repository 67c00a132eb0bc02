"""The :class:`Slide` interface that every backend implements, and helpers they share.

:class:`Slide` holds what all backends have in common (levels, mpp, properties, region and
thumbnail reading, closing); a backend supplies only how to read a block of pixels lying wholly
inside a level (``_read_inside``) and how to release its resources (``_close``). The mpp checks
and the list of errors a reader library raises on a corrupt file live here too.
"""

from __future__ import annotations

import abc
import math
import operator
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error, positive_float
from mitokit.types import LocationXY, SizeWH

MAX_PLAUSIBLE_MPP = 10.0
"""File mpp values above this (micrometres per pixel) are treated as absent, not trusted."""

_NO_MPP = "no microns-per-pixel in the file; pass mpp=... (CLI: --mpp)"
_THUMB_BAND_PIXELS = 16 * 2**20
"""Pixels of the source level read at once while building a thumbnail."""
_DOWNSAMPLE_TOLERANCE = 0.01
"""Relative slack in :meth:`Slide.get_best_level_for_downsample`; level sizes are rounded."""
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    EOFError,
    NotImplementedError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)
"""What a reader library raises on a corrupt or unsupported file; turned into MitokitError."""


class Slide(abc.ABC):
    """An open slide or image: levels, pixels and microns per pixel.

    Coordinates follow OpenSlide: locations are level-0 pixels ``(x, y)``, sizes are pixels of
    the requested level ``(w, h)``. Pixel data always come back as ``(h, w, 3)`` uint8 RGB.

    Attributes:
        backend: Which library reads the file: ``"openslide"``, ``"tifffile"`` or ``"pillow"``.
    """

    backend: str = ""

    def __init__(
        self,
        path: Path,
        *,
        level_dimensions: Sequence[SizeWH],
        mpp: float | None,
        file_mpp: float | None,
        vendor: str,
        properties: Mapping[str, str],
        objective_power: float | None = None,
        level_downsamples: Sequence[float] | None = None,
    ) -> None:
        self._path = path
        self._level_dimensions = tuple((int(w), int(h)) for w, h in level_dimensions)
        if not self._level_dimensions or any(w < 1 or h < 1 for w, h in self._level_dimensions):
            raise input_error(path, f"empty image (levels {self._level_dimensions})")
        w0, h0 = self._level_dimensions[0]
        if level_downsamples is None:
            level_downsamples = [(w0 / w + h0 / h) / 2 for w, h in self._level_dimensions]
        self._level_downsamples = tuple(float(d) for d in level_downsamples)
        self._mpp_argument = mpp
        self._file_mpp = file_mpp
        self._vendor = vendor
        self._properties = MappingProxyType(dict(properties))
        self._objective_power = objective_power
        self._closed = False

    # -- description ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The file this slide was opened from."""
        return self._path

    @property
    def vendor(self) -> str:
        """The format: OpenSlide's vendor (``aperio``, ``generic-tiff`` ...), ``ome-tiff``,
        ``tiff``, or Pillow's format name in lower case (``png``, ``jpeg`` ...)."""
        return self._vendor

    @property
    def properties(self) -> Mapping[str, str]:
        """Metadata of the file as strings (OpenSlide's properties, TIFF tags, Pillow info)."""
        return self._properties

    @property
    def objective_power(self) -> float | None:
        """The scanner's objective magnification, where the file says so."""
        return self._objective_power

    @property
    def dimensions(self) -> SizeWH:
        """Level-0 ``(width, height)`` in pixels."""
        return self._level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of resolution levels."""
        return len(self._level_dimensions)

    @property
    def level_dimensions(self) -> tuple[SizeWH, ...]:
        """``(width, height)`` of every level, level 0 first."""
        return self._level_dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of every level relative to level 0 (1.0 first)."""
        return self._level_downsamples

    @property
    def mpp(self) -> float:
        """Microns per pixel at level 0: the ``mpp`` given at open time, else the file's.

        Raises:
            MitokitError: Neither was available.
        """
        value = self.mpp_or_none
        if value is None:
            raise input_error(self._path, _NO_MPP)
        return value

    @property
    def mpp_or_none(self) -> float | None:
        """Like :attr:`mpp`, but None instead of an error where it is unknown."""
        return self._mpp_argument if self._mpp_argument is not None else self._file_mpp

    @property
    def mpp_source(self) -> str | None:
        """Where :attr:`mpp` comes from: ``"argument"``, ``"file"``, or None when unknown."""
        if self._mpp_argument is not None:
            return "argument"
        return "file" if self._file_mpp is not None else None

    # -- pixels --------------------------------------------------------------------------------

    def read_region(self, location: LocationXY, level: int, size: SizeWH) -> np.ndarray:
        """Read a region as RGB; pixels outside the image are white.

        At a level above 0, the OpenSlide backend samples at the exact (possibly fractional)
        level position, as OpenSlide does; the other backends start at the level pixel
        ``floor(x / downsample)``, so the two may differ by a sub-pixel shift there.

        Args:
            location: Top-left ``(x, y)`` in level-0 pixels (may be negative).
            level: The level to read from, 0 being the full resolution.
            size: ``(w, h)`` in pixels of ``level``.

        Returns:
            An ``(h, w, 3)`` uint8 array.

        Raises:
            MitokitError: The level does not exist, the size is negative, the slide is closed, or
                the file's data cannot be decoded.
        """
        x, y = _int_pair(self._path, location, "location")
        w, h = _int_pair(self._path, size, "size")
        level = self._check_level(level)
        if w < 0 or h < 0:
            raise input_error(self._path, f"negative region size {w} x {h}")
        self._check_open()
        if w == 0 or h == 0:
            return np.full((h, w, 3), 255, np.uint8)
        return self._read_region(x, y, level, w, h)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The level best suited to display at ``downsample``: the most reduced one that is not
        coarser than asked (with 1 % slack for rounded level sizes).

        Raises:
            MitokitError: ``downsample`` is not a positive number.
        """
        d = float(downsample)
        if not (math.isfinite(d) and d > 0):
            raise input_error(self._path, f"downsample must be a positive number, got {downsample}")
        best = 0
        for level, level_ds in enumerate(self._level_downsamples):
            if level_ds <= d * (1 + _DOWNSAMPLE_TOLERANCE):
                best = level
        return best

    def get_thumbnail(self, size: SizeWH) -> np.ndarray:
        """A reduced RGB image of the whole slide that fits in ``size``, aspect kept.

        The thumbnail is never larger than level 0. It is built from the best level for its
        scale, read band by band, so memory stays bounded even on a single-level image.

        Args:
            size: The largest ``(width, height)`` allowed.

        Returns:
            An ``(h, w, 3)`` uint8 array with ``w <= size[0]`` and ``h <= size[1]``.
        """
        from PIL import Image

        max_w, max_h = _int_pair(self._path, size, "thumbnail size")
        if max_w < 1 or max_h < 1:
            raise input_error(self._path, f"thumbnail size must be positive, got {size}")
        self._check_open()
        w0, h0 = self.dimensions
        scale = min(max_w / w0, max_h / h0, 1.0)
        tw, th = max(1, min(max_w, round(w0 * scale))), max(1, min(max_h, round(h0 * scale)))
        level = self.get_best_level_for_downsample(max(w0 / tw, h0 / th))
        lw, lh = self._level_dimensions[level]
        fy = lh / th
        band_rows = max(1, int(_THUMB_BAND_PIXELS // max(1.0, lw * fy)))
        out = np.empty((th, tw, 3), np.uint8)
        for r0 in range(0, th, band_rows):
            r1 = min(th, r0 + band_rows)
            top, bottom = r0 * fy, r1 * fy
            sy0, sy1 = math.floor(top), min(lh, math.ceil(bottom))
            band = self._read_level(level, 0, sy0, lw, sy1 - sy0)
            image = Image.fromarray(band).resize(
                (tw, r1 - r0), Image.Resampling.BOX, box=(0, top - sy0, lw, bottom - sy0)
            )
            out[r0:r1] = np.asarray(image)
        return out

    # -- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file; reading afterwards raises MitokitError."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return (
            f"<{type(self).__name__} {self._path.name!r} backend={self.backend} "
            f"{w}x{h} levels={self.level_count} mpp={self.mpp_or_none}>"
        )

    # -- backend hooks -------------------------------------------------------------------------

    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        """Read at level-0 location ``(x, y)``; the default maps it onto level pixels."""
        ds = self._level_downsamples[level]
        return self._read_level(level, math.floor(x / ds), math.floor(y / ds), w, h)

    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Read at ``(lx, ly)`` in pixels of ``level``; outside the level is white."""
        out = np.full((h, w, 3), 255, np.uint8)
        lw, lh = self._level_dimensions[level]
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        if x0 < x1 and y0 < y1:
            try:
                block = self._read_inside(level, x0, y0, x1 - x0, y1 - y0)
            except MitokitError:
                raise
            except _DECODE_ERRORS as exc:
                raise input_error(
                    self._path, f"cannot decode level {level} at ({x0}, {y0}): {exc}"
                ) from exc
            out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = block
        return out

    @abc.abstractmethod
    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read an RGB uint8 block lying wholly inside ``level`` (level pixels)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the backend's resources."""

    def _check_level(self, level: int) -> int:
        try:
            level = operator.index(level)
        except TypeError:
            raise input_error(self._path, f"level must be an integer, got {level!r}") from None
        if not 0 <= level < self.level_count:
            raise input_error(
                self._path, f"level {level} out of range (the slide has {self.level_count})"
            )
        return level

    def _check_open(self) -> None:
        if self._closed:
            raise input_error(self._path, "slide is closed")


def _check_mpp_argument(path: Path, mpp: float | None) -> float | None:
    return None if mpp is None else positive_float(path, mpp, "mpp")


def _plausible_mpp(value: float | None) -> float | None:
    """A file's mpp if it is a microscope's (0 < mpp <= MAX_PLAUSIBLE_MPP), else None."""
    if value is None or not math.isfinite(value) or not 0 < value <= MAX_PLAUSIBLE_MPP:
        return None
    return float(value)


def _to_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int_pair(path: Path, pair: Any, what: str) -> tuple[int, int]:
    try:
        a, b = pair
        return operator.index(a), operator.index(b)
    except (TypeError, ValueError):
        raise input_error(path, f"{what} must be two integers, got {pair!r}") from None

"""In-memory slides: let every data function take a numpy image or a slide alike.

The functions of :mod:`mitokit.data` read pixels through the slide interface of
:mod:`mitokit.io.slides` (``dimensions``, ``level_count``, ``level_dimensions``,
``level_downsamples``, ``read_region``, ``get_thumbnail``). :class:`ArraySlide` gives an
``HxWx3`` uint8 array that interface, so a frame loaded with Pillow, a synthetic image or a test
array goes through exactly the same code as a whole-slide image. :func:`as_slide` does the
wrapping where needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mitokit.errors import input_error
from mitokit.types import LocationXY, SizeWH

WHITE = 255
"""What a slide reader returns outside the image (and the default padding)."""


@runtime_checkable
class SlideLike(Protocol):
    """The part of the slide interface that :mod:`mitokit.data` needs.

    ``level_count``, ``level_dimensions``, ``level_downsamples``, ``get_thumbnail`` and ``mpp``
    are used when present; a reader without levels counts as one level of downsample 1.
    """

    @property
    def dimensions(self) -> SizeWH:  # pragma: no cover - protocol
        """Size (width, height) of level 0."""
        ...

    def read_region(
        self, location: LocationXY, level: int, size: SizeWH
    ) -> np.ndarray:  # pragma: no cover - protocol
        """Read ``size`` (w, h) pixels of ``level`` at level-0 ``location`` as HxWx3 uint8."""
        ...


class ArraySlide:
    """An ``HxWx3`` uint8 RGB array seen as a slide.

    Args:
        image: The level-0 pixels, ``HxWx3`` uint8 RGB (a 2-D grey image or RGBA is converted).
        mpp: Microns per pixel of level 0, or None when unknown.
        downsamples: Downsample factor of each level; level 0 must be 1. Lower levels are built
            lazily by block averaging (integer factors only). Defaults to one level.
        name: What messages call the image (a path or an id).

    Attributes:
        image: The level-0 array.
        mpp: Microns per pixel, or None.
        name: Name used in messages, or None.
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        mpp: float | None = None,
        downsamples: Sequence[int] = (1,),
        name: str | os.PathLike | None = None,
    ) -> None:
        self.name = None if name is None else os.fspath(name)
        self.image = _as_rgb_uint8(image, self.name)
        if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
            raise input_error(self.name, f"mpp must be a positive number, got {mpp}")
        self.mpp = None if mpp is None else float(mpp)
        factors = [int(d) for d in downsamples]
        if not factors or factors[0] != 1 or any(d < 1 for d in factors):
            raise input_error(self.name, f"downsamples must start with 1 and be >= 1: {factors}")
        self._factors = factors
        self._levels: dict[int, np.ndarray] = {0: self.image}

    @property
    def dimensions(self) -> SizeWH:
        """Size (width, height) of level 0."""
        return (int(self.image.shape[1]), int(self.image.shape[0]))

    @property
    def level_count(self) -> int:
        """Number of levels."""
        return len(self._factors)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        return tuple(float(d) for d in self._factors)

    @property
    def level_dimensions(self) -> tuple[SizeWH, ...]:
        """Size (width, height) of each level (floor of level 0 / factor)."""
        w, h = self.dimensions
        return tuple((w // d, h // d) for d in self._factors)

    def _level(self, level: int) -> np.ndarray:
        if not (0 <= level < self.level_count):
            raise input_error(
                self.name, f"level {level} does not exist (the image has {self.level_count})"
            )
        if level not in self._levels:
            d = self._factors[level]
            w, h = self.level_dimensions[level]
            block = self.image[: h * d, : w * d].astype(np.float32)
            block = block.reshape(h, d, w, d, 3).mean(axis=(1, 3))
            self._levels[level] = np.clip(np.rint(block), 0, 255).astype(np.uint8)
        return self._levels[level]

    def read_region(self, location: LocationXY, level: int, size: SizeWH) -> np.ndarray:
        """Read a region as the slide readers do.

        Args:
            location: Top-left (x, y) in level-0 pixels.
            level: Level to read from.
            size: (width, height) in pixels of ``level``.

        Returns:
            ``size[1] x size[0] x 3`` uint8 RGB; parts outside the image are white.
        """
        arr = self._level(int(level))
        w, h = int(size[0]), int(size[1])
        if w < 0 or h < 0:
            raise input_error(self.name, f"region size must be non-negative, got {size}")
        d = self._factors[int(level)]
        x0 = math.floor(location[0] / d)
        y0 = math.floor(location[1] / d)
        return crop_padded(arr, x0, y0, w, h, pad_value=WHITE)

    def get_thumbnail(self, size: SizeWH) -> np.ndarray:
        """The whole image shrunk to fit in ``size`` (max width, max height), aspect kept."""
        from PIL import Image

        w, h = self.dimensions
        scale = min(size[0] / w, size[1] / h, 1.0)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        if (tw, th) == (w, h):
            return self.image.copy()
        return np.asarray(Image.fromarray(self.image).resize((tw, th), Image.Resampling.BOX))

    def close(self) -> None:
        """Nothing to release; present for the slide interface."""

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"ArraySlide({w}x{h}, levels={self.level_count}, name={self.name!r})"


def crop_padded(
    arr: np.ndarray, x0: int, y0: int, w: int, h: int, *, pad_value: int = WHITE
) -> np.ndarray:
    """``arr[y0:y0+h, x0:x0+w]`` with the parts outside ``arr`` filled with ``pad_value``."""
    out = np.full((h, w) + arr.shape[2:], pad_value, dtype=arr.dtype)
    H, W = arr.shape[:2]
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + w, W), min(y0 + h, H)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = arr[sy0:sy1, sx0:sx1]
    return out


def _as_rgb_uint8(image: Any, name: str | None) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise input_error(name, f"image must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise input_error(name, f"image must be HxWx3 RGB, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise input_error(name, f"image is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def as_slide(source: Any, *, name: str | os.PathLike | None = None) -> SlideLike:
    """Return ``source`` if it is slide-like, else wrap an array in :class:`ArraySlide`.

    Args:
        source: An object with ``read_region`` and ``dimensions`` (a slide), or an ``HxWx3``
            uint8 array.
        name: Name for messages when an array is wrapped.

    Raises:
        MitokitError: ``source`` is neither.
    """
    if hasattr(source, "read_region") and hasattr(source, "dimensions"):
        return source
    if isinstance(source, np.ndarray):
        return ArraySlide(source, name=name)
    raise input_error(
        name, f"expected a slide or an HxWx3 uint8 array, got {type(source).__name__}"
    )


def slide_name(slide: Any) -> str | None:
    """The best name of a slide for messages (its path or name), or None."""
    for attr in ("path", "name", "filename", "_filename"):
        value = getattr(slide, attr, None)
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
    return None


def level_downsample(slide: Any, level: int) -> float:
    """Downsample factor of ``level`` (1.0 for level 0 of a reader without levels).

    Raises:
        MitokitError: The level does not exist.
    """
    downsamples = tuple(getattr(slide, "level_downsamples", None) or (1.0,))
    if not (0 <= int(level) < len(downsamples)):
        raise input_error(
            slide_name(slide), f"level {level} does not exist (the slide has {len(downsamples)})"
        )
    return float(downsamples[int(level)])


def level_size(slide: Any, level: int) -> SizeWH:
    """Size (width, height) of ``level``.

    Raises:
        MitokitError: The level does not exist.
    """
    ds = level_downsample(slide, level)
    dims = getattr(slide, "level_dimensions", None)
    if dims is not None and int(level) < len(dims):
        w, h = dims[int(level)]
        return (int(w), int(h))
    w0, h0 = slide.dimensions
    return (int(w0 // ds), int(h0 // ds))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Load an image file (PNG, JPEG, TIFF ...) with Pillow as ``HxWx3`` uint8 RGB.

    Raises:
        MitokitError: The file is missing or not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise input_error(p, "file not found")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise input_error(p, f"cannot read image ({exc})") from exc


__all__ = [
    "WHITE",
    "ArraySlide",
    "SlideLike",
    "as_slide",
    "crop_padded",
    "level_downsample",
    "level_size",
    "read_rgb",
    "slide_name",
]

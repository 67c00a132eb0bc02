"""Upper bounds of synthetic requests, checked before any work starts.

A mistyped size (``--width 1000000000``) must fail at once with one line, not render for hours
or ask for petabytes. The bounds:

- slide sides: :data:`MAX_SLIDE_SIDE` pixels (the largest real whole slides are about 150,000
  pixels a side at 0.25 um/px);
- tile and patch sides: :data:`MAX_TILE_SIDE` pixels;
- and, where cheap to know, what the request needs against what the machine has: the memory
  of a patch batch (held whole), of a slide's cell table and labels, and the disk space of the
  images written (estimated from below, so a refusal is certain to be right).

Each check raises :class:`~mitokit.errors.MitokitError` with a one-line message.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
from pathlib import Path

from mitokit.errors import input_error

MAX_SLIDE_SIDE = 200_000
"""Longest side of a synthetic slide, in pixels."""

MIN_SLIDE_SIDE = 16
"""Shortest side of a synthetic slide, in pixels."""

MAX_TILE_SIDE = 8192
"""Longest side of a synthetic tile or patch, in pixels."""

CELLS_PER_UM2 = 2e-3
"""Cells per square micrometre of slide (glass included), a little under what the generator
makes with its default scene (2.2e-3 to 2.7e-3 measured)."""

BYTES_PER_CELL = 600
"""Memory per cell of a slide without labels (cell table and rendering state, measured)."""

BYTES_PER_LABELLED_CELL = 6000
"""Memory per cell of a slide with its label files (votes, consensus, crowd boxes, measured)."""

PNG_BYTES_PER_PIXEL = 0.25
"""Disk per pixel of a synthetic tile as PNG, from below (about 0.5 measured)."""

JPEG_BYTES_PER_PIXEL = 0.05
"""Disk per level-0 pixel of a synthetic slide as JPEG tiles, from below (about 0.27 measured)."""


def check_side(value: object, *, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a one-line error naming ``name``."""
    whole = isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value)
    if isinstance(value, bool) or not whole:
        raise input_error(None, f"{name} must be a whole number of pixels, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise input_error(
            None, f"{name} must be between {low:,} and {high:,} pixels, got {value:,}"
        )
    return value


def check_count(value: object, *, name: str = "n") -> int:
    """``value`` as an int >= 1, or a one-line error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise input_error(None, f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def check_patches(n: int, size: int) -> None:
    """Refuse a patch batch that cannot be held in memory (the batch is one array)."""
    need = int(n) * int(size) ** 2 * 3
    _fits_memory(need, f"{n:,} patches of {size} x {size} pixels")


def check_tiles(n: int, size: int, out: str | os.PathLike | None = None) -> None:
    """Refuse tiles whose PNG files cannot fit on the disk of ``out``."""
    if out is not None:
        need = int(int(n) * int(size) ** 2 * PNG_BYTES_PER_PIXEL)
        _fits_disk(need, out, f"{n:,} tiles of {size} x {size} pixels")


def check_slide(
    width: int,
    height: int,
    *,
    mpp: float,
    labels: bool = True,
    out: str | os.PathLike | None = None,
) -> None:
    """Refuse a slide whose cells (and labels) cannot be held in memory or whose file cannot
    fit on the disk of ``out``; the sides themselves are checked by :func:`check_side`."""
    area_um2 = float(width) * float(height) * float(mpp) ** 2
    cells = area_um2 * CELLS_PER_UM2
    per_cell = BYTES_PER_LABELLED_CELL if labels else BYTES_PER_CELL
    what = f"a {width:,} x {height:,} pixel slide at {mpp} um/px (about {cells:,.0f} cells"
    _fits_memory(int(cells * per_cell), what + (", with labels)" if labels else ")"))
    if out is not None:
        need = int(float(width) * float(height) * JPEG_BYTES_PER_PIXEL)
        _fits_disk(need, out, f"a {width:,} x {height:,} pixel slide")


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def available_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system ``path`` would be on (its nearest existing folder)."""
    p = Path(os.path.abspath(path))
    for above in (p, *p.parents):
        if above.is_dir():
            try:
                return shutil.disk_usage(above).free
            except OSError:
                return None
    return None


def _fits_memory(need: int, what: str) -> None:
    have = available_memory()
    if have is not None and need > have:
        raise input_error(
            None, f"{what}: about {_size(need)} of memory needed, {_size(have)} available"
        )


def _fits_disk(need: int, out: str | os.PathLike, what: str) -> None:
    have = available_disk(out)
    if have is not None and need > have:
        raise input_error(
            out, f"{what}: at least about {_size(need)} of disk needed, {_size(have)} free"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


__all__ = [
    "MAX_SLIDE_SIDE",
    "MAX_TILE_SIDE",
    "MIN_SLIDE_SIDE",
    "available_disk",
    "available_memory",
    "check_count",
    "check_patches",
    "check_side",
    "check_slide",
    "check_tiles",
]

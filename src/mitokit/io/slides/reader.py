"""The quickest reader of one slide level that gives the same pixels as :func:`open_slide`.

OpenSlide paints every region it reads onto a premultiplied ARGB surface and openslide-python
converts that to an RGBA image: on this project's 2-core benchmark machine 1.2 ms for a
250-pixel region whose tile is already decoded, 1.4-1.8 ms per tile read in a slide's plan
order. A tiled TIFF (the generic pyramidal TIFFs converters write, Aperio SVS) can be read
through tifffile instead, which decodes each tile once into its cache and copies the pixels
out: 0.19-0.43 ms per tile on the same machine and slides (``read_ms_per_tile`` of
``benchmarks/slide_inference.py``).

The two must agree, so the choice is checked on the slide itself: a few regions of the level
to be read are read through both, and tifffile is used only where every pixel is equal (at a
level whose downsample is not a whole number OpenSlide samples at fractional positions, so
tifffile is refused there; a JPEG decoder set up differently is refused the same way).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mitokit.io.slides.base import Slide

READERS = ("auto", "slide")
"""``auto``: the tifffile reader where it equals OpenSlide's pixels; ``slide``: ``open_slide``'s."""


def region_reader(
    path: str | os.PathLike,
    *,
    mpp: float | None,
    level: int,
    size: tuple[int, int],
    probes: Sequence[tuple[int, int]],
    reader: str = "auto",
    backend: str | None = None,
) -> tuple[Callable[[], Slide], str]:
    """An opener of new handles on ``path`` for reading many regions of one level, and its name.

    Args:
        path: The slide.
        mpp: Microns per pixel passed to every handle (as to :func:`open_slide`).
        level: The level the regions are read from.
        size: ``(w, h)`` of the regions, pixels of ``level``.
        probes: Level-0 ``(x, y)`` of regions to compare (say, a few tiles on tissue).
        reader: ``"auto"`` or ``"slide"`` (always :func:`open_slide`'s backend).
        backend: The backend :func:`open_slide` gives ``path``, where the caller knows it (so
            the slide is opened here only to compare readers); None finds it out.

    Returns:
        ``(opener, backend)``: ``opener()`` opens a new handle; ``backend`` is its backend's
        name (``"tifffile"``, ``"openslide"``, ...).

    Raises:
        ValueError: An unknown ``reader``.
        MitokitError: The slide cannot be opened.
    """
    from mitokit.io.slides import open_slide
    from mitokit.io.slides.tiff_backend import _TiffSlide

    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    path = Path(os.fspath(path))

    def default() -> Slide:
        return open_slide(path, mpp=mpp)

    same = False
    if backend is None or (reader == "auto" and backend == "openslide"):
        with default() as slide:
            backend = slide.backend
            if reader == "auto" and backend == "openslide":
                same = _tiff_agrees(path, mpp, slide, level, size, probes)
    if not same:
        return default, backend

    def tiff_opener() -> Slide:
        return _TiffSlide(path, mpp=mpp)

    return tiff_opener, "tifffile"


def _tiff_agrees(
    path: Path,
    mpp: float | None,
    slide: Slide,
    level: int,
    size: tuple[int, int],
    probes: Sequence[tuple[int, int]],
) -> bool:
    """Whether tifffile reads ``path`` as ``slide`` does; False for any trouble (a file that is
    not a TIFF, one tifffile cannot decode): it is only a quicker way."""
    from mitokit.io.slides.tiff_backend import _TiffSlide

    try:
        with _TiffSlide(path, mpp=mpp) as tiff:
            return _same_pixels(slide, tiff, level, size, probes)
    except Exception:  # noqa: BLE001 - OpenSlide stays the reader
        return False


def _same_pixels(
    a: Slide, b: Slide, level: int, size: tuple[int, int], probes: Sequence[tuple[int, int]]
) -> bool:
    """Whether two handles have the same levels and equal pixels in every probed region."""
    dims_a = [tuple(d) for d in a.level_dimensions]
    if dims_a != [tuple(d) for d in b.level_dimensions] or not len(probes):
        return False
    if abs(a.level_downsamples[level] - b.level_downsamples[level]) > 1e-9:
        return False
    for x, y in probes:
        ra = a.read_region((int(x), int(y)), level, size)
        rb = b.read_region((int(x), int(y)), level, size)
        if not np.array_equal(ra, rb):
            return False
    return True

"""Open whole-slide images and plain images behind one interface.

:func:`open_slide` picks a backend from the file's content, not its extension:

- ``openslide``: every format OpenSlide recognises (Aperio svs, Hamamatsu ndpi/vms, MIRAX mrxs,
  Leica scn, Ventana bif, tiled pyramidal TIFF ...), read through openslide-python.
- ``tifffile``: OME-TIFF and every other TIFF (stripped, untiled, multi-series, or tiled with a
  codec OpenSlide lacks, such as WebP or JPEG 2000 outside an Aperio file). Regions are read
  tile by tile (or strip by strip), so memory stays bounded on large tiled pages; uncompressed
  pages are memory-mapped.
- ``pillow``: PNG, JPEG, BMP and the other formats Pillow reads. The image is decoded once at open
  time, so a truncated file fails there and not half-way through an analysis.

Whatever the backend, :meth:`Slide.read_region` returns an ``(h, w, 3)`` uint8 RGB array, with
``(x, y)`` in level-0 pixels and ``(w, h)`` in pixels of the requested level, as OpenSlide does.
Pixels outside the image are white; transparent pixels are composited onto white; greyscale and
palette images become RGB; 16-bit samples are scaled linearly to 8 bits (``v / 257``, the full
16-bit range onto 0..255, whatever range the file actually uses).

Microns per pixel (mpp) come from the file when it has a plausible value (OpenSlide's
``openslide.mpp-x``, TIFF resolution tags in centimetres or inches, OME ``PhysicalSizeX``, PNG/JPEG
DPI); values above :data:`MAX_PLAUSIBLE_MPP` (such as the 72/96 dpi defaults of image editors)
are ignored. An ``mpp`` given to :func:`open_slide` overrides the file's. Opening never fails for a
missing mpp; reading :attr:`Slide.mpp` does, with a message that says to pass one.
"""

from __future__ import annotations

import os
from pathlib import Path

from mitokit.errors import MitokitError, input_error
from mitokit.io.slides.base import MAX_PLAUSIBLE_MPP, Slide, _check_mpp_argument
from mitokit.io.slides.color import to_rgb8
from mitokit.io.slides.openslide_backend import _openslide_format, _OpenSlideSlide
from mitokit.io.slides.pillow_backend import _PillowSlide
from mitokit.io.slides.tiff_backend import _is_ome_tiff, _TiffSlide

__all__ = ["MAX_PLAUSIBLE_MPP", "Slide", "open_slide", "to_rgb8"]

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_slide(path: str | os.PathLike, *, mpp: float | None = None) -> Slide:
    """Open a whole-slide image or a plain image, choosing the backend from its content.

    Args:
        path: The slide or image file.
        mpp: Microns per pixel at level 0. Overrides the file's value; needed where the file has
            none before :attr:`Slide.mpp` can be read.

    Returns:
        An open :class:`Slide`; close it, or use it as a context manager.

    Raises:
        MitokitError: The file is missing, a directory, unreadable, of an unknown format or
            corrupt, or ``mpp`` is not a positive number.
    """
    path = Path(os.fspath(path))
    mpp = _check_mpp_argument(path, mpp)
    if not path.exists():
        raise input_error(path, "no such file")
    if path.is_dir():
        raise input_error(path, "is a directory, not a slide or image file")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise input_error(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if not head:
        raise input_error(path, "empty file")

    if head[:4] in _TIFF_MAGICS:
        if not _is_ome_tiff(path) and _openslide_format(path) is not None:
            try:
                return _OpenSlideSlide(path, mpp=mpp)
            except MitokitError as exc:  # a codec OpenSlide lacks (WebP, JPEG 2000 in a TIFF)
                try:
                    return _TiffSlide(path, mpp=mpp)
                except Exception:  # noqa: BLE001 - OpenSlide's message says more
                    raise exc from None
        return _TiffSlide(path, mpp=mpp)
    if _openslide_format(path) is not None:
        return _OpenSlideSlide(path, mpp=mpp)
    return _PillowSlide(path, mpp=mpp)

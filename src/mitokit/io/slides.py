"""Open whole-slide images and plain images behind one interface.

:func:`open_slide` picks a backend from the file's content, not its extension:

- ``openslide``: every format OpenSlide recognises (Aperio svs, Hamamatsu ndpi/vms, MIRAX mrxs,
  Leica scn, Ventana bif, tiled pyramidal TIFF ...), read through openslide-python.
- ``tifffile``: OME-TIFF and every other TIFF (stripped, untiled, multi-series). Regions are read
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

import abc
import contextlib
import logging
import math
import operator
import os
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error
from mitokit.types import LocationXY, SizeWH

__all__ = ["MAX_PLAUSIBLE_MPP", "Slide", "open_slide", "to_rgb8"]

MAX_PLAUSIBLE_MPP = 10.0
"""File mpp values above this (micrometres per pixel) are treated as absent, not trusted."""

_NO_MPP = "no microns-per-pixel in the file; pass mpp=... (CLI: --mpp)"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_WHOLE_PAGE_PIXELS = 64 * 2**20
"""A TIFF page this small may be decoded whole when its tiles cannot be decoded one by one."""
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

_LENGTH_UNITS_UM = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
}
"""Length units of OME ``PhysicalSizeXUnit`` and ImageJ ``unit``, in micrometres."""


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
            return _OpenSlideSlide(path, mpp=mpp)
        return _TiffSlide(path, mpp=mpp)
    if _openslide_format(path) is not None:
        return _OpenSlideSlide(path, mpp=mpp)
    return _PillowSlide(path, mpp=mpp)


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


# ----------------------------------------------------------------------------------------------
# OpenSlide


class _OpenSlideSlide(Slide):
    """Formats OpenSlide reads, through openslide-python."""

    backend = "openslide"

    def __init__(self, path: Path, *, mpp: float | None) -> None:
        import openslide

        self._error = openslide.OpenSlideError
        try:
            self._osr = openslide.OpenSlide(os.fspath(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise input_error(path, f"OpenSlide cannot open it: {exc}") from exc
        props = dict(self._osr.properties)
        file_mpp = _plausible_mpp(_to_float(props.get("openslide.mpp-x")))
        if file_mpp is None and props.get("openslide.vendor") == "generic-tiff":
            with contextlib.suppress(Exception):  # the resolution tags are optional extras
                file_mpp = _tiff_file_mpp(path)
        super().__init__(
            path,
            level_dimensions=self._osr.level_dimensions,
            level_downsamples=self._osr.level_downsamples,
            mpp=mpp,
            file_mpp=file_mpp,
            vendor=props.get("openslide.vendor", "unknown"),
            properties=props,
            objective_power=_to_float(props.get("openslide.objective-power")),
        )

    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        try:
            rgba = np.asarray(self._osr.read_region((x, y), level, (w, h)))
        except self._error as exc:
            raise input_error(self._path, f"OpenSlide cannot read level {level}: {exc}") from exc
        return to_rgb8(rgba)

    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        ds = self._level_downsamples[level]
        return self._read_region(round(lx * ds), round(ly * ds), level, w, h)

    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._read_level(level, x, y, w, h)

    def _close(self) -> None:
        self._osr.close()


def _openslide_format(path: Path) -> str | None:
    """OpenSlide's name for the file's format, or None where OpenSlide does not read it."""
    import openslide

    try:
        return openslide.OpenSlide.detect_format(os.fspath(path))
    except (openslide.OpenSlideError, OSError):
        return None


# ----------------------------------------------------------------------------------------------
# tifffile


class _TiffLevel:
    """One resolution level of a TIFF series: its page(s) and how to turn samples into RGB."""

    def __init__(self, pages: Sequence[Any]) -> None:
        self.pages = list(pages)
        key = self.pages[0].keyframe
        self.key = key
        self.width, self.height = int(key.imagewidth), int(key.imagelength)
        self.photometric = int(key.photometric)
        self.extrasamples = tuple(int(v) for v in (key.extrasamples or ()))
        self.colormap = key.colormap if self.photometric == 3 else None
        self._memmaps: dict[int, np.ndarray] = {}
        self._whole: dict[int, np.ndarray] = {}
        if int(key.imagedepth) != 1:
            raise ValueError("volumetric TIFF pages are not supported")

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 block inside the level."""
        blocks = [self._read_page(i, x, y, w, h) for i in range(len(self.pages))]
        raw = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)
        return self._to_rgb(raw)

    def data_end(self) -> int:
        """The file offset just past the level's last byte of image data."""
        end = 0
        for page in self.pages:
            offsets = np.asarray(page.dataoffsets, np.int64)
            counts = np.asarray(page.databytecounts, np.int64)
            n = min(len(offsets), len(counts))
            if n:
                end = max(end, int((offsets[:n] + counts[:n]).max()))
        return end

    def close(self) -> None:
        self._memmaps.clear()
        self._whole.clear()

    def _to_rgb(self, raw: np.ndarray) -> np.ndarray:
        if self.photometric == 3 and self.colormap is not None:  # palette
            colormap = np.asarray(self.colormap)
            rgb = colormap[:, raw[..., 0].astype(np.intp)].transpose(1, 2, 0)
            return to_rgb8(rgb if colormap.max() > 255 else rgb.astype(np.uint8))
        if self.photometric == 0:  # min-is-white
            raw = ~raw if raw.dtype == np.bool_ else np.iinfo(raw.dtype).max - raw
        elif self.photometric not in (1, 2, 6):
            raise ValueError(f"unsupported TIFF photometric interpretation {self.photometric}")
        elif self.photometric == 6 and self.key.compression not in (6, 7, 33007, 34892):
            raise ValueError("YCbCr TIFF without JPEG compression is not supported")
        premultiplied = bool(self.extrasamples) and self.extrasamples[0] == 1
        if self.extrasamples and self.extrasamples[0] == 0:  # unspecified: not alpha
            colours = 1 if self.photometric in (0, 1) else 3
            raw = raw[..., :colours]
        return to_rgb8(raw, premultiplied=premultiplied)

    def _read_page(self, index: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        page = self.pages[index]
        key = page.keyframe
        if page.is_memmappable:
            return self._read_memmap(index, x, y, w, h)
        try:
            return self._read_segments(page, x, y, w, h)
        except _DECODE_ERRORS:
            if self.width * self.height > _WHOLE_PAGE_PIXELS:
                raise
        whole = self._whole.get(index)
        if whole is None:
            whole = page.asarray()
            if whole.ndim == 2:
                whole = whole[..., None]
            elif key.planarconfig == 2 and key.samplesperpixel > 1:
                whole = np.moveaxis(whole, 0, -1)
            self._whole[index] = whole
        return whole[y : y + h, x : x + w]

    def _read_memmap(self, index: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        mm = self._memmaps.get(index)
        if mm is None:
            page = self.pages[index]
            key = page.keyframe
            dtype = key.dtype.newbyteorder(page.parent.byteorder)
            mm = np.memmap(
                page.parent.filehandle.path,
                dtype=dtype,
                mode="r",
                offset=page.dataoffsets[0],
                shape=key.shaped,
            )
            self._memmaps[index] = mm
        block = mm[:, 0, y : y + h, x : x + w, :]  # (separate, h, w, contig)
        block = np.moveaxis(block, 0, -2).reshape(h, w, -1)
        return block.astype(block.dtype.newbyteorder("="), copy=True)

    @staticmethod
    def _read_segments(page: Any, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Decode only the tiles (or strips) the block touches."""
        key = page.keyframe
        separate, _, height, width, contig = key.shaped
        if key.is_tiled:
            seg_h, seg_w = int(key.tilelength), int(key.tilewidth)
        else:
            seg_h, seg_w = min(int(key.rowsperstrip), height), width
        across, down = math.ceil(width / seg_w), math.ceil(height / seg_h)
        rows = range(y // seg_h, (y + h - 1) // seg_h + 1)
        cols = range(x // seg_w, (x + w - 1) // seg_w + 1)
        indices = [
            s * across * down + r * across + c for s in range(separate) for r in rows for c in cols
        ]
        offsets, counts = page.dataoffsets, page.databytecounts
        if max(indices) >= min(len(offsets), len(counts)):
            raise ValueError("tile or strip offsets are missing")
        fill = np.iinfo(key.dtype).max if key.dtype.kind in "ui" else 1
        out = np.full((h, w, separate * contig), fill, key.dtype)
        decode_args: dict[str, Any] = {"_fullsize": True}
        if key.compression in (6, 7, 33007, 34892):
            decode_args.update(jpegtables=page.jpegtables, jpegheader=key.jpegheader)
        fh = page.parent.filehandle
        segments = fh.read_segments(
            [offsets[i] for i in indices],
            [counts[i] for i in indices],
            indices=indices,
            sort=True,
            lock=fh.lock,
            flat=True,
        )
        for data, index in segments:
            segment, (s, _, sy, sx, _), _ = key.decode(data, index, **decode_args)
            if segment is None:  # sparse: no data stored, left white
                continue
            segment = segment[0]
            oy0, oy1 = max(y, sy), min(y + h, sy + segment.shape[0])
            ox0, ox1 = max(x, sx), min(x + w, sx + segment.shape[1])
            if oy0 < oy1 and ox0 < ox1:
                out[oy0 - y : oy1 - y, ox0 - x : ox1 - x, s * contig : (s + 1) * contig] = segment[
                    oy0 - sy : oy1 - sy, ox0 - sx : ox1 - sx
                ]
        return out


class _TiffSlide(Slide):
    """TIFF and OME-TIFF through tifffile, reading only the tiles a region needs."""

    backend = "tifffile"

    def __init__(self, path: Path, *, mpp: float | None) -> None:
        import tifffile

        try:
            with _quiet_tifffile():
                self._tif = tifffile.TiffFile(path)
        except _DECODE_ERRORS as exc:
            raise input_error(path, f"not a readable TIFF: {exc}") from exc
        try:
            with _quiet_tifffile():
                series, series_index = _main_series(self._tif)
                self._levels = [_TiffLevel(_level_pages(level)) for level in series.levels]
            file_size = path.stat().st_size
            for level in self._levels:
                if level.data_end() > file_size:
                    raise input_error(
                        path, "truncated file: image data extend beyond the end of the file"
                    )
            is_ome = bool(self._tif.is_ome)
            file_mpp = _ome_mpp(self._tif, series_index) if is_ome else None
            if file_mpp is None:
                file_mpp = _tiff_tags_mpp(self._tif, self._levels[0].key)
            properties, objective_power = _tiff_properties(self._tif, self._levels[0].key)
            super().__init__(
                path,
                level_dimensions=[(lv.width, lv.height) for lv in self._levels],
                mpp=mpp,
                file_mpp=file_mpp,
                vendor="ome-tiff" if is_ome else "tiff",
                properties=properties,
                objective_power=objective_power,
            )
        except MitokitError:
            self._tif.close()
            raise
        except _DECODE_ERRORS as exc:
            self._tif.close()
            raise input_error(path, f"not a readable TIFF: {exc}") from exc

    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        with _quiet_tifffile():
            return self._levels[level].read(x, y, w, h)

    def _close(self) -> None:
        for level in self._levels:
            level.close()
        self._tif.close()


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log for the block: its warnings about a broken file would reach
    stderr beside our one-line error. Problems are reported as MitokitError instead."""
    log = logging.getLogger("tifffile")
    saved = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = saved


def _is_ome_tiff(path: Path) -> bool:
    """Whether a TIFF file carries OME-XML (read from its first page only)."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # unreadable: the TIFF backend reports it properly
        return False


def _main_series(tif: Any) -> tuple[Any, int]:
    """The series holding the image: the largest 2-D one (labels and macros are smaller)."""
    best, best_index, best_area = None, -1, 0
    for index, series in enumerate(tif.series):
        axes = series.axes
        if "Y" not in axes or "X" not in axes:
            continue
        area = series.shape[axes.index("Y")] * series.shape[axes.index("X")]
        if area > best_area:
            best, best_index, best_area = series, index, area
    if best is None:
        raise ValueError("no 2-D image in the file")
    return best, best_index


def _level_pages(level: Any) -> list[Any]:
    """The page(s) of one level: one page, or three greyscale pages of an RGB channel axis."""
    pages = [p for p in level.pages if p is not None]
    if not pages:
        raise ValueError("a level has no pages")
    first = pages[0].keyframe
    other_axes = {a: n for a, n in zip(level.axes, level.shape, strict=False) if a not in "YXS"}
    if (
        first.samplesperpixel == 1
        and other_axes.get("C") in (3, 4)
        and len(pages) >= 3
        and level.axes[0] == "C"
        and all(n == 1 for a, n in other_axes.items() if a != "C")
    ):
        return pages[:3]
    return pages[:1]


def _ome_mpp(tif: Any, series_index: int) -> float | None:
    """``PhysicalSizeX`` of the OME image that the series shows, in micrometres."""
    root = ET.fromstring(tif.ome_metadata)
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if not pixels:
        return None
    element = pixels[series_index] if series_index < len(pixels) else pixels[0]
    size = _to_float(element.get("PhysicalSizeX"))
    factor = _LENGTH_UNITS_UM.get(element.get("PhysicalSizeXUnit", "µm"))
    if size is None or factor is None:
        return None
    return _plausible_mpp(size * factor)


def _tiff_tags_mpp(tif: Any, page: Any) -> float | None:
    """mpp from XResolution/ResolutionUnit (centimetre or inch; ImageJ's unit with NONE)."""
    if 282 not in page.tags:
        return None
    xres = page.get_resolution()[0]
    if not xres or xres <= 0:
        return None
    unit = int(page.resolutionunit)
    if unit == 3:
        return _plausible_mpp(1e4 / xres)
    if unit == 2:
        return _plausible_mpp(25400.0 / xres)
    if unit == 1 and tif.is_imagej:
        factor = _LENGTH_UNITS_UM.get(str((tif.imagej_metadata or {}).get("unit", "")))
        if factor is not None:
            return _plausible_mpp(factor / xres)
    return None


def _tiff_file_mpp(path: Path) -> float | None:
    """mpp from the first page's resolution tags of a TIFF file."""
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        return _tiff_tags_mpp(tif, tif.pages.first)


def _tiff_properties(tif: Any, page: Any) -> tuple[dict[str, str], float | None]:
    """A few TIFF tags as ``tiff.<name>`` strings, and the objective power if OME says so."""
    properties: dict[str, str] = {}
    for code in (270, 271, 272, 305, 306, 282, 283, 296):
        tag = page.tags.get(code)
        if tag is not None:
            value = tag.value
            if isinstance(value, tuple) and len(value) == 2 and code in (282, 283):
                value = value[0] / value[1] if value[1] else value[0]
            elif hasattr(value, "name"):
                value = value.name.lower()
            properties[f"tiff.{tag.name}"] = str(value)
    objective_power = None
    if tif.is_ome:
        root = ET.fromstring(tif.ome_metadata)
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Objective":
                objective_power = _to_float(el.get("NominalMagnification"))
                if objective_power is not None:
                    properties["ome.NominalMagnification"] = str(objective_power)
                    break
    return properties, objective_power


# ----------------------------------------------------------------------------------------------
# Pillow


class _PillowSlide(Slide):
    """PNG, JPEG, BMP and other single images through Pillow, decoded once at open time."""

    backend = "pillow"

    def __init__(self, path: Path, *, mpp: float | None) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with _no_pixel_limit(), Image.open(path) as image:
                image.load()
                fmt = (image.format or "unknown").lower()
                info = dict(image.info)
                self._rgb = _pil_to_rgb8(image)
        except UnidentifiedImageError as exc:
            raise input_error(path, "unknown or unsupported slide/image format") from exc
        except MitokitError:
            raise
        except (*_DECODE_ERRORS, SyntaxError, Image.DecompressionBombError) as exc:
            raise input_error(
                path, f"cannot decode the image (truncated or corrupt?): {exc}"
            ) from exc
        dpi = info.get("dpi")
        file_mpp = None
        if isinstance(dpi, tuple) and dpi and (xdpi := _to_float(dpi[0])) and xdpi > 0:
            file_mpp = _plausible_mpp(25400.0 / xdpi)
        properties = {
            f"pil.{k}": str(v) for k, v in info.items() if isinstance(v, str | int | float | tuple)
        }
        height, width = self._rgb.shape[:2]
        super().__init__(
            path,
            level_dimensions=[(width, height)],
            mpp=mpp,
            file_mpp=file_mpp,
            vendor=fmt,
            properties=properties,
        )

    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._rgb[y : y + h, x : x + w]

    def _close(self) -> None:
        self._rgb = np.empty((0, 0, 3), np.uint8)


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit for the block: H&E frames are legitimately huge."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _pil_to_rgb8(image: Any) -> np.ndarray:
    """A loaded Pillow image as ``(h, w, 3)`` uint8 RGB, transparency composited onto white."""
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA", "I;16", "I;16L", "I;16B"):
        pass
    elif mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("RGBa", "RGBX"):
        image = image.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    else:
        raise ValueError(f"unsupported pixel mode {mode}")
    array = np.asarray(image)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return to_rgb8(array)


# ----------------------------------------------------------------------------------------------
# shared helpers


def to_rgb8(array: np.ndarray, *, premultiplied: bool = False) -> np.ndarray:
    """Convert image samples to ``(h, w, 3)`` uint8 RGB.

    Accepts ``(h, w)`` or ``(h, w, c)`` with ``c`` = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4
    (RGB + alpha); extra channels beyond four are dropped. Alpha is composited onto white.
    uint16 samples are scaled linearly to 8 bits (``round(v / 257)``); bool samples map to
    0/255.

    Args:
        array: The samples.
        premultiplied: Whether colours are already multiplied by alpha (TIFF associated alpha).

    Raises:
        ValueError: Another sample type (float, 32-bit, signed) or an unexpected shape.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] < 1:
        raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"unsupported sample type {a.dtype} (8- or 16-bit unsigned expected)")
    channels = a.shape[2]
    if channels in (1, 2):
        colour, alpha = np.repeat(a[..., :1], 3, axis=2), a[..., 1] if channels == 2 else None
    else:
        colour, alpha = a[..., :3], a[..., 3] if channels >= 4 else None
    if alpha is None or bool((alpha == 255).all()):
        return np.ascontiguousarray(colour)
    c = colour.astype(np.uint16)
    alpha16 = alpha[..., None].astype(np.uint16)
    if premultiplied:
        out = np.minimum(c + (255 - alpha16), 255)
    else:
        out = (c * alpha16 + 255 * (255 - alpha16) + 127) // 255
    return out.astype(np.uint8)


def _check_mpp_argument(path: Path, mpp: float | None) -> float | None:
    if mpp is None:
        return None
    try:
        value = float(mpp)
    except (TypeError, ValueError):
        raise input_error(path, f"mpp must be a positive number, got {mpp!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise input_error(path, f"mpp must be a positive number, got {mpp!r}")
    return value


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

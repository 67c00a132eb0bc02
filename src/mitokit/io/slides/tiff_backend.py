"""The ``tifffile`` backend: OME-TIFF and every other TIFF (stripped, untiled, multi-series).

Regions are read tile by tile (or strip by strip), so memory stays bounded on large tiled pages;
uncompressed pages are memory-mapped. mpp comes from OME ``PhysicalSizeX`` or from the TIFF
resolution tags (centimetres or inches, or ImageJ's unit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error
from mitokit.io.slides.base import _DECODE_ERRORS, Slide, _plausible_mpp, _to_float
from mitokit.io.slides.color import to_rgb8

_WHOLE_PAGE_PIXELS = 64 * 2**20
"""A TIFF page this small may be decoded whole when its tiles cannot be decoded one by one."""

SEGMENT_CACHE_BYTES = 32 * 2**20
"""Decoded tiles (or strips) one open slide keeps, least recently used dropped first: reading
overlapping regions in a row (as slide inference does) decodes each tile about once."""

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


class _SegmentCache:
    """Decoded segments (tiles or strips) up to a number of bytes, least recently used dropped
    first; segments bigger than a quarter of the budget are not kept.

    Args:
        max_bytes: The budget; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._items: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, ...]) -> np.ndarray | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[int, ...], segment: np.ndarray) -> None:
        if segment.nbytes * 4 > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = segment
            self.bytes += segment.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


class _TiffLevel:
    """One resolution level of a TIFF series: its page(s) and how to turn samples into RGB.

    Args:
        pages: The level's page(s).
        cache: Decoded segments, shared by the levels of one open slide.
        number: The level's number (part of the cache keys).
    """

    def __init__(self, pages: Sequence[Any], cache: _SegmentCache, number: int) -> None:
        self.cache = cache
        self.number = number
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
            return self._read_segments(index, x, y, w, h)
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

    def _read_segments(self, index: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Decode only the tiles (or strips) the block touches, or take them from the cache."""
        page = self.pages[index]
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
        for i, segment in self._segments(index, indices):
            if segment is None:  # sparse: no data stored, left white
                continue
            s, r = divmod(i, across * down)
            sy, sx = (r // across) * seg_h, (r % across) * seg_w
            oy0, oy1 = max(y, sy), min(y + h, sy + segment.shape[0])
            ox0, ox1 = max(x, sx), min(x + w, sx + segment.shape[1])
            if oy0 < oy1 and ox0 < ox1:
                out[oy0 - y : oy1 - y, ox0 - x : ox1 - x, s * contig : (s + 1) * contig] = segment[
                    oy0 - sy : oy1 - sy, ox0 - sx : ox1 - sx
                ]
        return out

    def _segments(self, index: int, indices: list[int]) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(segment index, decoded samples or None where none are stored)`` for ``indices``."""
        missing = []
        for i in indices:
            segment = self.cache.get((self.number, index, i))
            if segment is None:
                missing.append(i)
            else:
                yield i, segment
        if not missing:
            return
        page = self.pages[index]
        key = page.keyframe
        decode_args: dict[str, Any] = {"_fullsize": True}
        if key.compression in (6, 7, 33007, 34892):
            decode_args.update(jpegtables=page.jpegtables, jpegheader=key.jpegheader)
        fh = page.parent.filehandle
        offsets, counts = page.dataoffsets, page.databytecounts
        for data, i in fh.read_segments(
            [offsets[i] for i in missing],
            [counts[i] for i in missing],
            indices=missing,
            sort=True,
            lock=fh.lock,
            flat=True,
        ):
            segment = key.decode(data, i, **decode_args)[0]
            if segment is not None:
                segment = segment[0]
                self.cache.put((self.number, index, i), segment)
            yield i, segment


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
                self._cache = _SegmentCache(SEGMENT_CACHE_BYTES)
                self._levels = [
                    _TiffLevel(_level_pages(level), self._cache, number)
                    for number, level in enumerate(series.levels)
                ]
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
        self._cache.clear()
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

"""Tissue masks from a low-resolution thumbnail, and the tissue fraction of a box.

The mask is computed on a thumbnail (longest side ``thumbnail_size``) so it costs the same for a
1000-pixel frame and a 100,000-pixel slide:

1. Threshold: tissue is coloured (high HSV saturation) and absorbs light (high optical density),
   while glass is white and grey. The threshold is Otsu's on the thumbnail, clamped to a range
   (saturation 0.04 to 0.10, mean optical density 0.06 to 0.15). The clamp matters in both
   directions: on an image that is nearly all tissue Otsu splits pale eosin from dense
   haematoxylin (its threshold on the reference H&E tile is 0.32, which would call a third of the
   tissue background), and on an all-white image Otsu splits noise.
2. Closing then opening with a disk (``smooth_px`` level-0 pixels): joins tissue broken by pale
   areas and drops specks.
3. Removal of objects and filling of holes smaller than ``min_object_px`` / ``min_hole_px``
   (areas in level-0 pixels).

Sizes are given in level-0 pixels and converted to thumbnail pixels with the downsample, so the
same settings mean the same physical sizes at any thumbnail resolution.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from mitokit.data.arrays import as_slide
from mitokit.errors import MitokitError, input_error
from mitokit.types import BoxXYXY

TissueMethod = Literal["saturation", "od", "both"]

SATURATION_RANGE = (0.04, 0.10)
"""Otsu's threshold on HSV saturation is clamped to this range."""

OD_RANGE = (0.06, 0.15)
"""Otsu's threshold on mean optical density ``-log((I + 1) / 256)`` is clamped to this range."""


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask at low resolution.

    Attributes:
        mask: ``(h, w)`` bool array, True on tissue.
        downsample: (x, y) level-0 pixels per mask pixel.
    """

    mask: np.ndarray
    downsample: tuple[float, float]

    @property
    def empty(self) -> bool:
        """True when the mask holds no tissue at all."""
        return not bool(self.mask.any())

    @property
    def fraction(self) -> float:
        """Fraction of the whole image that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction_in(self, box: BoxXYXY) -> float:
        """Fraction of a level-0 box that is tissue (see :func:`tissue_fraction`)."""
        return tissue_fraction(self.mask, box, self.downsample)


def tissue_mask(
    source: Any,
    *,
    method: TissueMethod = "saturation",
    thumbnail_size: int = 1024,
    smooth_px: float = 8.0,
    min_object_px: float = 4096.0,
    min_hole_px: float = 4096.0,
) -> TissueMask:
    """Compute the tissue mask of a slide or an ``HxWx3`` uint8 image.

    Args:
        source: A slide (``read_region``/``dimensions``, ideally ``get_thumbnail``) or an array.
        method: ``"saturation"`` (HSV S, robust to grey dirt and dark glass), ``"od"`` (mean
            optical density, i.e. grey level) or ``"both"`` (a pixel must pass both).
        thumbnail_size: Longest side of the thumbnail the mask is computed on.
        smooth_px: Radius of the closing/opening disk, in level-0 pixels (at least one mask
            pixel).
        min_object_px: Tissue pieces smaller than this area (level-0 pixels) are removed.
        min_hole_px: Holes smaller than this area (level-0 pixels) are filled.

    Returns:
        The mask and its downsample relative to level 0. An all-white image gives an empty mask;
        use :func:`require_tissue` where tissue is required.

    Raises:
        MitokitError: Bad settings or an unreadable source.
    """
    if method not in ("saturation", "od", "both"):
        raise input_error(None, f"unknown tissue method {method!r} (saturation, od, both)")
    if int(thumbnail_size) < 8:
        raise input_error(None, f"thumbnail_size must be >= 8, got {thumbnail_size}")
    for what, value in (
        ("smooth_px", smooth_px),
        ("min_object_px", min_object_px),
        ("min_hole_px", min_hole_px),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise input_error(None, f"{what} must be a non-negative number, got {value}")
    slide = as_slide(source)
    thumb = _thumbnail(slide, int(thumbnail_size))
    w0, h0 = slide.dimensions
    ds = (w0 / thumb.shape[1], h0 / thumb.shape[0])
    mask = mask_from_rgb(
        thumb,
        method=method,
        downsample=math.sqrt(ds[0] * ds[1]),
        smooth_px=smooth_px,
        min_object_px=min_object_px,
        min_hole_px=min_hole_px,
    )
    return TissueMask(mask, (float(ds[0]), float(ds[1])))


def mask_from_rgb(
    rgb: np.ndarray,
    *,
    method: TissueMethod = "saturation",
    downsample: float = 1.0,
    smooth_px: float = 8.0,
    min_object_px: float = 4096.0,
    min_hole_px: float = 4096.0,
) -> np.ndarray:
    """The tissue mask of an ``HxWx3`` uint8 thumbnail (the work of :func:`tissue_mask`).

    Args:
        rgb: The thumbnail.
        method: See :func:`tissue_mask`.
        downsample: Level-0 pixels per thumbnail pixel, to convert the sizes below.
        smooth_px: Disk radius in level-0 pixels.
        min_object_px: Smallest kept object, area in level-0 pixels.
        min_hole_px: Smallest kept hole, area in level-0 pixels.

    Returns:
        ``(H, W)`` bool mask.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] < 3:
        raise input_error(None, f"thumbnail must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    rgb = rgb[:, :, :3]
    raw = np.ones(rgb.shape[:2], dtype=bool)
    if method in ("saturation", "both"):
        sat = _saturation(rgb)
        raw &= sat > _clamped_otsu(sat, SATURATION_RANGE)
    if method in ("od", "both"):
        od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0).mean(axis=2)
        raw &= od > _clamped_otsu(od, OD_RANGE)
    if not raw.any():
        return raw
    radius = max(1, round(smooth_px / downsample)) if smooth_px > 0 else 0
    mask = raw
    if radius:
        mask = _opening(_closing(mask, radius), radius)
    area = downsample * downsample
    mask = _remove_small(mask, min_object_px / area)
    mask = ~_remove_small(~mask, min_hole_px / area)
    return mask


def tissue_fraction(
    mask: np.ndarray | TissueMask,
    box: BoxXYXY,
    downsample: float | tuple[float, float] = 1.0,
) -> float:
    """Fraction of a level-0 box ``[x1, y1, x2, y2]`` covered by tissue.

    Mask pixels cut by the box edge count by the part inside, and parts of the box outside the
    image count as background, so the fraction is exact for the mask's resolution. A box of zero
    area has fraction 0.

    Args:
        mask: ``(h, w)`` bool mask (or a :class:`TissueMask`, whose downsample is used).
        box: The box in level-0 pixels.
        downsample: Level-0 pixels per mask pixel, one number or (x, y).
    """
    if isinstance(mask, TissueMask):
        mask, downsample = mask.mask, mask.downsample
    m = np.asarray(mask)
    if m.ndim != 2:
        raise input_error(None, f"tissue mask must be 2-D, got shape {m.shape}")
    dx, dy = (downsample, downsample) if np.isscalar(downsample) else downsample
    if not (dx > 0 and dy > 0):
        raise input_error(None, f"downsample must be positive, got {downsample}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise input_error(None, f"box {tuple(box)} has x2 < x1 or y2 < y1")
    ax, bx, ay, by = x1 / dx, x2 / dx, y1 / dy, y2 / dy
    total = (bx - ax) * (by - ay)
    if total <= 0:
        return 0.0
    H, W = m.shape
    i0, i1 = max(0, math.floor(ax)), min(W, math.ceil(bx))
    j0, j1 = max(0, math.floor(ay)), min(H, math.ceil(by))
    if i1 <= i0 or j1 <= j0:
        return 0.0
    wx = _overlap(ax, bx, i0, i1)
    wy = _overlap(ay, by, j0, j1)
    inside = wy @ m[j0:j1, i0:i1].astype(np.float64) @ wx
    return float(inside / total)


def require_tissue(mask: TissueMask, path: str | os.PathLike | None = None) -> TissueMask:
    """Return ``mask``, or raise when it holds no tissue.

    Raises:
        MitokitError: ``"no tissue found in <path>"``.
    """
    if mask.empty:
        where = f" in {os.fspath(path)}" if path is not None else ""
        raise MitokitError(f"no tissue found{where}")
    return mask


def _overlap(a: float, b: float, i0: int, i1: int) -> np.ndarray:
    """Length of ``[a, b]`` inside each unit cell ``[i, i + 1]`` for i in ``range(i0, i1)``."""
    lo = np.arange(i0, i1, dtype=np.float64)
    return np.clip(np.minimum(b, lo + 1) - np.maximum(a, lo), 0.0, None)


def _thumbnail(slide: Any, max_size: int) -> np.ndarray:
    w0, h0 = slide.dimensions
    if max(w0, h0) <= max_size:
        return np.asarray(slide.read_region((0, 0), 0, (int(w0), int(h0))))[:, :, :3]
    get = getattr(slide, "get_thumbnail", None)
    if get is None:  # a minimal reader: read level 0 and shrink
        from PIL import Image

        full = np.asarray(slide.read_region((0, 0), 0, (int(w0), int(h0))))[:, :, :3]
        scale = max_size / max(w0, h0)
        size = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        return np.asarray(Image.fromarray(full).resize(size, Image.Resampling.BOX))
    thumb = get((max_size, max_size))
    if hasattr(thumb, "convert"):  # a PIL image, as OpenSlide returns
        thumb = thumb.convert("RGB")
    thumb = np.asarray(thumb)
    if thumb.ndim == 2:
        thumb = np.repeat(thumb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(thumb[:, :, :3]).astype(np.uint8, copy=False)


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max, 0 where max is 0."""
    f = rgb.astype(np.float32)
    mx, mn = f.max(axis=2), f.min(axis=2)
    return np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)


def _clamped_otsu(values: np.ndarray, bounds: tuple[float, float]) -> float:
    from skimage.filters import threshold_otsu

    lo, hi = bounds
    if float(values.max()) - float(values.min()) < 1e-6:
        return lo
    return float(np.clip(threshold_otsu(values), lo, hi))


def _closing(mask: np.ndarray, r: int) -> np.ndarray:
    return _erode(_dilate(mask, r), r)


def _opening(mask: np.ndarray, r: int) -> np.ndarray:
    return _dilate(_erode(mask, r), r)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a disk of radius ``r`` via the distance transform (borders padded by edge)."""
    if mask.all() or not mask.any():
        return mask.copy()
    p = np.pad(mask, r + 1, mode="edge")
    out = ndimage.distance_transform_edt(~p) <= r
    return out[r + 1 : -(r + 1), r + 1 : -(r + 1)]


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~mask, r)


def _remove_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drop 8-connected True components with fewer than ``min_area`` pixels."""
    if min_area <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]


__all__ = [
    "OD_RANGE",
    "SATURATION_RANGE",
    "TissueMask",
    "TissueMethod",
    "mask_from_rgb",
    "require_tissue",
    "tissue_fraction",
    "tissue_mask",
]

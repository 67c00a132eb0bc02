"""The mitotic hotspot: the region of ten high-power fields holding the most mitotic figures.

Grading counts mitoses in the most active area of 10 high-power fields (HPF), 2.37 mm2 in
total (10 fields of 0.237 mm2, a field of view of 0.55 mm diameter), taken here as one 4:3
rectangle of that area (1.778 x 1.333 mm), sized in pixels from the slide's microns per pixel.

:func:`find_hotspot` slides that rectangle over the slide on a grid of small cells (the window is
about 64 cells high), summing points with an integral image, so every position is scored in one
pass whatever the number of points. Only windows that are mostly tissue are candidates (tissue
fraction at least ``min_tissue``, or as close to it as the tissue allows), so the window does not
drift onto glass. The best grid windows are then re-counted exactly on the points, and the box
with the highest exact count wins (ties: more tissue, then top-left first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitokit.data.tissue import TissueMask
from mitokit.errors import input_error, positive_float

HPF_TOTAL_AREA_MM2 = 2.37
"""Area of 10 high-power fields in mm2 (the WHO / Nottingham convention for 10 HPF)."""

HPF_ASPECT = 4.0 / 3.0
"""Width over height of the hotspot rectangle."""

_CELLS_PER_WINDOW = 64
_MAX_GRID_CELLS = 4_000_000
_EXACT_CANDIDATES = 64


@dataclass(frozen=True)
class Hotspot:
    """The most active region.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in level-0 pixels (x2 - x1 and y2 - y1 are the window's
            size; the box may stick out of a slide smaller than the window).
        count: Sum of the point weights inside the box (the number of figures for unit weights).
        width_um: Width of the box in micrometres.
        height_um: Height in micrometres.
        tissue_fraction: Fraction of the box on tissue (per the tissue mask; 1 without one).
    """

    box: tuple[float, float, float, float]
    count: float
    width_um: float
    height_um: float
    tissue_fraction: float

    @property
    def area_mm2(self) -> float:
        """Area of the box in mm2."""
        return self.width_um * self.height_um * 1e-6

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        count = int(round(self.count)) if float(self.count).is_integer() else self.count
        return {
            "box": [round(float(v), 2) for v in self.box],
            "count": count,
            "area_mm2": round(self.area_mm2, 6),
            "width_um": round(self.width_um, 3),
            "height_um": round(self.height_um, 3),
            "tissue_fraction": round(self.tissue_fraction, 4),
        }


def hotspot_size_px(
    mpp: float, *, area_mm2: float = HPF_TOTAL_AREA_MM2, aspect: float = HPF_ASPECT
) -> tuple[float, float]:
    """``(width, height)`` in level-0 pixels of the hotspot rectangle at ``mpp``.

    Raises:
        MitokitError: A value that is not a positive number.
    """
    mpp = positive_float(None, mpp, "mpp")
    area_mm2 = positive_float(None, area_mm2, "hotspot area")
    aspect = positive_float(None, aspect, "hotspot aspect")
    h_um = math.sqrt(area_mm2 * 1e6 / aspect)
    return h_um * aspect / mpp, h_um / mpp


def find_hotspot(
    points: np.ndarray,
    *,
    slide_size: tuple[int, int],
    mpp: float,
    tissue: TissueMask | None = None,
    weights: np.ndarray | None = None,
    area_mm2: float = HPF_TOTAL_AREA_MM2,
    aspect: float = HPF_ASPECT,
    min_tissue: float = 0.5,
) -> Hotspot:
    """The rectangle of ``area_mm2`` (``aspect`` = width / height) holding the most points.

    Args:
        points: ``(N, >=2)`` level-0 ``x, y`` (further columns ignored).
        slide_size: Level-0 ``(width, height)``.
        mpp: Microns per pixel at level 0.
        tissue: The slide's tissue mask; windows are restricted to those whose tissue fraction
            is at least ``min(min_tissue, 0.99 * the highest fraction of any window)``.
        weights: Per-point weights (default 1 each).
        area_mm2: Area of the rectangle (default 10 HPF, 2.37 mm2).
        aspect: Width over height (default 4:3).
        min_tissue: Wanted tissue fraction of the window.

    Returns:
        The hotspot; with no points, the window with the most tissue.
    """
    w_px, h_px = hotspot_size_px(mpp, area_mm2=area_mm2, aspect=aspect)
    W, H = (int(v) for v in slide_size)
    if W < 1 or H < 1:
        raise input_error(None, f"slide size must be positive, got {slide_size}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = np.zeros((0, 2))
    elif pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"points must have shape (n, >=2), got {pts.shape}")
    wts = np.ones(len(pts)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(wts) != len(pts):
        raise ValueError(f"{len(wts)} weights for {len(pts)} points")

    cell = h_px / _CELLS_PER_WINDOW
    if math.ceil(W / cell) * math.ceil(H / cell) > _MAX_GRID_CELLS:
        cell = math.sqrt(W * H / _MAX_GRID_CELLS)
    gw, gh = math.ceil(W / cell), math.ceil(H / cell)
    ww, hh = min(gw, max(1, round(w_px / cell))), min(gh, max(1, round(h_px / cell)))

    counts = np.zeros((gh, gw), dtype=np.float64)
    if len(pts):
        gx = np.clip((pts[:, 0] // cell).astype(np.int64), 0, gw - 1)
        gy = np.clip((pts[:, 1] // cell).astype(np.int64), 0, gh - 1)
        np.add.at(counts, (gy, gx), wts)
    cover = _tissue_cells(tissue, W, H, cell, gw, gh)

    win_counts = _window_sums(counts, hh, ww)
    full_area = max(1.0, (w_px / cell) * (h_px / cell))
    win_tissue = _window_sums(cover, hh, ww) / full_area
    best_fraction = float(win_tissue.max())
    wanted = min(float(min_tissue), 0.99 * best_fraction)
    eligible = win_tissue >= wanted - 1e-12

    # best grid windows by approximate count, then re-counted exactly
    flat = np.flatnonzero(eligible.ravel())
    key = win_counts.ravel()[flat] + 1e-6 * win_tissue.ravel()[flat]
    top = flat[np.argsort(-key, kind="stable")[:_EXACT_CANDIDATES]]
    ny, nx = win_counts.shape
    rows, cols = np.divmod(top, nx)
    x1 = _place(cols * cell, w_px, W)
    y1 = _place(rows * cell, h_px, H)
    exact = _exact_counts(pts, wts, x1, y1, w_px, h_px)
    frac = win_tissue.ravel()[top]
    order = np.lexsort((np.arange(len(top)), -frac, -np.round(exact, 9)))
    b = order[0]
    box = (float(x1[b]), float(y1[b]), float(x1[b] + w_px), float(y1[b] + h_px))
    fraction = 1.0 if tissue is None else tissue.fraction_in(box)
    return Hotspot(box, float(exact[b]), w_px * mpp, h_px * mpp, fraction)


def _place(start: np.ndarray, size: float, limit: int) -> np.ndarray:
    """Window starts kept inside ``[0, limit - size]`` (0 when the window is larger)."""
    return np.clip(start.astype(np.float64), 0.0, max(0.0, limit - size))


def _window_sums(grid: np.ndarray, hh: int, ww: int) -> np.ndarray:
    """Sums of every ``hh x ww`` window of ``grid`` (top-left anchored), via an integral image."""
    s = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), dtype=np.float64)
    s[1:, 1:] = grid.cumsum(0).cumsum(1)
    return s[hh:, ww:] - s[:-hh, ww:] - s[hh:, :-ww] + s[:-hh, :-ww]


def _tissue_cells(
    tissue: TissueMask | None, W: int, H: int, cell: float, gw: int, gh: int
) -> np.ndarray:
    """Tissue fraction of each grid cell (1 everywhere inside the slide without a mask)."""
    cover = np.zeros((gh, gw), dtype=np.float64)
    iw, ih = max(1, min(gw, round(W / cell))), max(1, min(gh, round(H / cell)))
    if tissue is None:
        cover[:ih, :iw] = 1.0
        return cover
    from PIL import Image

    image = Image.fromarray(tissue.mask.astype(np.float32))
    cover[:ih, :iw] = np.asarray(image.resize((iw, ih), Image.Resampling.BOX), dtype=np.float64)
    return np.clip(cover, 0.0, 1.0)


def _exact_counts(
    pts: np.ndarray, wts: np.ndarray, x1: np.ndarray, y1: np.ndarray, w: float, h: float
) -> np.ndarray:
    """Sum of weights of the points in each box ``[x1, x1 + w) x [y1, y1 + h)``."""
    if len(pts) == 0:
        return np.zeros(len(x1))
    out = np.empty(len(x1))
    x, y = pts[:, 0], pts[:, 1]
    for k in range(len(x1)):
        inside = (x >= x1[k]) & (x < x1[k] + w) & (y >= y1[k]) & (y < y1[k] + h)
        out[k] = wts[inside].sum()
    return out


__all__ = ["HPF_ASPECT", "HPF_TOTAL_AREA_MM2", "Hotspot", "find_hotspot", "hotspot_size_px"]

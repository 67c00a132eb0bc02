"""From a model's tile predictions to a slide's points, in level-0 pixels.

:class:`_Collected` gathers, batch by batch, each tile's score and the points it found, mapped to
level 0 and kept only inside the tile's core (the half-overlap rule, :func:`mitokit.engines.
slide_stream.in_core`), and paints the model's heat maps on the canvas; :func:`_on_tissue` tells
points near the tissue from points on glass; :func:`_core_centres` places a tile model's positive
tiles. Used by :class:`mitokit.engines.slide.SlidePredictor`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.data.tissue import TissueMask
from mitokit.engines.slide_stream import TilePlan, in_core

if TYPE_CHECKING:
    from mitokit.report.slide_outputs import HeatCanvas


class _Collected:
    """Points (level-0, in their tile's core) and tile scores gathered from the predictions."""

    def __init__(
        self, plan: TilePlan, size: tuple[int, int], canvas: HeatCanvas, threshold: float
    ) -> None:
        self.plan = plan
        self.size = size
        self.canvas = canvas
        self.threshold = threshold
        self.origins = plan.origins.astype(np.float64)
        self.scores = np.zeros(len(plan), dtype=np.float64)
        self.found: list[np.ndarray] = []
        self.found_tiles: list[np.ndarray] = []

    def add(self, tiles: np.ndarray, preds: Sequence[Any]) -> None:
        """Take the predictions of the tiles ``tiles`` (indices into the plan)."""
        origins, scale, foot = self.origins, self.plan.geometry.scale, self.plan.geometry.footprint
        w0, h0 = self.size
        for t, pred in zip(tiles.tolist(), preds, strict=True):
            self.scores[t] = float(pred.tile_score)
            if pred.heatmap is not None:
                ox, oy = origins[t]
                self.canvas.paint_heatmap((ox, oy, ox + foot, oy + foot), pred.heatmap)
            pts = np.asarray(pred.points, dtype=np.float64).reshape(-1, 3)
            if not len(pts):
                continue
            pts = pts[pts[:, 2] >= self.threshold]
            level0 = pts.copy()
            level0[:, :2] = origins[t] + pts[:, :2] * scale
            inside = (
                (level0[:, 0] >= 0)
                & (level0[:, 0] < w0)
                & (level0[:, 1] >= 0)
                & (level0[:, 1] < h0)
            )
            level0 = level0[inside & in_core(level0, self.plan.cores[t])]
            if len(level0):
                self.found.append(level0)
                self.found_tiles.append(np.full(len(level0), t, dtype=np.int64))

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points, the tile of each, tile scores)."""
        if not self.found:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64), self.scores
        return np.concatenate(self.found), np.concatenate(self.found_tiles), self.scores


def _on_tissue(points: np.ndarray, mask: TissueMask, margin_px: float) -> np.ndarray:
    """Whether level-0 points lie within ``margin_px`` of the tissue mask."""
    from scipy import ndimage

    dx, dy = mask.downsample
    r = margin_px / math.sqrt(dx * dy)  # in mask pixels
    grown = mask.mask
    if r > 0 and not grown.all():
        grown = ndimage.distance_transform_edt(~grown) <= max(r, 1.0)
    h, w = grown.shape
    c = np.clip((points[:, 0] / dx).astype(np.int64), 0, w - 1)
    rows = np.clip((points[:, 1] / dy).astype(np.int64), 0, h - 1)
    return grown[rows, c]


def _core_centres(cores: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centres of the cores, each cut to its tile and the slide."""
    w, h = size
    lo = np.maximum(np.maximum(cores[:, :2], boxes[:, :2]), 0.0)
    hi = np.minimum(np.minimum(cores[:, 2:], boxes[:, 2:]), [float(w), float(h)])
    return (lo + hi) / 2.0

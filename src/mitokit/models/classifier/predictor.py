"""Prediction with trained classifiers: images, the sub-tiles of an image, and whole slides.

:func:`predict_images` scores whole images (patches), :func:`predict_tiles` the sub-tiles of one
image, both with optional test-time flips (:func:`score_batch`). :class:`TileScorePredictor` is
the slide-inference predictor of the tile models (``tile_classifier``, ``tile_regressor``),
registered with :func:`~mitokit.models.predictors.register_predictor` on import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mitokit.models._common import flip_views
from mitokit.models.classifier.data import center_crop
from mitokit.models.classifier.model import model_scores
from mitokit.models.classifier.tile_task import TILE_TASKS
from mitokit.models.predictors import TilePrediction, model_mpp, register_predictor


def score_batch(model: nn.Module, images: torch.Tensor, *, tta: bool = False) -> torch.Tensor:
    """Scores of a ``Bx3xHxW`` batch in [0, 1], averaged over the four flips when ``tta``."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            views = flip_views(images) if tta else [images]
            return torch.stack([model_scores(model, v) for v in views]).mean(dim=0)
    finally:
        model.train(was)


def _runs(arrays: list[np.ndarray]) -> Iterator[list[int]]:
    """Consecutive positions of arrays with the same shape (stackable into one batch)."""
    start = 0
    for i in range(1, len(arrays) + 1):
        if i == len(arrays) or arrays[i].shape != arrays[start].shape:
            yield list(range(start, i))
            start = i


def predict_images(
    model: nn.Module,
    images: Sequence[str | os.PathLike | np.ndarray],
    *,
    batch_size: int = 32,
    tta: bool = False,
    crop: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Score whole images (patches): one score per image.

    Args:
        model: A model or ensemble (scores from ``model.scores``).
        images: Image files or ``HxWx3`` uint8 arrays.
        batch_size: Images per forward pass.
        tta: Average over the four flips.
        crop: Centre crop (pixels) applied first, as in training; None for the whole image.
        device: Device to run on.

    Returns:
        ``(N,)`` float64 scores.
    """
    from mitokit.data.arrays import read_rgb
    from mitokit.data.datasets import to_tensor

    model = model.to(device)
    out = np.zeros(len(images), dtype=np.float64)
    for start in range(0, len(images), max(1, int(batch_size))):
        chunk = list(range(start, min(start + int(batch_size), len(images))))
        arrays = []
        for i in chunk:
            img = images[i]
            arr = np.asarray(img) if isinstance(img, np.ndarray) else read_rgb(img)
            arrays.append(np.array(center_crop(arr, crop) if crop else arr, copy=True))
        for run in _runs(arrays):
            batch = torch.stack([to_tensor(arrays[j]) for j in run]).to(device)
            scores = score_batch(model, batch, tta=tta).float().cpu().numpy()
            for j, s in zip(run, scores, strict=True):
                out[chunk[j]] = float(s)
    return out


def predict_tiles(
    model: nn.Module,
    image: str | os.PathLike | np.ndarray,
    *,
    tile_size: int = 250,
    stride: int = 125,
    batch_size: int = 32,
    tta: bool = False,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """Score the sub-tiles of one image.

    The grid covers the image exactly with full tiles (:func:`~mitokit.data.tiling.tile_grid`
    with the ``shift`` edge policy; an image smaller than a tile gets one tile, padded white).

    Returns:
        One dict per tile: ``x1, y1, x2, y2`` (pixels) and ``score``.
    """
    from mitokit.data.arrays import as_slide, read_rgb
    from mitokit.data.datasets import to_tensor
    from mitokit.data.tiling import tile_grid

    arr = np.array(image if isinstance(image, np.ndarray) else read_rgb(image), copy=True)
    slide = as_slide(arr)
    h, w = arr.shape[:2]
    boxes = tile_grid((w, h), tile=tile_size, stride=stride, include_partial="shift")
    model = model.to(device)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(boxes), max(1, int(batch_size))):
        part = boxes[start : start + int(batch_size)]
        tiles = [
            np.asarray(slide.read_region((int(b[0]), int(b[1])), 0, (tile_size, tile_size)))[
                :, :, :3
            ]
            for b in part
        ]
        batch = torch.stack([to_tensor(t) for t in tiles]).to(device)
        scores = score_batch(model, batch, tta=tta).float().cpu().numpy()
        for b, s in zip(part.tolist(), scores, strict=True):
            rows.append({"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "score": float(s)})
    return rows


class TileScorePredictor:
    """Tile classifiers and regressors (BC, Reg, Reg-NS): a tile score, no points."""

    def __init__(self, model: torch.nn.Module, cfg: dict[str, Any], device: torch.device) -> None:
        data = (cfg.get("extra") or {}).get("data") or {}
        self.task = cfg["task"]
        self.tile_size = int(data.get("tile_size") or cfg["model"].get("input_size") or 250)
        self.mpp = model_mpp(cfg)
        self.device = device
        self.model = model.to(device).eval()

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        scores = model_scores(self.model, batch).float().clamp(0.0, 1.0).cpu().numpy()
        return [TilePrediction(tile_score=float(s)) for s in scores]


def _tile_score_factory(model: torch.nn.Module, cfg: dict[str, Any], device: torch.device):
    return TileScorePredictor(model, cfg, device)


for _name in TILE_TASKS:
    register_predictor(_name)(_tile_score_factory)


__all__ = ["TileScorePredictor", "predict_images", "predict_tiles", "score_batch"]

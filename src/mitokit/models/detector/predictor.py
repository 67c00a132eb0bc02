"""Slide inference with a detector (what ``mitokit detect`` runs): points and a tile score per tile.

Importing this module registers :class:`DetectorPredictor` for the task ``detector``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mitokit.models.detector.postprocess import detect
from mitokit.models.detector.task import DETECTOR
from mitokit.models.predictors import TilePrediction, model_mpp, register_predictor


class DetectorPredictor:
    """Slide inference with a detector: box centres as points, the best score as tile score."""

    def __init__(self, model: nn.Module, cfg: dict[str, Any], device: torch.device) -> None:
        data = (cfg.get("extra") or {}).get("data") or {}
        self.task = cfg["task"]
        self.tile_size = int(data.get("tile_size") or 250)
        self.mpp = model_mpp(cfg)
        self.device = device
        self.model = model.to(device).eval()

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        """Points (``x, y, score`` in tile pixels) and tile score of each tile of the batch."""
        out = []
        for points in detect(self.model, batch, device=self.device):
            score = float(points[:, 2].max()) if len(points) else 0.0
            out.append(TilePrediction(points=points, tile_score=score))
        return out


@register_predictor(DETECTOR)
def _predictor(model: nn.Module, cfg: dict[str, Any], device: torch.device) -> DetectorPredictor:
    return DetectorPredictor(model, cfg, device)

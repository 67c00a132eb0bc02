"""The weak localiser's slide predictor: what ``mitokit detect`` runs on each tile.

:class:`WeakLocaliserPredictor` turns a batch of tiles into points, a tile score and a heatmap
(the Predictor contract of :mod:`mitokit.models.predictors`). Importing this module registers it
for the task ``weak_localiser`` (:func:`mitokit.models.predictors.register_predictor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mitokit.models.predictors import TilePrediction, model_mpp, register_predictor
from mitokit.models.wss.model import WEAK_LOCALISER, _unwrap
from mitokit.models.wss.postprocess import STRIDE, map_to_points

DEFAULT_TILE = 250  # slide tile side when data.input_size is null


class WeakLocaliserPredictor:
    """Points and a heatmap per tile from a trained weak localiser (the Predictor contract).

    ``predict`` gives, per tile, the points of :func:`map_to_points` at ``threshold`` by the
    model's point rule (tile pixels), the image probability as ``tile_score`` and the upsampled
    sigmoid map as ``heatmap`` (at the tile's resolution).

    Attributes:
        tile_size: ``data.input_size`` of the training run (250 when it was null).
        tile_multiple: 16, the map's stride: the model reads tiles of any multiple of it.
        threshold: The map threshold: the model's stored one unless set (the slide engine sets
            an explicit threshold here: ``thresholds_maps``).
        mpp: ``data.mpp`` of the training run.
    """

    thresholds_maps = True

    def __init__(self, model: nn.Module, cfg: Mapping[str, Any], device: torch.device) -> None:
        data = (cfg.get("extra") or {}).get("data") or {}
        self.task = cfg["task"]
        self.tile_size = int(data.get("input_size") or DEFAULT_TILE)
        self.tile_multiple = STRIDE  # fully convolutional: any multiple of the stride fits
        self.mpp = model_mpp(dict(cfg))
        self.device = torch.device(device)
        self.model = _unwrap(model).to(self.device).eval()
        self.threshold = float(self.model.threshold)

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        """Predictions for a ``Bx3xHxW`` float batch in [0, 1]."""
        probs, heat = self.model.localise(batch.to(self.device))
        probs = probs.float().cpu().numpy()
        heat = heat.float().cpu().numpy()
        return [
            TilePrediction(
                points=map_to_points(
                    h, self.threshold, min_distance_px=self.model.min_distance_px(self.mpp)
                ),
                tile_score=float(p),
                heatmap=h.astype(np.float32),
            )
            for p, h in zip(probs, heat, strict=True)
        ]


@register_predictor(WEAK_LOCALISER)
def _predictor_factory(
    model: nn.Module, cfg: dict[str, Any], device: torch.device
) -> WeakLocaliserPredictor:
    return WeakLocaliserPredictor(model, cfg, device)

"""The task ``detector`` the trainer drives: settings, data, loss and validation.

Importing this module registers :class:`DetectorTask` with the engine under ``DETECTOR``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError
from mitokit.io.annotations import read_annotations
from mitokit.models._common import check_fraction, merge_section
from mitokit.models.detector.data import DetectionTileDataset, _targets_to, truth_centres
from mitokit.models.detector.model import LOSS_KEYS, build_detector
from mitokit.models.detector.postprocess import detect, point_scores
from mitokit.models.tile_source import (
    EVENT_TILE_DEFAULTS,
    EventTileSettings,
    EventTileSplit,
    event_tile_section,
    event_tile_settings,
    resolve_labels,
    split_event_tiles,
)

DETECTOR = "detector"


@register_task(DETECTOR)
class DetectorTask:
    """Det / Det-NS / Det-WL / Det-NS-WL: Faster R-CNN on tiles drawn events-first."""

    name = DETECTOR
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet50",
        "weights": None,
        "norm": "batch",
        "trainable_layers": None,
        "agreement_weighted": False,
        "min_size": None,
        "max_size": None,
        "box_score_thresh": 0.05,
        "box_nms_thresh": 0.5,
        "box_detections_per_img": 100,
        "box_batch_size_per_image": 512,
        "rpn_post_nms_top_n_test": 1000,
        "centre_suppression": True,
    }
    data_defaults: Mapping[str, Any] = {
        **EVENT_TILE_DEFAULTS,
        "mpp": 0.25,
        "point_box_um": 12.5,
        "min_box_fraction": 0.2,
        "val_labels": None,
        "val_min_agreement": 0.5,
        "match_radius_um": 7.5,
        "f1_threshold": 0.5,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> nn.Module:
        """The detector of the ``model`` section (see the module docstring)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_detector(**cfg)

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training tiles with boxes, drawn events-first; every tile of the validation images,
        with the truth centres of the validation F1.

        Raises:
            MitokitError: Missing labels, validation labels or images, bad settings, or no
                event (or, with negatives asked for, no negative tile) among the training tiles.
        """
        from mitokit.data.datasets import collate_detection

        cfg = event_tile_section(
            self.data_defaults,
            data_cfg,
            task=self.name,
            labels="boxes or points, optionally agreement",
        )
        s = _data_settings(cfg)
        split = split_event_tiles(
            cfg, s, point_box_size=s.point_box, seed=seed, min_box_fraction=s.min_fraction
        )
        train = DetectionTileDataset(
            split.train_base, flips=bool(cfg["augment"]), draws=split.draws
        )
        val, truth_source = _validation_set(cfg, split, s)
        info = {
            **split.summary(s),
            "val_truth": str(truth_source),
            "mpp": s.mpp,
            "point_box_px": s.point_box,
            "match_radius_px": s.radius,
        }
        return TaskData(
            train=train, val=val, train_sampler=split.sampler, collate=collate_detection, info=info
        )

    def loss(
        self, model: nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of torchvision's four detection losses (the box classification weighted)."""
        images, targets = batch
        losses = model([im.to(device) for im in images], _targets_to(targets, device))
        total = sum(losses.values())
        figures = {k: float(v.detach()) for k, v in losses.items()}
        figures["boxes_per_tile"] = float(np.mean([len(t["boxes"]) for t in targets]))
        return total, figures

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device) -> dict[str, float]:
        """Mean detection loss (and its parts); point precision, recall, F1 and best F1."""
        dataset = getattr(loader, "dataset", None)
        radius = float(getattr(dataset, "radius_px", 30.0))
        threshold = float(getattr(dataset, "threshold", 0.5))
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        n_batches = 0
        pred: dict[str, np.ndarray] = {}
        truth: dict[str, np.ndarray] = {}
        was = model.training
        try:
            for b, (images, targets) in enumerate(loader):
                ims = [im.to(device) for im in images]
                with torch.no_grad(), _loss_mode(model, device, seed=b):
                    losses = model(ims, _targets_to(targets, device))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_batches += 1
                for t, points in zip(targets, detect(model, ims, device=device), strict=True):
                    key = f"{t['image_id']}#{int(t['index'])}"
                    pred[key] = points
                    truth[key] = t["truth"].double().numpy() if "truth" in t else np.zeros((0, 2))
        finally:
            model.train(was)
        if n_batches == 0:
            return {"loss": math.nan, "f1": math.nan, "best_f1": math.nan}
        out = {k: v / n_batches for k, v in sums.items()}
        out["loss"] = float(sum(out[k] for k in sums))
        scores = point_scores(pred, truth, radius_px=radius, threshold=threshold)
        out.update({k: scores[k] for k in ("precision", "recall", "f1", "best_f1")})
        out["best_threshold"] = scores["best_threshold"]
        out["n_truth"] = scores["n_truth"]
        out["n_tiles"] = float(len(pred))
        return out


@dataclasses.dataclass(frozen=True)
class _DataSettings(EventTileSettings):
    """The checked numbers of a ``data`` section (lengths in pixels; see the package docstring)."""

    mpp: float
    point_box: float
    radius: float
    min_fraction: float
    f1_threshold: float
    min_agreement: float


def _data_settings(cfg: Mapping[str, Any]) -> _DataSettings:
    """The numbers of the merged ``data`` section, checked; micrometres turned into pixels.

    Raises:
        MitokitError: The first bad setting.
    """
    from mitokit.metrics.detection import radius_to_px

    tiles = event_tile_settings(cfg)
    mpp = _positive(cfg["mpp"], "data.mpp")
    point_box = _positive(cfg["point_box_um"], "data.point_box_um") / mpp
    radius = radius_to_px(_positive(cfg["match_radius_um"], "data.match_radius_um"), mpp=mpp)
    min_fraction = check_fraction(cfg["min_box_fraction"], "data.min_box_fraction", high=0.99)
    f1_threshold = check_fraction(cfg["f1_threshold"], "data.f1_threshold")
    min_agreement = check_fraction(cfg["val_min_agreement"], "data.val_min_agreement")
    return _DataSettings(
        **dataclasses.asdict(tiles),
        mpp=mpp,
        point_box=point_box,
        radius=radius,
        min_fraction=min_fraction,
        f1_threshold=f1_threshold,
        min_agreement=min_agreement,
    )


def _validation_set(
    cfg: Mapping[str, Any], split: EventTileSplit, s: _DataSettings
) -> tuple[DetectionTileDataset | None, Path]:
    """Every tile of the validation images with its truth centres, and the truth's label file.

    The truth is ``data.val_labels`` when given, else the training labels; None (and the
    training labels) when no validation tile fits.
    """
    from mitokit.data.datasets import TileDataset

    truth_source = split.source.labels
    if not split.val_tiles:
        return None, truth_source
    if cfg["val_labels"] is None:
        truth_anns = split.source.annotations
    else:
        truth_source = resolve_labels(cfg["val_labels"])
        truth_anns = read_annotations(truth_source)
    val = DetectionTileDataset(
        TileDataset(split.val_tiles, split.opener, split.source.annotations, **split.common),
        truth=truth_centres(truth_anns, min_agreement=s.min_agreement),
        radius_px=s.radius,
        threshold=s.f1_threshold,
    )
    return val, truth_source


@contextlib.contextmanager
def _loss_mode(model: nn.Module, device: torch.device, *, seed: int) -> Iterator[None]:
    """Training mode with every batch norm evaluating and proposal sampling under a fixed seed.

    torchvision returns losses only in training mode; this makes that pass side-effect free:
    no batch-norm statistic moves and the global random streams (CPU, and the device's) come
    out as they went in. The model is left in eval mode.
    """
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.default_generator.manual_seed(int(seed))
        if dev.type == "cuda":
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(int(seed))
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        try:
            yield
        finally:
            model.eval()


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MitokitError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise MitokitError(f"{name} must be a positive number, got {value!r}")
    return v

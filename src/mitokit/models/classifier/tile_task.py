"""Tile-level formulations of the crowd-label study (third paper): BC, Reg and Reg-NS.

- ``tile_classifier`` (BC): binary classification of the tile label ``s_t > 0`` with BCE; one
  negative tile drawn per positive (``negative_ratio: 1``).
- ``tile_regressor`` (Reg / Reg-NS): regression of the tile score ``s_t = sum_i r_i a_i`` with
  MSE; ``negative_ratio: 0`` is Reg (positive tiles only), 1, 2, 4 or 10 is Reg-NS.

Both draw training tiles through :class:`~mitokit.data.sampling.EventTileSampler`: an event
uniformly, then a tile containing it, plus ``negative_ratio`` negative tiles (``s_t = 0``) per
positive draw. Both models are :func:`~mitokit.models.backbones.build_resnet` with one output;
the classifier's is a logit (score = sigmoid), the regressor's a value (score = the predicted
``s_t``, unbounded). Evaluation thresholds scores at 0.5 for TPR, FPR and balanced accuracy: a
probability for BC, a tile score for Reg (half an event of full agreement); the calibration error
is computed on scores clipped to [0, 1].

Data layout (``data`` section):

- ``labels``: boxes (or points, which get a square of ``point_box_size``) with an agreement per
  object, in any format :func:`~mitokit.io.annotations.read_annotations` reads (COCO with an
  ``agreement`` field, GeoJSON, mitokit CSV); or a synthetic tiles folder (``mitokit synth
  tiles``), whose ``crowd.json`` is read. Objects of class ``mitosis`` count; objects without an
  agreement count with ``default_agreement``.
- ``images``: folder of the image files (default: ``images/`` beside the label file, else its
  folder). An image is found as ``<images>/<file_name>``, ``<images>/<image id>`` or
  ``<images>/<basename of file_name>``. The images are those the label file lists (annotated or
  not), or every image in the folder when it lists none.
- each image is cut into sub-tiles of ``tile_size`` at ``stride`` (full tiles only:
  :func:`~mitokit.data.tiling.tile_grid` with the ``drop`` edge policy), by default 250 at 125
  (49 sub-tiles of a 1000-pixel image).
- train / validation split by image, never by tile: ``val_images`` (a list of image ids) or a
  share ``val_fraction`` of the images drawn with ``split_seed`` (at least one image each side
  when there are two or more; ``0`` for no validation). Validation uses every tile of the
  validation images.
- ``augment``: HED jitter (colour) and random flips / 90-degree rotations of training tiles
  (``s_t`` does not change under them), seeded from ``build_data``'s ``seed``.
- ``epoch_length``: draws per epoch (default: events x (1 + ratio)); ``n_max``: keep at most
  this many images (the first in sorted order), for quick runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError
from mitokit.models._common import (
    collect_outputs,
    merge_section,
    scorer_figures,
)
from mitokit.models.classifier.data import TileScoreDataset
from mitokit.models.classifier.model import build_scorer
from mitokit.models.tile_source import (
    EVENT_TILE_DEFAULTS,
    event_tile_section,
    event_tile_settings,
    split_event_tiles,
)

TILE_CLASSIFIER = "tile_classifier"
TILE_REGRESSOR = "tile_regressor"
TILE_TASKS = (TILE_CLASSIFIER, TILE_REGRESSOR)


class _TileTask:
    """Shared code of BC and Reg: data, loss and evaluation differ only in the target.

    A subclass names its ``output`` and default ``negative_ratio`` as class keywords:
    ``output="logit"`` (BC) learns the tile label, ``output="value"`` (Reg) the tile score.
    """

    name: str
    output: str  # "logit" or "value"
    target: str  # "tile_label" or "tile_score"
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet18",
        "input_size": None,
        "weights": None,
        "dropout": 0.0,
    }
    data_defaults: Mapping[str, Any]

    def __init_subclass__(cls, *, output: str, negative_ratio: int, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.output = output
        cls.target = "tile_label" if output == "logit" else "tile_score"
        cls.data_defaults = {
            **EVENT_TILE_DEFAULTS,
            "point_box_size": 50.0,
            "negative_ratio": negative_ratio,
        }

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """A ResNet with one output (a logit for BC, a tile score for Reg)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_scorer(cfg, output=self.output)

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Tiles of the training images drawn events-first; every tile of the validation images.

        Raises:
            MitokitError: Missing labels or images, bad settings, or no event (or, with
                negatives asked for, no negative tile) among the training tiles.
        """
        from mitokit.data.datasets import TileDataset

        cfg = event_tile_section(
            self.data_defaults, data_cfg, task=self.name, labels="box labels with agreement"
        )
        s = event_tile_settings(cfg)
        if self.target == "tile_label" and s.ratio == 0:
            raise MitokitError(f"task {self.name!r} needs data.negative_ratio >= 1 (BC uses 1)")
        split = split_event_tiles(cfg, s, point_box_size=float(cfg["point_box_size"]), seed=seed)
        train = TileScoreDataset(
            split.train_base, target=self.target, flips=bool(cfg["augment"]), draws=split.draws
        )
        val = None
        if split.val_tiles:
            tiles = TileDataset(
                split.val_tiles, split.opener, split.source.annotations, **split.common
            )
            val = TileScoreDataset(tiles, target=self.target)
        return TaskData(train=train, val=val, train_sampler=split.sampler, info=split.summary(s))

    def _loss_of(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output == "logit":
            return F.binary_cross_entropy_with_logits(out, target)
        return F.mse_loss(out, target)

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE (BC) or MSE (Reg) of one batch against its ``target``."""
        out = model(batch["image"].to(device))
        target = batch["target"].to(device).float()
        loss = self._loss_of(out, target)
        positive = float((batch["tile_label"] > 0).float().mean())
        return loss, {
            "bce" if self.output == "logit" else "mse": float(loss.detach()),
            "positive_share": positive,
        }

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Mean loss; tile AUC; TPR, FPR and balanced accuracy at 0.5; ECE of clipped scores."""
        collected = collect_outputs(model, loader, device=device, label_key="tile_label")
        logit = self.output == "logit"
        out = scorer_figures(
            collected, loss_of=self._loss_of, scores_of=torch.sigmoid if logit else torch.clone
        )
        if collected is not None and not logit:
            z, t, _ = collected
            out["mae"] = float((z - t).abs().mean())
        return out


@register_task(TILE_CLASSIFIER)
class TileClassifierTask(_TileTask, output="logit", negative_ratio=1):
    """BC: tile label ``s_t > 0`` with BCE; one negative tile per positive by default."""

    name = TILE_CLASSIFIER


@register_task(TILE_REGRESSOR)
class TileRegressorTask(_TileTask, output="value", negative_ratio=0):
    """Reg (``negative_ratio: 0``) and Reg-NS (1, 2, 4, 10): tile score ``s_t`` with MSE."""

    name = TILE_REGRESSOR


__all__ = [
    "TILE_CLASSIFIER",
    "TILE_REGRESSOR",
    "TILE_TASKS",
    "TileClassifierTask",
    "TileRegressorTask",
]

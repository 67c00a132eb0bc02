"""Classifiers and regressors on ResNet backbones: patch classifier, BC, Reg and Reg-NS.

Importing this module registers three tasks with the engine
(:func:`mitokit.engines.task.register_task`):

- ``patch_classifier`` (:mod:`mitokit.models.tasks_patch`): the first paper's cell-patch
  classifier, trained on majority or soft (mean-vote) targets in class-balanced batches;
- ``tile_classifier`` (BC) and ``tile_regressor`` (Reg, Reg-NS)
  (:mod:`mitokit.models.tasks_tile`): the third paper's tile-level models, trained on tiles drawn
  events-first with a chosen share of negative tiles.

Here live what uses trained models: :class:`PatchEnsemble` (the mean probability of N seeds,
the scorer the diffusion work relies on), :func:`load_ensemble`, :func:`ensemble_configs`
(per-seed configs for training an ensemble), and prediction on image files
(:func:`predict_images`) and on the sub-tiles of images (:func:`predict_tiles`), with optional
test-time flips.

Backbones and initial weights: :mod:`mitokit.models.backbones` (never downloaded).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mitokit.errors import MitokitError, input_error
from mitokit.models._common import flip_views
from mitokit.models.backbones import ARCHS, ResNetScorer, build_resnet, load_init_weights
from mitokit.models.checkpoint import expand_checkpoints
from mitokit.models.tasks_patch import (
    PatchClassifierTask,
    PatchTransform,
    center_crop,
    patch_path,
    read_patch_table,
)
from mitokit.models.tasks_tile import (
    TILE_CLASSIFIER,
    TILE_REGRESSOR,
    TileClassifierTask,
    TileRegressorTask,
    image_files,
    read_tile_source,
)

PATCH_CLASSIFIER = PatchClassifierTask.name
TILE_TASKS = (TILE_CLASSIFIER, TILE_REGRESSOR)


class PatchEnsemble(nn.Module):
    """Average of the scores of several models (sigmoid probabilities for classifiers).

    Every member must give the same kind of score (all logits, or all values).

    Args:
        models: The members (:class:`~mitokit.models.backbones.ResNetScorer`).

    Raises:
        MitokitError: No member, or members of different output kinds.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise MitokitError("an ensemble needs at least one model")
        kinds = {getattr(m, "output", "logit") for m in models}
        if len(kinds) > 1:
            raise MitokitError(f"ensemble members give different outputs: {sorted(kinds)}")
        self.members = nn.ModuleList(models)
        self.output = kinds.pop()

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean score of the members: probabilities for classifiers, values for regressors."""
        return torch.stack([model_scores(m, x) for m in self.members]).mean(dim=0)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Same as calling the ensemble: it already averages scores."""
        return self(x)


def model_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scores of a batch: ``model.scores`` where it has one, else the sigmoid of its output."""
    if hasattr(model, "scores"):
        return model.scores(x)
    return torch.sigmoid(model(x))


def load_ensemble(
    folders: Sequence[str | os.PathLike],
    *,
    expect_task: str | tuple[str, ...] | None = PATCH_CLASSIFIER,
    map_location: str | torch.device = "cpu",
    fold_bn: bool = True,
) -> tuple[PatchEnsemble, list[dict[str, Any]]]:
    """Load saved models (folders, or folders of seed folders) as one ensemble.

    Args:
        folders: Model folders written by :func:`mitokit.models.checkpoint.save_model`.
        expect_task: Task(s) the models must be of (None: any, but all the same).
        map_location: Device.
        fold_bn: Fold each member's batch norm into its convolutions
            (:func:`mitokit.models.inference.fold_batchnorm`): the same scores up to float
            rounding, faster. Off for a model that is to be trained further.

    Returns:
        (the ensemble in eval mode, the members' configs).

    Raises:
        MitokitError: A model of another task (``"is a 'tile_regressor' model, expected
            'patch_classifier'"``), or members of different tasks.
    """
    from mitokit.models.checkpoint import load_model

    models, cfgs = [], []
    for folder in expand_checkpoints(folders):
        model, cfg = load_model(
            folder, expect_task=expect_task, map_location=map_location, fold_bn=fold_bn
        )
        if cfgs and cfg["task"] != cfgs[0]["task"]:
            raise input_error(
                folder, f"is a {cfg['task']!r} model; the first model is {cfgs[0]['task']!r}"
            )
        models.append(model)
        cfgs.append(cfg)
    return PatchEnsemble(models).eval(), cfgs


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def ensemble_configs(
    cfg: Mapping[str, Any],
    n: int = 3,
    *,
    seed_key: str = "train.seed",
    out_key: str = "train.out",
) -> list[dict[str, Any]]:
    """Per-seed copies of a training config for an ensemble of ``n`` models.

    Copy ``i`` gets seed ``base + i`` (base: the config's ``train.seed``, 0 when unset) and,
    when the config names an output folder, ``<out>/seed<i>``; everything else is unchanged, so
    the members differ only in their seed (initialisation, batch order, augmentation; the
    train / validation split has its own ``data.split_seed`` and stays the same). Train each
    with :func:`mitokit.engines.train.train`, then :func:`load_ensemble` on ``<out>``.

    Args:
        cfg: A config mapping (sections ``task``, ``model``, ``data``, ``optim``, ``train``).
        n: Number of members (3 in the first paper).
        seed_key: Dotted path of the seed.
        out_key: Dotted path of the output folder.

    Raises:
        MitokitError: ``n < 1`` or a seed that is not an integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MitokitError(f"an ensemble needs n >= 1 models, got {n!r}")
    base = _get(cfg, seed_key)
    base = 0 if base is None else base
    if isinstance(base, bool) or not isinstance(base, int):
        raise MitokitError(f"{seed_key} must be an integer, got {base!r}")
    out_dir = _get(cfg, out_key)
    configs = []
    for i in range(n):
        c = copy.deepcopy(dict(cfg))
        _set(c, seed_key, base + i)
        if out_dir is not None:
            _set(c, out_key, str(Path(out_dir) / f"seed{i}"))
        configs.append(c)
    return configs


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


__all__ = [
    "ARCHS",
    "PATCH_CLASSIFIER",
    "TILE_CLASSIFIER",
    "TILE_REGRESSOR",
    "TILE_TASKS",
    "PatchClassifierTask",
    "PatchEnsemble",
    "PatchTransform",
    "ResNetScorer",
    "TileClassifierTask",
    "TileRegressorTask",
    "build_resnet",
    "ensemble_configs",
    "expand_checkpoints",
    "image_files",
    "load_ensemble",
    "load_init_weights",
    "model_scores",
    "patch_path",
    "predict_images",
    "predict_tiles",
    "read_patch_table",
    "read_tile_source",
    "score_batch",
]

"""The detector's data: tiles with boxes (flipped and turned with them), truth centres, targets.

The tiles come from :class:`~mitokit.data.datasets.TileDataset` (boxes from the labels, a
square box around a point-only label); :class:`DetectionTileDataset` adds the flips and the
truth of the validation F1; batches are put together by
:func:`~mitokit.data.datasets.collate_detection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mitokit.io.annotations import AnnotationSet
from mitokit.models._common import WorkerDraws, apply_dihedral, dihedral_boxes, draw_dihedral
from mitokit.models.tile_source import (
    TileSource,
    _ImageOpener,
    event_tile_training_set,
    grid_tiles,
    read_tile_source,
    split_images,
)
from mitokit.types import MITOSIS


class DetectionTileDataset(Dataset):
    """Tiles with boxes, labels and weights, optionally flipped / turned with their boxes.

    Items: ``image`` (float ``3xHxW``), ``boxes`` (float32 ``[K, 4]`` tile pixels), ``labels``
    (int64 ``[K]``, 1), ``weights`` (float32 ``[K]``, the agreements), ``image_id``, ``tile``
    (int64 ``[4]``, level-0 box), ``index`` and, with ``truth``, ``truth`` (float32 ``[M, 2]``:
    the true centres inside the tile, in tile pixels).

    Args:
        tiles: The :class:`~mitokit.data.datasets.TileDataset` read from.
        flips: Random flips / quarter turns of square tiles (boxes follow).
        draws: The seeded generator of the flips (shared with the tiles' colour jitter).
        truth: Image id -> ``(M, 2)`` level-0 centres of the true objects (validation).
        radius_px: Matching radius of the validation F1, in pixels.
        threshold: Score threshold of the validation F1.
    """

    def __init__(
        self,
        tiles: Any,
        *,
        flips: bool = False,
        draws: WorkerDraws | None = None,
        truth: Mapping[str, np.ndarray] | None = None,
        radius_px: float = 30.0,
        threshold: float = 0.5,
    ) -> None:
        self.tiles = tiles
        self.flips = bool(flips)
        self.draws = draws if draws is not None else WorkerDraws(0)
        self.truth = None if truth is None else {k: np.asarray(v) for k, v in truth.items()}
        self.radius_px = float(radius_px)
        self.threshold = float(threshold)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.draws.get()  # reseeds first in a new worker (shared with the colour jitter)
        item = self.tiles[index]
        image, boxes = item["image"], item["boxes"]
        h, w = image.shape[-2:]
        if self.flips and h == w:
            k, flip = draw_dihedral(rng)
            arr = apply_dihedral(image.permute(1, 2, 0).numpy(), k, flip)
            image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            moved = dihedral_boxes(boxes.numpy(), k, flip, width=w, height=h)
            boxes = torch.as_tensor(moved, dtype=torch.float32).reshape(-1, 4)
        out = {
            "image": image,
            "boxes": boxes,
            "labels": item["labels"],
            "weights": item["weights"],
            "image_id": item["image_id"],
            "tile": item["tile"],
            "index": item["index"],
        }
        if self.truth is not None:
            x1, y1, x2, y2 = (float(v) for v in item["tile"])
            pts = self.truth.get(str(item["image_id"]), np.zeros((0, 2))).reshape(-1, 2)
            inside = (pts[:, 0] >= x1) & (pts[:, 0] < x2) & (pts[:, 1] >= y1) & (pts[:, 1] < y2)
            local = pts[inside] - np.array([x1, y1])
            out["truth"] = torch.as_tensor(local, dtype=torch.float32).reshape(-1, 2)
        return out


def truth_centres(annotations: AnnotationSet, *, min_agreement: float) -> dict[str, np.ndarray]:
    """Image id -> ``(M, 2)`` centres of the mitoses with agreement >= ``min_agreement``.

    Objects without an agreement (consensus labels) count.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    for ann in annotations:
        if ann.label != MITOSIS:
            continue
        if ann.agreement is not None and ann.agreement < min_agreement:
            continue
        out.setdefault(ann.image, []).append(ann.center)
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in out.items()}


def _targets_to(targets: Sequence[Mapping[str, Any]], device: torch.device) -> list[dict]:
    """The tensors the detector reads (``weights`` 1 where a target has none), on ``device``."""
    out = []
    for t in targets:
        boxes = t["boxes"].to(device).float().reshape(-1, 4)
        weights = t.get("weights")
        if weights is None:
            weights = torch.ones(len(boxes))
        out.append(
            {
                "boxes": boxes,
                "labels": t["labels"].to(device).long(),
                "weights": weights.to(device).float(),
            }
        )
    return out


class EventTileSplit(NamedTuple):
    """A tile source split by image: training tiles drawn events-first, validation tiles.

    Attributes:
        source: The images and their labels.
        train_ids: The training images.
        val_ids: The validation images.
        opener: Reads an image by id (shared by both sets).
        common: The :class:`~mitokit.data.datasets.TileDataset` settings of both sets.
        train_base: The training tiles (a ``TileDataset``, colour-jittered when ``augment``).
        sampler: Their :class:`~mitokit.data.sampling.EventTileSampler`.
        draws: The per-worker random draws of the training augmentation.
        val_tiles: Every tile of the validation images (level-0 boxes).
    """

    source: TileSource
    train_ids: list[str]
    val_ids: list[str]
    opener: _ImageOpener
    common: dict[str, Any]
    train_base: Any
    sampler: Any
    draws: WorkerDraws
    val_tiles: list


def split_event_tiles(
    cfg: Mapping[str, Any],
    *,
    tile_size: int,
    stride: int,
    ratio: int,
    split_seed: int,
    n_max: int | None,
    epoch_length: int | None,
    val_fraction: float,
    point_box_size: float,
    seed: int,
    **tile_settings: Any,
) -> EventTileSplit:
    """Read the labels and images of a ``data`` section, split them by image and cut tiles.

    The first ``n_max`` images (all when None) are split into training and validation images
    (:func:`~mitokit.models.tile_source.split_images`); the training tiles are drawn
    events-first with ``ratio`` negative tiles per positive draw
    (:func:`~mitokit.models.tile_source.event_tile_training_set`). ``cfg`` gives ``labels``,
    ``images``, ``val_images``, ``default_agreement`` and the augmentation keys;
    ``tile_settings`` are further ``TileDataset`` settings (e.g. ``min_box_fraction``).

    Raises:
        MitokitError: Missing labels or images, no tile in the training images, or no event
            (or, with negatives asked for, no negative tile) among the training tiles.
    """
    source = read_tile_source(cfg["labels"], images=cfg["images"])
    ids = source.image_ids[:n_max] if n_max else source.image_ids
    train_ids, val_ids = split_images(
        ids, val_fraction=val_fraction, val_images=cfg["val_images"], seed=split_seed
    )
    opener = _ImageOpener(source.paths)
    common = {
        "point_box_size": point_box_size,
        "label": MITOSIS,
        "default_agreement": float(cfg["default_agreement"]),
        **tile_settings,
    }
    train_base, sampler, draws = event_tile_training_set(
        source,
        train_ids,
        opener,
        common,
        tile_size=tile_size,
        stride=stride,
        cfg=cfg,
        ratio=ratio,
        epoch_length=epoch_length,
        seed=seed,
    )
    val_tiles = grid_tiles(source, val_ids, tile_size=tile_size, stride=stride)
    return EventTileSplit(
        source, train_ids, val_ids, opener, common, train_base, sampler, draws, val_tiles
    )

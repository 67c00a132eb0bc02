"""The detector's data: tiles with boxes (flipped and turned with them), truth centres, targets.

The tiles come from :class:`~mitokit.data.datasets.TileDataset` (boxes from the labels, a
square box around a point-only label); :class:`DetectionTileDataset` adds the flips and the
truth of the validation F1; batches are put together by
:func:`~mitokit.data.datasets.collate_detection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitokit.io.annotations import AnnotationSet
from mitokit.models._common import WorkerDraws, apply_dihedral, dihedral_boxes, draw_dihedral

# Re-exported: the split moved to tile_source (shared with the tile models).
from mitokit.models.tile_source import EventTileSplit as EventTileSplit
from mitokit.models.tile_source import split_event_tiles as split_event_tiles
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

"""Tile coarsening of box labels (the crowd study's tile score).

A tile's score is ``s_t = sum_i r_i * a_i`` where ``r_i`` is the fraction of box ``i``'s area that
lies inside tile ``t`` and ``a_i`` the box's agreement score; the tile is positive when
``s_t > 0``. Point labels get a square box of a given size first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mitokit.io.annotations import AnnotationSet
from mitokit.types import MITOSIS


def box_fraction_inside(boxes: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Fraction of each box's area inside each tile.

    Args:
        boxes: (N, 4) boxes [x1, y1, x2, y2].
        tiles: (T, 4) tiles [x1, y1, x2, y2].

    Returns:
        (T, N) array of fractions in [0, 1]. A degenerate box (zero area) counts as 1 inside a
        tile that contains its corner point and 0 elsewhere.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tiles = np.asarray(tiles, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(tiles[:, None, 0], boxes[None, :, 0])
    iy1 = np.maximum(tiles[:, None, 1], boxes[None, :, 1])
    ix2 = np.minimum(tiles[:, None, 2], boxes[None, :, 2])
    iy2 = np.minimum(tiles[:, None, 3], boxes[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out = np.zeros_like(inter)
    pos = area > 0
    out[:, pos] = inter[:, pos] / area[pos]
    if (~pos).any():
        px, py = boxes[~pos, 0], boxes[~pos, 1]
        inside = (
            (tiles[:, None, 0] <= px)
            & (px < tiles[:, None, 2])
            & (tiles[:, None, 1] <= py)
            & (py < tiles[:, None, 3])
        )
        out[:, ~pos] = inside.astype(np.float64)
    return out


def tile_scores(
    boxes: np.ndarray, agreements: np.ndarray | Sequence[float], tiles: np.ndarray
) -> np.ndarray:
    """``s_t = sum_i r_i * a_i`` for each tile.

    Args:
        boxes: (N, 4) boxes of one image.
        agreements: (N,) agreement score of each box.
        tiles: (T, 4) tiles of the same image.

    Returns:
        (T,) tile scores.
    """
    a = np.asarray(agreements, dtype=np.float64).reshape(-1)
    if len(a) != len(np.asarray(boxes).reshape(-1, 4)):
        raise ValueError(f"{len(a)} agreements for {len(np.asarray(boxes).reshape(-1, 4))} boxes")
    if not np.all(np.isfinite(a)):
        raise ValueError("agreement scores must be finite")
    return box_fraction_inside(boxes, tiles) @ a


def coarsen_to_tiles(
    annotations: AnnotationSet,
    tiles: Sequence[tuple[str, Sequence[float]]],
    *,
    label: str = MITOSIS,
    point_box_size: float = 50.0,
    default_agreement: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Tile scores and classes for tiles of several images.

    Args:
        annotations: Objects of any images; only those of class ``label`` count.
        tiles: (image id, [x1, y1, x2, y2]) per tile.
        label: Class whose boxes score.
        point_box_size: Side in pixels of the square given to point-only objects.
        default_agreement: Agreement of objects that carry none.

    Returns:
        (scores (T,), classes (T,) as int 0/1 with class = score > 0).
    """
    by_image: dict[str, list] = {}
    for ann in annotations:
        if ann.label == label:
            by_image.setdefault(ann.image, []).append(ann)
    scores = np.zeros(len(tiles))
    for t, (image, tile_box) in enumerate(tiles):
        objs = by_image.get(image, [])
        if not objs:
            continue
        boxes = np.array([o.box_or_square(point_box_size) for o in objs])
        agree = np.array([default_agreement if o.agreement is None else o.agreement for o in objs])
        scores[t] = tile_scores(boxes, agree, np.asarray(tile_box)[None, :])[0]
    return scores, (scores > 0).astype(np.int64)

"""Crowd raters boxing mitoses, and the boxes they agree on (the TCGA crowd study's labels).

A :class:`CrowdPanel` of noisy crowd raters boxes the cells it believes mitotic, plus random
false positives (``_crowd_marks``); boxes of different raters that overlap are clustered
(:func:`cluster_boxes`) and a cluster is kept when at least ``min_raters`` raters drew it, with
agreement ``a`` = raters in the cluster / crowd size (:func:`crowd_boxes`, :class:`CrowdBox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mitokit.data.synthetic._draws import Seed, _check, _check_positive_int, _rng
from mitokit.data.synthetic.cells import CellTable
from mitokit.types import BoxXYXY

__all__ = ["CrowdBox", "CrowdPanel", "cluster_boxes", "crowd_boxes"]


@dataclass(frozen=True)
class CrowdPanel:
    """A pool of crowd raters boxing mitoses.

    Rater ``j`` boxes cell ``c`` with probability ``p(m_c)``: a logistic curve in ``m`` centred on
    ``midpoint + d_j`` (``d_j`` ~ N(0, ``spread``): lenient and strict raters) and rescaled so that
    ``p(0) = 0`` and ``p(1) = sensitivity``. Imposters, whose ``m`` is low but not zero, are
    therefore boxed now and then. Each rater also draws Poisson(``fp_per_mpx`` x area in
    megapixels) boxes at random places (false positives). Every box is the cell's box with each
    coordinate jittered by N(0, ``jitter``) pixels.

    Attributes:
        n_crowd: Raters in the pool (ids ``crowd1``, ``crowd2``, ...).
        sensitivity: Probability of boxing a cell with ``m = 1``.
        midpoint: ``m`` where the curve is steepest.
        steepness: Slope of the logistic curve (per unit of ``m``).
        spread: Standard deviation of each rater's shift of the midpoint.
        fp_per_mpx: Expected random false-positive boxes per rater per 10^6 square pixels.
        fp_box_size: Side of a false-positive box in pixels; None draws the side of a random cell.
        jitter: Standard deviation in pixels of each box coordinate.
        min_iou: IoU from which two raters' boxes are taken for the same object.
        min_raters: Distinct raters a cluster needs to be kept (2: a lone box never survives).
    """

    n_crowd: int = 10
    sensitivity: float = 0.8
    midpoint: float = 0.5
    steepness: float = 10.0
    spread: float = 0.1
    fp_per_mpx: float = 4.0
    fp_box_size: float | None = None
    jitter: float = 2.0
    min_iou: float = 0.3
    min_raters: int = 2

    def __post_init__(self) -> None:
        _check_positive_int(self.n_crowd, "n_crowd")
        _check(
            0.0 <= self.sensitivity <= 1.0,
            f"sensitivity must be in [0, 1], not {self.sensitivity}",
        )
        _check(np.isfinite(self.midpoint), "midpoint must be finite")
        _check(
            np.isfinite(self.steepness) and self.steepness > 0,
            f"steepness must be > 0, not {self.steepness}",
        )
        for name in ("spread", "fp_per_mpx", "jitter"):
            value = getattr(self, name)
            _check(np.isfinite(value) and value >= 0, f"{name} must be >= 0, not {value}")
        _check(
            self.fp_box_size is None or (np.isfinite(self.fp_box_size) and self.fp_box_size > 0),
            f"fp_box_size must be > 0, not {self.fp_box_size}",
        )
        _check(0.0 < self.min_iou <= 1.0, f"min_iou must be in (0, 1], not {self.min_iou}")
        _check_positive_int(self.min_raters, "min_raters")

    @property
    def rater_ids(self) -> tuple[str, ...]:
        """``crowd1`` ... ``crowdN``."""
        return tuple(f"crowd{j + 1}" for j in range(self.n_crowd))

    def p_mark(self, m: np.ndarray, shift: float | np.ndarray = 0.0) -> np.ndarray:
        """Probability that a rater with midpoint shift ``shift`` boxes a cell of score ``m``."""
        from scipy.special import expit

        k, c = self.steepness, self.midpoint + np.asarray(shift, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        lo, hi = expit(-k * c), expit(k * (1.0 - c))
        p = (expit(k * (m - c)) - lo) / (hi - lo)
        return self.sensitivity * np.clip(p, 0.0, 1.0)


@dataclass(frozen=True)
class CrowdBox:
    """A box kept from the crowd.

    Attributes:
        box: (x1, y1, x2, y2): the coordinate-wise median of the cluster's boxes.
        agreement: Share of the crowd that drew it: ``n_raters / n_crowd``.
        n_raters: Distinct raters in the cluster.
        raters: Their ids.
        cell: Id of the cell most of the cluster's boxes were drawn on, or None when most were
            random false positives.
    """

    box: BoxXYXY
    agreement: float
    n_raters: int
    raters: tuple[str, ...]
    cell: int | None


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a[..., :4]`` and ``b[..., :4]``, broadcast (0 where both are empty)."""
    ix = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    iy = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def cluster_boxes(
    boxes: np.ndarray,
    raters: Sequence[int] | np.ndarray,
    *,
    min_iou: float = 0.3,
    min_raters: int = 2,
) -> list[np.ndarray]:
    """Group boxes of several raters that mark the same object.

    Boxes of different raters with IoU >= ``min_iou`` are linked. Within each connected group a
    greedy step takes as seed the box linked to the most other raters (then the highest summed
    IoU, then the lowest index) and gathers, for every other rater, that rater's box of highest
    IoU with the seed; the step repeats on what is left. A cluster so holds at most one box per
    rater and every member overlaps its seed.

    Args:
        boxes: (N, 4) boxes [x1, y1, x2, y2].
        raters: (N,) rater of each box (any hashable integers).
        min_iou: Linking threshold.
        min_raters: Clusters with fewer distinct raters are dropped.

    Returns:
        Member indices (sorted) of each kept cluster, ordered by their first member.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    raters = np.asarray(raters).reshape(-1)
    _check(len(raters) == len(boxes), f"{len(raters)} raters for {len(boxes)} boxes")
    _check(0.0 < min_iou <= 1.0, f"min_iou must be in (0, 1], not {min_iou}")
    n = len(boxes)
    if n == 0:
        return []
    # Boxes that overlap at all have centres closer than the largest box diagonal.
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    reach = float(np.max(np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    pairs = cKDTree(centres).query_pairs(max(reach, 1e-9), output_type="ndarray")
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        iou = _iou(boxes[i], boxes[j])
        keep = (iou >= min_iou) & (raters[i] != raters[j])
        i, j = i[keep], j[keep]
    else:
        i = j = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    n_groups, group = connected_components(graph, directed=False)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(n_groups + 1))
    clusters: list[np.ndarray] = []
    for g in range(n_groups):
        members = order[starts[g] : starts[g + 1]]
        if len(members) < min_raters:
            continue
        clusters.extend(_greedy_clusters(boxes, raters, members, min_iou, min_raters))
    clusters.sort(key=lambda c: int(c[0]))
    return clusters


def _greedy_clusters(
    boxes: np.ndarray, raters: np.ndarray, members: np.ndarray, min_iou: float, min_raters: int
) -> list[np.ndarray]:
    """Seeded greedy clustering of one connected group (one box per rater per cluster)."""
    sub = boxes[members]
    iou = _iou(sub[:, None, :], sub[None, :, :])
    r = raters[members]
    linked = (iou >= min_iou) & (r[:, None] != r[None, :])
    left = np.ones(len(members), dtype=bool)
    out = []
    while left.sum() >= min_raters:
        best = None
        for s in np.flatnonzero(left):
            cand = np.flatnonzero(linked[s] & left)
            picks = _best_per_rater(cand, r, iou[s])
            key = (len(picks), float(iou[s, picks].sum()) if len(picks) else 0.0, -s)
            if best is None or key > best[0]:
                best = (key, s, picks)
        _, s, picks = best
        if len(picks) + 1 < min_raters:
            break  # no seed can gather enough raters any more
        chosen = np.concatenate([[s], picks]).astype(np.int64)
        left[chosen] = False
        out.append(np.sort(members[chosen]))
    return out


def _best_per_rater(cand: np.ndarray, r: np.ndarray, iou_row: np.ndarray) -> np.ndarray:
    """Among candidate indices, the one of highest IoU (then lowest index) per rater."""
    if len(cand) == 0:
        return cand
    order = cand[np.lexsort((cand, -iou_row[cand]))]
    _, first = np.unique(r[order], return_index=True)
    return np.sort(order[first])


def _crowd_marks(
    cells: CellTable, panel: CrowdPanel, rng: np.random.Generator, extent: BoxXYXY | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every box the crowd draws: (boxes (B, 4), rater index (B,), source cell row or -1)."""
    n, J = len(cells), panel.n_crowd
    shift = rng.normal(0.0, panel.spread, size=J) if panel.spread > 0 else np.zeros(J)
    p = panel.p_mark(np.asarray(cells.m, dtype=np.float64)[:, None], shift[None, :])
    marked = rng.random((n, J)) < p
    rows, raters = np.nonzero(marked)
    cell_boxes = cells.boxes().astype(np.float64).reshape(-1, 4)
    boxes = [cell_boxes[rows]]
    rater_list = [raters]
    sources = [rows.astype(np.int64)]
    if extent is None and n:
        extent = (
            float(cell_boxes[:, 0].min()),
            float(cell_boxes[:, 1].min()),
            float(cell_boxes[:, 2].max()),
            float(cell_boxes[:, 3].max()),
        )
    if extent is not None and panel.fp_per_mpx > 0:
        x1, y1, x2, y2 = extent
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        n_fp = rng.poisson(panel.fp_per_mpx * area / 1e6, size=J)
        total = int(n_fp.sum())
        if total:
            if panel.fp_box_size is not None:
                side = np.full(total, float(panel.fp_box_size))
            elif n:
                side = (cell_boxes[:, 2] - cell_boxes[:, 0])[rng.integers(0, n, size=total)]
            else:
                side = np.full(total, 24.0)
            cx = rng.uniform(x1, x2, size=total)
            cy = rng.uniform(y1, y2, size=total)
            h = side / 2.0
            boxes.append(np.stack([cx - h, cy - h, cx + h, cy + h], axis=1))
            rater_list.append(np.repeat(np.arange(J), n_fp))
            sources.append(np.full(total, -1, dtype=np.int64))
    all_boxes = np.concatenate(boxes, axis=0)
    if panel.jitter > 0 and len(all_boxes):
        all_boxes = all_boxes + rng.normal(0.0, panel.jitter, size=all_boxes.shape)
        xs, ys = np.sort(all_boxes[:, [0, 2]], axis=1), np.sort(all_boxes[:, [1, 3]], axis=1)
        all_boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)
    return all_boxes, np.concatenate(rater_list), np.concatenate(sources)


def crowd_boxes(
    cells: CellTable,
    *,
    panel: CrowdPanel | None = None,
    seed: Seed,
    extent: BoxXYXY | None = None,
) -> list[CrowdBox]:
    """Boxes a crowd agrees on, with their agreement score (as the TCGA crowd study).

    Args:
        cells: The truth.
        panel: The crowd; :class:`CrowdPanel` defaults when None.
        seed: Seed of the draws.
        extent: (x1, y1, x2, y2) where random false positives fall; None takes the box around
            all cells (and draws none for an empty table).

    Returns:
        The kept boxes, ordered by the first box of each cluster (cell order, then false
        positives).
    """
    panel = CrowdPanel() if panel is None else panel
    rng = _rng(seed)
    boxes, raters, sources = _crowd_marks(cells, panel, rng, extent)
    ids = panel.rater_ids
    out = []
    for members in cluster_boxes(boxes, raters, min_iou=panel.min_iou, min_raters=panel.min_raters):
        box = np.median(boxes[members], axis=0)
        src = sources[members]
        values, counts = np.unique(src, return_counts=True)
        # Most boxes wins; a tie goes to a real cell over a false positive (-1 sorts first).
        top = values[counts == counts.max()]
        row = int(top[top >= 0][0]) if (top >= 0).any() else -1
        who = tuple(ids[j] for j in sorted(int(x) for x in raters[members]))
        out.append(
            CrowdBox(
                box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                agreement=len(members) / panel.n_crowd,
                n_raters=len(members),
                raters=who,
                cell=int(cells.id[row]) if row >= 0 else None,
            )
        )
    return out

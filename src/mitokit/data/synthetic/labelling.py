"""Labelling processes: every label kind of the three papers from one known truth.

A synthetic scene knows each cell's latent mitosis score ``m`` (:class:`CellTable`). Real labels
see that truth only through people, so each process here draws labels from ``m`` the way its
study did:

- **Pathologists** (the meningioma study): a :class:`RaterPanel` of ``n_raters`` raters gives each
  cell 0 / 0.5 / 1 (or 0 / 1) from a noisy, biased view of ``m``; some cells are rated again, up
  to ``max_repeats`` times per rater, each time with fresh intra-rater noise
  (:func:`rate_pathologists`).
- **Consensus** binary labels (as CCMCT) and consensus **centroids** (as TUPAC16), from those
  votes (:func:`consensus`, :func:`consensus_centroids`).
- **Crowd** boxes (as the TCGA crowd study): a :class:`CrowdPanel` of noisy crowd raters boxes the
  cells it believes mitotic, plus random false positives; boxes of different raters that overlap
  are clustered and a cluster is kept when at least ``min_raters`` raters drew it, with agreement
  ``a`` = raters in the cluster / crowd size (:func:`crowd_boxes`, :func:`cluster_boxes`).
- **Image-level presence** (the weak-label study): an image is positive when it holds at least one
  positive cell (:func:`image_presence`).

:func:`label_scene` runs all of them on one scene and returns the labels as
:class:`~mitokit.io.annotations.AnnotationSet` objects of the project's one annotation model, each
annotation carrying the truth (``extra["m"]``, ``extra["kind"]``) so evaluation can use it.

Everything random goes through an explicit seed (an int or a :class:`numpy.random.Generator`);
the same seed gives the same labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mitokit.data.synthetic.cells import KIND_NAMES, PHASE_NAMES, CellTable
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.labels.aggregate import Repeats, Tie, aggregate_votes
from mitokit.types import MITOSIS, NON_MITOSIS, BoxXYXY, SizeWH

Seed = int | np.random.Generator
Scale = Literal["three", "binary"]
Rule = Literal["majority", "unanimous", "any"]

FORMAT = "synthetic"


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy Generator, not {seed!r}")
    return np.random.default_rng(int(seed))


def _children(seed: Seed, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from one seed (each process gets its own stream)."""
    if isinstance(seed, np.random.Generator):
        return [np.random.default_rng(int(s)) for s in seed.integers(0, 2**63, size=n)]
    _rng(seed)  # validates
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# --------------------------------------------------------------------------------------------
# Pathologists
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterPanel:
    """A panel of pathologists rating every cell.

    Rating ``k`` of cell ``c`` by rater ``r`` is drawn from the view
    ``v = m_c + b_r + noise * (sqrt(1 - intra_share) * e_rc + sqrt(intra_share) * u_rck)`` with
    standard normal ``e`` (the rater's lasting impression of the cell) and ``u`` (drawn afresh at
    every rating: intra-rater noise). On the ``"three"`` scale the view gives 0 below
    ``thresholds[0]``, 1 above ``thresholds[1]`` and 0.5 (unsure) in between, bounds included;
    on the ``"binary"`` scale it gives 1 above the midpoint of the thresholds (0.5 by default)
    and 0 otherwise.

    The default panel has three raters rather than the meningioma study's two: an odd panel
    gives binary majorities without ties and Fleiss' kappa more ratings per object to work on.
    :meth:`meningioma` gives the study's set-up.

    Attributes:
        n_raters: Number of pathologists (ids ``pathologist1``, ``pathologist2``, ...).
        noise: Standard deviation of each rating's view of ``m`` (0 = perfect raters). The
            default, 0.12, leaves about a third of the cells of a uniform ``m`` with a split vote.
        bias_sd: Standard deviation of each rater's shift ``b_r`` (a lenient or strict rater),
            drawn per panel; ignored when ``biases`` is given.
        biases: The raters' shifts, one per rater, or None to draw them.
        thresholds: (low, high) cut points of the view on the 0 / 0.5 / 1 scale.
        scale: ``"three"`` for 0 / 0.5 / 1 votes, ``"binary"`` for 0 / 1 votes.
        repeat_fraction: Share of cells rated again; each rater rates such a cell between 2 and
            ``max_repeats`` times (uniformly), every other cell once.
        max_repeats: Most ratings of one cell by one rater.
        intra_share: Share of the noise variance drawn afresh at every rating; the rest is the
            rater's lasting view of the cell, so repeats agree more than different raters do.
    """

    n_raters: int = 3
    noise: float = 0.12
    bias_sd: float = 0.05
    biases: tuple[float, ...] | None = None
    thresholds: tuple[float, float] = (0.4, 0.6)
    scale: Scale = "three"
    repeat_fraction: float = 0.2
    max_repeats: int = 3
    intra_share: float = 0.5

    def __post_init__(self) -> None:
        _check(
            isinstance(self.n_raters, (int, np.integer)) and self.n_raters >= 1,
            f"n_raters must be a positive integer, not {self.n_raters!r}",
        )
        _check(np.isfinite(self.noise) and self.noise >= 0, f"noise must be >= 0, not {self.noise}")
        _check(
            np.isfinite(self.bias_sd) and self.bias_sd >= 0,
            f"bias_sd must be >= 0, not {self.bias_sd}",
        )
        if self.biases is not None:
            _check(
                len(self.biases) == self.n_raters,
                f"{len(self.biases)} biases for {self.n_raters} raters",
            )
            _check(all(np.isfinite(b) for b in self.biases), "biases must be finite")
        low, high = self.thresholds
        _check(
            np.isfinite(low) and np.isfinite(high) and low <= high,
            f"thresholds must be finite with low <= high, not {self.thresholds}",
        )
        _check(
            self.scale in ("three", "binary"), f"scale must be three or binary, not {self.scale!r}"
        )
        _check(
            0.0 <= self.repeat_fraction <= 1.0,
            f"repeat_fraction must be in [0, 1], not {self.repeat_fraction}",
        )
        _check(
            isinstance(self.max_repeats, (int, np.integer)) and self.max_repeats >= 1,
            f"max_repeats must be a positive integer, not {self.max_repeats!r}",
        )
        _check(
            self.repeat_fraction == 0 or self.max_repeats >= 2,
            "repeat_fraction > 0 needs max_repeats >= 2",
        )
        _check(
            0.0 <= self.intra_share <= 1.0,
            f"intra_share must be in [0, 1], not {self.intra_share}",
        )

    @classmethod
    def meningioma(cls, **changes) -> RaterPanel:
        """The meningioma study's set-up: two pathologists, a cell rated up to three times."""
        return cls(**{"n_raters": 2, "max_repeats": 3, "repeat_fraction": 0.3, **changes})

    @property
    def rater_ids(self) -> tuple[str, ...]:
        """``pathologist1`` ... ``pathologistR``."""
        return tuple(f"pathologist{r + 1}" for r in range(self.n_raters))

    def score(self, view: np.ndarray) -> np.ndarray:
        """Votes (0 / 0.5 / 1, or 0 / 1) of views of ``m``."""
        view = np.asarray(view, dtype=np.float64)
        low, high = self.thresholds
        if self.scale == "binary":
            return (view > (low + high) / 2.0).astype(np.float64)
        return np.where(view < low, 0.0, np.where(view > high, 1.0, 0.5))


def rate_pathologists(
    cells: CellTable, *, panel: RaterPanel | None = None, seed: Seed
) -> list[tuple[Vote, ...]]:
    """Votes of a pathologist panel on every cell.

    Args:
        cells: The truth.
        panel: The raters; :class:`RaterPanel` defaults when None.
        seed: Seed of the draws.

    Returns:
        One tuple of votes per cell, in the table's order: each rater's ratings together, raters
        in order ``pathologist1``, ``pathologist2``, ...; a re-rated cell has a rater's repeats
        one after the other.
    """
    panel = RaterPanel() if panel is None else panel
    rng = _rng(seed)
    n, R, K = len(cells), panel.n_raters, panel.max_repeats
    if panel.biases is not None:
        bias = np.asarray(panel.biases, dtype=np.float64)
    else:
        bias = rng.normal(0.0, panel.bias_sd, size=R) if panel.bias_sd > 0 else np.zeros(R)
    lasting = rng.standard_normal((n, R, 1))
    fresh = rng.standard_normal((n, R, K))
    noise = np.sqrt(1.0 - panel.intra_share) * lasting + np.sqrt(panel.intra_share) * fresh
    m = np.asarray(cells.m, dtype=np.float64)
    view = m[:, None, None] + bias[None, :, None] + panel.noise * noise
    values = panel.score(view)
    repeated = rng.random(n) < panel.repeat_fraction
    counts = np.ones((n, R), dtype=np.int64)
    if K >= 2:
        extra = rng.integers(2, K + 1, size=(n, R))
        counts = np.where(repeated[:, None], extra, counts)
    ids = panel.rater_ids
    return [
        tuple(Vote(ids[r], float(values[i, r, k])) for r in range(R) for k in range(counts[i, r]))
        for i in range(n)
    ]


# --------------------------------------------------------------------------------------------
# Consensus
# --------------------------------------------------------------------------------------------


def consensus(
    votes: Sequence[Sequence[Vote]],
    *,
    rule: Rule = "majority",
    repeats: Repeats = "rater_mean",
    tie: Tie = "negative",
) -> np.ndarray:
    """Binary consensus label per cell (as CCMCT's consensus of pathologists).

    Args:
        votes: One sequence of votes per cell.
        rule: ``"majority"``: the mean vote (see ``repeats``) is above 0.5, an exact 0.5 going
            by ``tie``; ``"unanimous"``: every rater's mean vote is above 0.5; ``"any"``: some
            rater's mean vote is above 0.5.
        repeats: ``"rater_mean"`` (default) gives every pathologist one voice however often they
            rated the cell; ``"pool"`` counts every rating.
        tie: The label of an exact 0.5 under ``"majority"``: ``"negative"`` (default, a cell
            nobody calls a mitosis more than not is not counted) or ``"positive"``.

    Returns:
        (N,) int64 array of 0 / 1.

    Raises:
        ValueError: An unknown rule or tie, or a cell without votes.
    """
    _check(rule in ("majority", "unanimous", "any"), f"unknown consensus rule {rule!r}")
    _check(tie in ("negative", "positive"), f"tie must be negative or positive, not {tie!r}")
    out = np.zeros(len(votes), dtype=np.int64)
    for i, cell_votes in enumerate(votes):
        _check(len(cell_votes) > 0, f"cell {i} has no votes: no consensus")
        if rule == "majority":
            out[i] = aggregate_votes(cell_votes, repeats=repeats, tie=tie).majority
            continue
        means: dict[str, list[float]] = {}
        for v in cell_votes:
            means.setdefault(v.rater, []).append(v.value)
        positive = [float(np.mean(vals)) > 0.5 for vals in means.values()]
        out[i] = int(all(positive) if rule == "unanimous" else any(positive))
    return out


def consensus_centroids(cells: CellTable, positive: np.ndarray) -> np.ndarray:
    """(K, 2) centres (x, y) of the consensus-positive cells (TUPAC16-style centroid labels)."""
    positive = _as_flags(positive, len(cells), "positive")
    return np.stack([cells.x[positive], cells.y[positive]], axis=1).astype(np.float64)


def _as_flags(values: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    _check(len(arr) == n, f"{name} has {len(arr)} entries for {n} cells")
    return arr.astype(bool)


# --------------------------------------------------------------------------------------------
# Crowd
# --------------------------------------------------------------------------------------------


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
        _check(
            isinstance(self.n_crowd, (int, np.integer)) and self.n_crowd >= 1,
            f"n_crowd must be a positive integer, not {self.n_crowd!r}",
        )
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
        _check(
            isinstance(self.min_raters, (int, np.integer)) and self.min_raters >= 1,
            f"min_raters must be a positive integer, not {self.min_raters!r}",
        )

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


# --------------------------------------------------------------------------------------------
# Image-level presence
# --------------------------------------------------------------------------------------------


def image_presence(
    image_of_cell: Sequence[str] | np.ndarray,
    positive: Sequence[int] | np.ndarray,
    *,
    images: Iterable[str] | None = None,
) -> dict[str, int]:
    """Image-level presence labels (as the weak-label study): 1 where an image holds a mitosis.

    Args:
        image_of_cell: (N,) image id of every cell.
        positive: (N,) whether each cell counts as a mitosis: the consensus
            (:func:`consensus`) for labels as a study would have them, or the truth
            (``cells.m > 0.5``) for the truth-based variant.
        images: All image ids, so that images without any cell get a 0; None takes the images
            seen in ``image_of_cell``.

    Returns:
        Image id -> 0 / 1, images in order (given order, else first appearance).
    """
    image_of_cell = [str(i) for i in np.asarray(image_of_cell, dtype=object).reshape(-1)]
    flags = _as_flags(positive, len(image_of_cell), "positive")
    out: dict[str, int] = {str(i): 0 for i in images} if images is not None else {}
    for image, flag in zip(image_of_cell, flags, strict=True):
        if images is not None and image not in out:
            raise ValueError(f"cell on image {image!r}, which is not among the images given")
        out[image] = max(out.get(image, 0), int(flag))
    return out


# --------------------------------------------------------------------------------------------
# Annotation sets
# --------------------------------------------------------------------------------------------


def _truth(cells: CellTable, row: int) -> dict:
    return {
        "cell_id": int(cells.id[row]),
        "m": float(cells.m[row]),
        "kind": KIND_NAMES.get(int(cells.kind[row]), str(int(cells.kind[row]))),
        "phase": PHASE_NAMES.get(int(cells.phase[row]), str(int(cells.phase[row]))),
    }


def _empty_set(image_id: str, size: SizeWH | None, raters, source: str | None) -> AnnotationSet:
    w, h = size if size is not None else (None, None)
    return AnnotationSet(
        annotations=[],
        images={image_id: ImageInfo(image_id, width=w, height=h)},
        raters=list(raters),
        source=source if source is not None else f"synthetic:{image_id}",
        format=FORMAT,
    )


def pathologist_set(
    cells: CellTable,
    votes: Sequence[Sequence[Vote]],
    *,
    image_id: str,
    size: SizeWH | None = None,
    source: str | None = None,
    raters: Sequence[str] | None = None,
    repeats: Repeats = "rater_mean",
) -> AnnotationSet:
    """Every cell as a point (and its box) with the pathologists' votes.

    The label is the majority class of the votes (``mitosis`` / ``non_mitosis``; ties negative,
    each rater one voice with the default ``repeats``). ``raters`` lists the panel (default: the
    raters seen in the votes). ``extra`` holds the truth: ``cell_id``, ``m``, ``kind``, ``phase``.
    """
    _check(len(votes) == len(cells), f"{len(votes)} vote tuples for {len(cells)} cells")
    if raters is None:
        raters = sorted({v.rater for vs in votes for v in vs}, key=_natural)
    out = _empty_set(image_id, size, raters, source)
    boxes = cells.boxes()
    for i, cell_votes in enumerate(votes):
        major = aggregate_votes(cell_votes, repeats=repeats).majority if cell_votes else 0
        out.annotations.append(
            Annotation(
                id=f"{image_id}/cell{int(cells.id[i])}",
                image=image_id,
                point=(float(cells.x[i]), float(cells.y[i])),
                box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                label=MITOSIS if major == 1 else NON_MITOSIS,
                votes=tuple(cell_votes),
                extra=_truth(cells, i),
            )
        )
    return out


def consensus_set(
    cells: CellTable,
    positive: Sequence[int] | np.ndarray,
    *,
    image_id: str,
    positives_only: bool = False,
    points_only: bool = False,
    size: SizeWH | None = None,
    source: str | None = None,
) -> AnnotationSet:
    """Consensus labels as points (and boxes): CCMCT-style, or TUPAC16-style centroids.

    Args:
        cells: The truth.
        positive: (N,) consensus per cell (:func:`consensus`).
        image_id: Image the cells are on.
        positives_only: Keep only the mitoses (centroid labels); else every cell, negatives as
            ``non_mitosis`` (hard negatives, as CCMCT's imposter class).
        points_only: Leave out the boxes (centroid labels carry points only).
        size: (width, height) of the image, for its :class:`ImageInfo`.
        source: Name of the set; ``synthetic:<image_id>`` by default.

    Returns:
        The set; ``extra`` holds the truth (``cell_id``, ``m``, ``kind``, ``phase``).
    """
    flags = _as_flags(positive, len(cells), "positive")
    out = _empty_set(image_id, size, [], source)
    boxes = cells.boxes()
    for i in range(len(cells)):
        if positives_only and not flags[i]:
            continue
        out.annotations.append(
            Annotation(
                id=f"{image_id}/cell{int(cells.id[i])}",
                image=image_id,
                point=(float(cells.x[i]), float(cells.y[i])),
                box=None if points_only else tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                label=MITOSIS if flags[i] else NON_MITOSIS,
                extra=_truth(cells, i),
            )
        )
    return out


def crowd_set(
    cells: CellTable,
    boxes: Sequence[CrowdBox],
    *,
    image_id: str,
    n_crowd: int | None = None,
    size: SizeWH | None = None,
    source: str | None = None,
) -> AnnotationSet:
    """Crowd boxes as ``mitosis`` boxes with their agreement score.

    ``extra`` holds ``raters`` (who drew it) and the truth of the cell the box was drawn on
    (``cell_id``, ``m``, ``kind``, ``phase``); a box of coincident false positives has
    ``cell_id`` None, ``m`` 0.0 and ``kind`` ``"background"``.
    """
    row_of = {int(c): i for i, c in enumerate(cells.id)}
    raters = [f"crowd{j + 1}" for j in range(n_crowd)] if n_crowd else []
    if not raters:
        raters = sorted({r for b in boxes for r in b.raters}, key=_natural)
    out = _empty_set(image_id, size, raters, source)
    for k, b in enumerate(boxes):
        if b.cell is not None and b.cell in row_of:
            extra = _truth(cells, row_of[b.cell])
        else:
            extra = {"cell_id": None, "m": 0.0, "kind": "background", "phase": "none"}
        extra["raters"] = list(b.raters)
        out.annotations.append(
            Annotation(
                id=f"{image_id}/crowd{k}",
                image=image_id,
                box=b.box,
                label=MITOSIS,
                agreement=b.agreement,
                extra=extra,
            )
        )
    return out


def _natural(name: str) -> tuple[str, int]:
    """Sort key putting ``rater2`` before ``rater10``."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return (stem, int(digits) if digits else -1)


# --------------------------------------------------------------------------------------------
# One scene, every label kind
# --------------------------------------------------------------------------------------------


@dataclass
class SceneLabels:
    """Every label kind of one scene, drawn from its truth.

    Attributes:
        image_id: The scene's image id.
        votes: Pathologists' votes per cell (table order).
        positive: (N,) int64 consensus per cell.
        crowd_boxes: The crowd's kept boxes.
        pathologists: Every cell with its votes (meningioma-style probabilistic labels).
        consensus: Every cell labelled by the consensus (CCMCT-style, with hard negatives).
        centroids: Consensus mitoses as points only (TUPAC16-style).
        crowd: Crowd boxes with agreement (TCGA crowd-style).
        image_label: 1 when the scene holds a consensus mitosis (weak-label-style).
        truth_image_label: 1 when some cell has ``m > 0.5`` (the truth-based variant).
    """

    image_id: str
    votes: list[tuple[Vote, ...]]
    positive: np.ndarray
    crowd_boxes: list[CrowdBox]
    pathologists: AnnotationSet
    consensus: AnnotationSet
    centroids: AnnotationSet
    crowd: AnnotationSet
    image_label: int
    truth_image_label: int


def label_scene(
    cells: CellTable,
    *,
    image_id: str,
    seed: Seed,
    panel: RaterPanel | None = None,
    crowd: CrowdPanel | None = None,
    rule: Rule = "majority",
    size: SizeWH | None = None,
) -> SceneLabels:
    """Run every labelling process on one scene.

    The pathologists and the crowd draw from separate streams of ``seed``, so changing one
    panel leaves the other's labels as they were.

    Args:
        cells: The scene's truth.
        image_id: Id of the scene's image.
        seed: Seed of all draws.
        panel: The pathologists (:class:`RaterPanel` defaults).
        crowd: The crowd (:class:`CrowdPanel` defaults).
        rule: Consensus rule (:func:`consensus`).
        size: (width, height) of the image: recorded in the sets and bounds the crowd's random
            false positives (else the box around the cells).

    Returns:
        A :class:`SceneLabels`.
    """
    panel = RaterPanel() if panel is None else panel
    crowd = CrowdPanel() if crowd is None else crowd
    rng_path, rng_crowd = _children(seed, 2)
    votes = rate_pathologists(cells, panel=panel, seed=rng_path)
    positive = consensus(votes, rule=rule) if len(cells) else np.zeros(0, dtype=np.int64)
    extent = (0.0, 0.0, float(size[0]), float(size[1])) if size is not None else None
    kept = crowd_boxes(cells, panel=crowd, seed=rng_crowd, extent=extent)
    image_ids = [image_id] * len(cells)
    return SceneLabels(
        image_id=image_id,
        votes=votes,
        positive=positive,
        crowd_boxes=kept,
        pathologists=pathologist_set(
            cells, votes, image_id=image_id, size=size, raters=panel.rater_ids
        ),
        consensus=consensus_set(cells, positive, image_id=image_id, size=size),
        centroids=consensus_set(
            cells, positive, image_id=image_id, positives_only=True, points_only=True, size=size
        ),
        crowd=crowd_set(cells, kept, image_id=image_id, n_crowd=crowd.n_crowd, size=size),
        image_label=image_presence(image_ids, positive, images=[image_id])[image_id],
        truth_image_label=image_presence(image_ids, np.asarray(cells.m) > 0.5, images=[image_id])[
            image_id
        ],
    )

"""Detection metrics: one-to-one point matching within a radius, and F1 as MIDOG computes it.

A prediction is a true positive when it is matched to a ground-truth mitosis whose centre lies
within the matching radius (distance ``<= radius``, the boundary counts as a hit). Matching is
one-to-one and *optimal*: among all assignments it first maximises the number of matched pairs and
then, among those, minimises the summed distance. Greedy nearest-first matching can find fewer
pairs (a prediction grabs the only truth that another prediction could have reached); the optimal
assignment never does.

Two matching rules are offered (``matching=``):

* ``"optimal"`` (the default): the one-to-one assignment above.
* ``"midog"``: the rule of the official MIDOG scorer, evalutils' ``score_detection``
  (evalutils 0.4.2, ``evalutils/scorers.py``). The truth points are taken in their order; for each,
  the predictions within the radius (inclusive, found with scikit-learn's ``BallTree.query_radius``
  with ``sort_results=True``, nearest first) are walked and the first one no earlier truth point
  claimed is claimed; a truth point that finds none is a false negative. Predictions never claimed
  are false positives. Ties in distance are broken in the order ``BallTree`` returns them, which is
  why the same ``BallTree`` call is made here: the counts equal ``score_detection`` on the same
  coordinates (the tests compare them on hundreds of random crowded point sets). This greedy rule
  can find fewer true positives than the optimal one, never more.

The radius is usually given in micrometres (7.5 um, the MIDOG convention) and converted with the
slide's microns-per-pixel; see :func:`radius_to_px`.

Conventions used throughout (they are also stated in the docstrings that apply them):

* Positives are the truth objects of the evaluated class (``mitosis`` by default). Truth objects of
  other classes (imposters, ``non_mitosis``) are not positives; a prediction on one is an FP.
* Predictions count when their class is the evaluated class. Readers of formats without a class
  column give every object the default class ``mitosis``, so class-less predictions count when
  ``mitosis`` is evaluated. Predictions whose score is below the threshold are dropped; a
  prediction without a score is always kept.
* Zero division: a ratio whose denominator is 0 is 0.0, except that an image (or a pool) with
  neither truth positives nor predictions scores precision = recall = F1 = 1.0: there was nothing
  to find and nothing was claimed. F1 is ``2 tp / (2 tp + fp + fn)``.
* Pooling over images is *micro* (MIDOG): TP, FP and FN are summed over images and precision,
  recall and F1 are computed from the sums. The mean of the per-image F1 (*macro*) is reported
  separately, over the images that hold a truth positive or a kept prediction only: an image with
  neither has no F1 to speak of and would otherwise pull the mean towards 1.
* A class that no object of either set carries (a typo such as ``mitsis``) is an error, unless it
  is one of the classes mitokit knows (``mitosis``, ``non_mitosis``): a known class may be absent
  from a region with no mitoses, an unknown one names nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching
from scipy.spatial import cKDTree

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, canonical_class
from mitokit.types import CANONICAL_CLASSES, MITOSIS

DEFAULT_RADIUS_UM = 7.5
"""The matching radius of the MIDOG challenges, in micrometres (about 30 px at 0.25 um/px)."""

MATCHING_RULES = ("optimal", "midog")
"""The matching rules: optimal one-to-one assignment, or the MIDOG scorer's greedy rule."""

Matching = Literal["optimal", "midog"]

_MAX_UNIQUE_SCORES = 200
_N_QUANTILES = 101


# --------------------------------------------------------------------------------------------
# Radius


def radius_to_px(
    radius_um: float | None = None,
    radius_px: float | None = None,
    mpp: float | None = None,
) -> float:
    """The matching radius in pixels, from micrometres and mpp or given directly in pixels.

    Args:
        radius_um: Radius in micrometres; needs ``mpp``. When neither radius is given, the
            MIDOG default of 7.5 um is used (which also needs ``mpp``).
        radius_px: Radius in level-0 pixels; used as is.
        mpp: Microns per pixel at level 0.

    Returns:
        The radius in pixels (``radius_um / mpp`` or ``radius_px``).

    Raises:
        MitokitError: Both radii are given, a value is not positive and finite, or a radius in
            micrometres is asked for without an mpp.
    """
    if radius_um is not None and radius_px is not None:
        raise MitokitError("give the radius either in micrometres or in pixels, not both")
    if radius_px is not None:
        return _positive(radius_px, "radius in pixels")
    um = DEFAULT_RADIUS_UM if radius_um is None else _positive(radius_um, "radius in micrometres")
    if mpp is None:
        raise MitokitError(
            f"a radius of {um:g} um needs the microns per pixel: pass mpp or a radius in pixels"
        )
    return um / _positive(mpp, "mpp")


def _positive(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MitokitError(f"{what} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise MitokitError(f"{what} must be positive and finite, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# Point matching


class PointMatching(NamedTuple):
    """The result of :func:`match_points`.

    Attributes:
        pairs: ``(K, 2)`` int array of matched ``(pred_index, truth_index)``, sorted by prediction.
        unmatched_pred: Indices of predictions without a partner (false positives), ascending.
        unmatched_truth: Indices of truth points without a partner (false negatives), ascending.
    """

    pairs: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_truth: np.ndarray


def match_points(
    pred_xy: Any, truth_xy: Any, *, radius_px: float, matching: Matching = "optimal"
) -> PointMatching:
    """Match predicted to true points one-to-one within a radius.

    With ``matching="midog"`` the pairs are those of the MIDOG scorer (see the module docstring):
    truth points in order, each claiming the nearest prediction within the radius that no earlier
    truth point claimed.

    With ``matching="optimal"`` (the default) the assignment maximises the number of pairs whose
    distance is ``<= radius_px`` and, among the assignments with that many pairs, minimises the
    summed distance. Points are split into groups connected by within-radius pairs, and each group
    is solved with :func:`scipy.optimize.linear_sum_assignment` on its dense distance matrix, where
    pairs beyond the radius cost more than any set of allowed pairs could (so one more pair always
    beats any saving in distance). The work therefore grows with the size of the crowded
    neighbourhoods, not with ``N * M``.

    Args:
        pred_xy: ``(N, 2)`` predicted points (x, y) in pixels; an empty list is allowed.
        truth_xy: ``(M, 2)`` true points (x, y) in pixels.
        radius_px: Largest distance, in pixels, at which a pair still matches (inclusive).
        matching: ``"optimal"`` or ``"midog"``.

    Returns:
        The matched pairs and the unmatched indices of both sides.

    Raises:
        ValueError: An array is not ``(n, 2)`` or holds non-finite values, the radius is
            negative or not finite, or the matching rule is unknown.
    """
    pred = _as_xy(pred_xy, "pred_xy")
    truth = _as_xy(truth_xy, "truth_xy")
    radius = _check_radius(radius_px)
    if _check_matching(matching) == "midog":
        mp, mt = _midog_pairs(pred, truth, radius)
    else:
        pi, ti, dist = _candidate_pairs(pred, truth, radius)
        mp, mt = _optimal_pairs(pi, ti, dist, radius)
    order = np.argsort(mp, kind="stable")
    pairs = np.stack([mp[order], mt[order]], axis=1).astype(np.intp).reshape(-1, 2)
    unmatched_pred = np.setdiff1d(np.arange(len(pred)), mp, assume_unique=True)
    unmatched_truth = np.setdiff1d(np.arange(len(truth)), mt, assume_unique=True)
    return PointMatching(pairs, unmatched_pred.astype(np.intp), unmatched_truth.astype(np.intp))


def _as_xy(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.empty((0, 2), dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite coordinates")
    return arr


def _check_radius(radius_px: float) -> float:
    radius = float(radius_px)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius_px must be finite and >= 0, got {radius_px!r}")
    return radius


def _check_matching(matching: str) -> str:
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {', '.join(MATCHING_RULES)}, got {matching!r}")
    return matching


def _midog_pairs(
    pred: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of evalutils' ``score_detection``: truth in order, nearest unclaimed prediction.

    The hits of each truth point come from the same scikit-learn call evalutils makes
    (``BallTree(pred).query_radius(truth, r, return_distance=True, sort_results=True)``), so the
    inclusive boundary and the order of equidistant predictions are exactly the scorer's.
    """
    if len(pred) == 0 or len(truth) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    from sklearn.neighbors import BallTree

    hits, _ = BallTree(pred).query_radius(truth, r=radius, return_distance=True, sort_results=True)
    claimed = np.zeros(len(pred), dtype=bool)
    out_p: list[int] = []
    out_t: list[int] = []
    for j, hit in enumerate(hits):
        for i in hit:
            if not claimed[i]:
                claimed[i] = True
                out_p.append(int(i))
                out_t.append(j)
                break
    return np.asarray(out_p, dtype=np.intp), np.asarray(out_t, dtype=np.intp)


def _candidate_pairs(
    pred: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred, truth) index pairs at distance <= radius, with their distances."""
    if len(pred) == 0 or len(truth) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, np.empty(0, dtype=float)
    # Query a hair wider, then decide on the exact Euclidean distance so the boundary is exact.
    slack = radius * 1e-9 + 1e-9
    found = cKDTree(pred).sparse_distance_matrix(
        cKDTree(truth), radius + slack, output_type="ndarray"
    )
    pi = found["i"].astype(np.intp)
    ti = found["j"].astype(np.intp)
    delta = pred[pi] - truth[ti]
    dist = np.hypot(delta[:, 0], delta[:, 1])
    keep = dist <= radius
    return pi[keep], ti[keep], dist[keep]


def _optimal_pairs(
    pi: np.ndarray, ti: np.ndarray, dist: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the assignment on the candidate edges, one connected group at a time."""
    if len(pi) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    preds, p_local = np.unique(pi, return_inverse=True)
    truths, t_local = np.unique(ti, return_inverse=True)
    n_p = len(preds)
    n_nodes = n_p + len(truths)
    graph = coo_matrix((np.ones(len(pi)), (p_local, t_local + n_p)), shape=(n_nodes, n_nodes))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[p_local]
    out_p: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    for edges in np.split(order, bounds):
        if len(edges) == 1:  # an isolated pair: nothing to decide
            out_p.append(pi[edges])
            out_t.append(ti[edges])
            continue
        rows, r_inv = np.unique(pi[edges], return_inverse=True)
        cols, c_inv = np.unique(ti[edges], return_inverse=True)
        # A forbidden pair must cost more than the largest saving in distance any assignment
        # could make (at most min(rows, cols) * radius), so the count of pairs comes first.
        big = (min(len(rows), len(cols)) + 1) * (radius + 1.0)
        cost = np.full((len(rows), len(cols)), big)
        allowed = np.zeros((len(rows), len(cols)), dtype=bool)
        cost[r_inv, c_inv] = dist[edges]
        allowed[r_inv, c_inv] = True
        r, c = linear_sum_assignment(cost)
        ok = allowed[r, c]
        out_p.append(rows[r[ok]])
        out_t.append(cols[c[ok]])
    return np.concatenate(out_p), np.concatenate(out_t)


# --------------------------------------------------------------------------------------------
# Counts and results


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, with the zero-division convention of this module.

    A ratio with a zero denominator is 0.0, except when there are neither positives nor
    predictions (``tp + fp + fn == 0``): then all three are 1.0.
    """
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return precision, recall, f1


@dataclass(frozen=True)
class Match:
    """One matched pair: a prediction and the truth object it was assigned to."""

    image: str
    pred_id: str
    truth_id: str
    distance_px: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "image": self.image,
            "pred_id": self.pred_id,
            "truth_id": self.truth_id,
            "distance_px": self.distance_px,
        }


@dataclass(frozen=True)
class DetectionCounts:
    """TP, FP and FN of one image or a pool, with the derived precision, recall and F1."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; see :func:`precision_recall_f1` for zero division."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; see :func:`precision_recall_f1` for zero division."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when there is nothing to find and nothing found."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[2]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the counts and the derived scores."""
        p, r, f = precision_recall_f1(self.tp, self.fp, self.fn)
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": p, "recall": r, "f1": f}


@dataclass(frozen=True)
class ImageResult(DetectionCounts):
    """The counts of one image."""

    image: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: the image id, the counts and the derived scores."""
        return {"image": self.image, **super().to_dict()}


@dataclass(frozen=True)
class PointEvaluation(DetectionCounts):
    """Detection scores of a prediction set against the truth, pooled and per image.

    ``tp``, ``fp``, ``fn`` (and ``precision``, ``recall``, ``f1``) are pooled over the images
    (micro, as MIDOG); ``macro_f1`` is the mean of the per-image F1 over the images that hold a
    truth positive or a kept prediction.

    Attributes:
        radius_px: The matching radius used, in pixels.
        label: The evaluated class.
        threshold: The score threshold applied to predictions, or None.
        per_image: One result per image, truth images first.
        matches: The matched pairs, image by image.
        matching: The matching rule, ``"optimal"`` or ``"midog"``.
    """

    radius_px: float = 0.0
    label: str = MITOSIS
    threshold: float | None = None
    per_image: tuple[ImageResult, ...] = ()
    matches: tuple[Match, ...] = field(default=(), repr=False)
    matching: str = "optimal"

    @property
    def macro_images(self) -> tuple[ImageResult, ...]:
        """The images that enter ``macro_f1``: those with a truth positive or a kept prediction."""
        return tuple(r for r in self.per_image if r.tp + r.fp + r.fn > 0)

    @property
    def macro_f1(self) -> float:
        """Mean of the per-image F1 over :attr:`macro_images`.

        An image with neither truth positives nor predictions is left out (its F1 of 1.0 says only
        that there was nothing to find). When no image holds anything, this is the pooled F1
        (1.0 by the zero-division convention).
        """
        counted = self.macro_images
        if not counted:
            return self.f1
        return float(np.mean([r.f1 for r in counted]))

    def to_dict(self, *, include_matches: bool = False) -> dict[str, Any]:
        """A JSON-friendly dict: pooled counts and scores, settings, and per-image results.

        Args:
            include_matches: Also list every matched pair under ``matches``.
        """
        out = {
            **super().to_dict(),
            "macro_f1": self.macro_f1,
            "macro_images": len(self.macro_images),
            "radius_px": self.radius_px,
            "label": self.label,
            "threshold": self.threshold,
            "matching": self.matching,
            "n_images": len(self.per_image),
            "per_image": [r.to_dict() for r in self.per_image],
        }
        if include_matches:
            out["matches"] = [m.to_dict() for m in self.matches]
        return out


@dataclass(frozen=True)
class SweepRow(DetectionCounts):
    """Pooled counts at one score threshold (predictions with ``score >= threshold`` kept)."""

    threshold: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: the threshold, the counts and the derived scores."""
        return {"threshold": self.threshold, **super().to_dict()}


@dataclass(frozen=True)
class ThresholdSweep:
    """Pooled F1 as a function of the score threshold.

    Attributes:
        rows: One row per threshold, thresholds ascending.
        best_threshold: The lowest threshold with the highest pooled F1.
        best_f1: That F1.
        radius_px: The matching radius used, in pixels.
        label: The evaluated class.
        matching: The matching rule, ``"optimal"`` or ``"midog"``.
    """

    rows: tuple[SweepRow, ...]
    best_threshold: float
    best_f1: float
    radius_px: float
    label: str = MITOSIS
    matching: str = "optimal"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with ``best_threshold``, ``best_f1`` and ``rows``."""
        return {
            "best_threshold": self.best_threshold,
            "best_f1": self.best_f1,
            "radius_px": self.radius_px,
            "label": self.label,
            "matching": self.matching,
            "rows": [r.to_dict() for r in self.rows],
        }


# --------------------------------------------------------------------------------------------
# Evaluation of annotation sets


def _image_order(pred: AnnotationSet, truth: AnnotationSet) -> list[str]:
    """Every image of either set: truth's listed images, then any other in order of appearance."""
    seen: dict[str, None] = {}
    for image_id in truth.images:
        seen.setdefault(image_id, None)
    for ann in truth.annotations:
        seen.setdefault(ann.image, None)
    for image_id in pred.images:
        seen.setdefault(image_id, None)
    for ann in pred.annotations:
        seen.setdefault(ann.image, None)
    return list(seen)


def _split(
    pred: AnnotationSet, truth: AnnotationSet, label: str
) -> tuple[list[str], dict[str, list[Annotation]], dict[str, list[Annotation]]]:
    """Images, and per image the predictions and truth positives of class ``label``."""
    label = check_label(pred, truth, label)
    images = _image_order(pred, truth)
    preds: dict[str, list[Annotation]] = {i: [] for i in images}
    truths: dict[str, list[Annotation]] = {i: [] for i in images}
    for ann in pred.annotations:
        if canonical_class(ann.label) == label:
            preds[ann.image].append(ann)
    for ann in truth.annotations:
        if canonical_class(ann.label) == label:
            truths[ann.image].append(ann)
    return images, preds, truths


def _class_counts(annotations: AnnotationSet) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ann in annotations.annotations:
        key = canonical_class(ann.label)
        counts[key] = counts.get(key, 0) + 1
    return counts


def check_label(pred: AnnotationSet, truth: AnnotationSet, label: str) -> str:
    """The canonical name of ``label``, or an error when it names no object and no known class.

    A class that mitokit knows (``mitosis``, ``non_mitosis``) may be absent from both sets (a
    region without mitoses, nothing predicted); any other name that no object of either set
    carries is taken for a typo, and the error lists the classes each set holds.

    Raises:
        MitokitError: ``label`` is unknown and absent from both sets.
    """
    name = canonical_class(label)
    if name in CANONICAL_CLASSES:
        return name
    truth_counts, pred_counts = _class_counts(truth), _class_counts(pred)
    if name in truth_counts or name in pred_counts:
        return name

    def listing(counts: dict[str, int]) -> str:
        if not counts:
            return "no object"
        return ", ".join(f"{k} ({n})" for k, n in sorted(counts.items()))

    raise MitokitError(
        f"no object has the class {str(label).strip()!r}: the truth holds "
        f"{listing(truth_counts)}; the predictions hold {listing(pred_counts)}"
    )


def _xy(anns: Sequence[Annotation]) -> np.ndarray:
    if not anns:
        return np.empty((0, 2), dtype=float)
    return np.array([a.center for a in anns], dtype=float)


def _kept(ann: Annotation, threshold: float | None) -> bool:
    return threshold is None or ann.score is None or ann.score >= threshold


def evaluate_points(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    threshold: float | None = None,
    label: str = MITOSIS,
    matching: Matching = "optimal",
) -> PointEvaluation:
    """Score predicted points against true points, per image and pooled over images.

    Each image is matched on its own with :func:`match_points` (box annotations use the box
    centre). The images are those of either set: every image the truth lists counts, also without
    predictions (all its positives are FN), and images that only the predictions name count too
    (all their predictions are FP).

    Conventions:

    * Positives are the truth objects of class ``label``; truth objects of other classes
      (imposters) are ignored, so a prediction on an imposter is an FP.
    * Predictions count when their class is ``label`` (class-less formats read as ``mitosis``) and,
      if ``threshold`` is given, their score is ``>= threshold``; predictions without a score are
      always kept.
    * A ratio with a zero denominator is 0.0, except that an image or pool with no positives and
      no predictions has precision = recall = F1 = 1.0.
    * Pooled scores are micro (counts summed over images, as MIDOG); ``macro_f1`` is the mean of
      the per-image F1 over the images that hold a truth positive or a kept prediction.
    * Image ids are taken as they are: call :func:`mitokit.metrics.align_images` first when the
      two sets may name the same images differently.

    Args:
        pred: The predictions (points or boxes, optionally with scores).
        truth: The ground truth.
        radius_px: Matching radius in pixels (inclusive); see :func:`radius_to_px`.
        threshold: Keep predictions with ``score >= threshold``; None keeps all.
        label: The evaluated class (synonyms such as ``"mitotic figure"`` are accepted).
        matching: ``"optimal"`` (default) or ``"midog"`` (the MIDOG scorer's greedy rule); see
            :func:`match_points`.

    Returns:
        The pooled and per-image counts and scores, and the matched pairs.

    Raises:
        MitokitError: The threshold is not finite, or ``label`` names no object and no known
            class (see :func:`check_label`).
    """
    radius = _check_radius(radius_px)
    _check_matching(matching)
    if threshold is not None and not math.isfinite(float(threshold)):
        raise MitokitError(f"the score threshold must be finite, got {threshold!r}")
    images, preds, truths = _split(pred, truth, label)
    per_image: list[ImageResult] = []
    matches: list[Match] = []
    for image_id in images:
        p_anns = [a for a in preds[image_id] if _kept(a, threshold)]
        t_anns = truths[image_id]
        p_xy, t_xy = _xy(p_anns), _xy(t_anns)
        result = match_points(p_xy, t_xy, radius_px=radius, matching=matching)
        for i, j in result.pairs:
            d = float(np.hypot(*(p_xy[i] - t_xy[j])))
            matches.append(Match(image_id, p_anns[i].id, t_anns[j].id, d))
        tp = len(result.pairs)
        per_image.append(
            ImageResult(tp=tp, fp=len(p_anns) - tp, fn=len(t_anns) - tp, image=image_id)
        )
    return PointEvaluation(
        tp=sum(r.tp for r in per_image),
        fp=sum(r.fp for r in per_image),
        fn=sum(r.fn for r in per_image),
        radius_px=radius,
        label=canonical_class(label),
        threshold=None if threshold is None else float(threshold),
        per_image=tuple(per_image),
        matches=tuple(matches),
        matching=matching,
    )


def default_thresholds(scores: Iterable[float]) -> np.ndarray:
    """The default grid of a sweep: every distinct score, or 101 quantiles when there are many.

    With at most 200 distinct scores every one is a threshold, so each operating point is seen;
    beyond that the 101 quantiles (0, 1, ..., 100 %) of the scores, taken as observed values.
    """
    arr = np.asarray(list(scores), dtype=float)
    arr = arr[np.isfinite(arr)]
    unique = np.unique(arr)
    if len(unique) <= _MAX_UNIQUE_SCORES:
        return unique
    return np.unique(np.quantile(arr, np.linspace(0.0, 1.0, _N_QUANTILES), method="lower"))


def sweep_thresholds(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    thresholds: Iterable[float] | None = None,
    label: str = MITOSIS,
    matching: Matching = "optimal",
) -> ThresholdSweep:
    """Pooled precision, recall and F1 at each score threshold, and the best threshold.

    At each threshold the kept predictions (``score >= threshold``; predictions without a score
    are always kept) are matched anew, image by image, exactly as :func:`evaluate_points` would:
    the optimal matching changes with the threshold. Only the number of pairs matters for the
    counts, and that is the size of a maximum bipartite matching on the within-radius pairs; the
    pairs are found once and every threshold solves one Hopcroft-Karp matching over all images.
    With ``matching="midog"`` each threshold runs the MIDOG scorer's rule on the kept predictions
    of every image (its pairs depend on which predictions are present, in their order).

    Args:
        pred: The predictions, with scores.
        truth: The ground truth.
        radius_px: Matching radius in pixels (inclusive).
        thresholds: The thresholds to try; by default :func:`default_thresholds` of the scores.
        label: The evaluated class; the same conventions as :func:`evaluate_points` apply.
        matching: ``"optimal"`` (default) or ``"midog"``.

    Returns:
        The rows (thresholds ascending) and the lowest threshold reaching the best pooled F1.

    Raises:
        MitokitError: No prediction has a score and no thresholds were given, or a threshold is
            not finite.
    """
    radius = _check_radius(radius_px)
    _check_matching(matching)
    images, preds, truths = _split(pred, truth, label)
    # One block-diagonal bipartite graph over all images: pairs never cross images.
    pi_all: list[np.ndarray] = []
    ti_all: list[np.ndarray] = []
    scores: list[float] = []
    n_pred = n_truth = 0
    for image_id in images:
        p_anns, t_anns = preds[image_id], truths[image_id]
        pi, ti, _ = _candidate_pairs(_xy(p_anns), _xy(t_anns), radius)
        pi_all.append(pi + n_pred)
        ti_all.append(ti + n_truth)
        scores.extend(math.nan if a.score is None else float(a.score) for a in p_anns)
        n_pred += len(p_anns)
        n_truth += len(t_anns)
    pi = np.concatenate(pi_all) if pi_all else np.empty(0, dtype=np.intp)
    ti = np.concatenate(ti_all) if ti_all else np.empty(0, dtype=np.intp)
    score_arr = np.asarray(scores, dtype=float)
    unscored = np.isnan(score_arr)
    if matching == "midog":
        p_xys = [_xy(preds[i]) for i in images]
        t_xys = [_xy(truths[i]) for i in images]

    if thresholds is None:
        if unscored.all():
            raise MitokitError("no prediction has a score: there is no threshold to sweep")
        grid = default_thresholds(score_arr[~unscored])
    else:
        grid = np.unique(np.asarray(list(thresholds), dtype=float))
        if grid.size == 0 or not np.isfinite(grid).all():
            raise MitokitError("the sweep needs at least one threshold, all finite")

    rows: list[SweepRow] = []
    for t in grid:
        keep = unscored | (score_arr >= t)
        n_kept = int(keep.sum())
        if matching == "midog":
            tp = _midog_tp(p_xys, t_xys, keep, radius)
        else:
            edge = keep[pi]
            tp = _max_matching_size(pi[edge], ti[edge], n_pred, n_truth)
        rows.append(SweepRow(tp=tp, fp=n_kept - tp, fn=n_truth - tp, threshold=float(t)))
    f1s = np.array([r.f1 for r in rows])
    best = int(np.argmax(f1s))  # the first, i.e. lowest, threshold among equals
    return ThresholdSweep(
        rows=tuple(rows),
        best_threshold=rows[best].threshold,
        best_f1=float(f1s[best]),
        radius_px=radius,
        label=canonical_class(label),
        matching=matching,
    )


def _midog_tp(
    p_xys: list[np.ndarray], t_xys: list[np.ndarray], keep: np.ndarray, radius: float
) -> int:
    """True positives of the MIDOG rule over all images, keeping the predictions ``keep`` marks.

    ``keep`` runs over the predictions of all images in order (the images of ``p_xys``).
    """
    tp = start = 0
    for p_xy, t_xy in zip(p_xys, t_xys, strict=True):
        kept = keep[start : start + len(p_xy)]
        start += len(p_xy)
        if len(t_xy) and kept.any():
            tp += len(_midog_pairs(p_xy[kept], t_xy, radius)[0])
    return tp


def _max_matching_size(pi: np.ndarray, ti: np.ndarray, n_pred: int, n_truth: int) -> int:
    """Size of a maximum one-to-one matching on the given (pred, truth) edges."""
    if len(pi) == 0:
        return 0
    graph = csr_matrix((np.ones(len(pi), dtype=np.int8), (pi, ti)), shape=(n_pred, n_truth))
    matched = maximum_bipartite_matching(graph, perm_type="column")
    return int((matched >= 0).sum())

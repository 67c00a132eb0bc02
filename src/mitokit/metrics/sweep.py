"""Pooled precision, recall and F1 over score thresholds, and the best threshold.

:func:`sweep_thresholds` scores the predictions at every threshold of a grid
(:func:`default_thresholds`: every distinct score, or 101 quantiles when there are many) with the
conventions of :mod:`mitokit.metrics.points`, without matching every threshold from scratch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, canonical_class
from mitokit.metrics.matching import (
    Matching,
    _candidate_pairs,
    _check_matching,
    _check_radius,
    _max_matching_size,
    _midog_pairs,
)
from mitokit.metrics.points import DetectionCounts, _split, _xy
from mitokit.types import MITOSIS

_MAX_UNIQUE_SCORES = 200
_N_QUANTILES = 101


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
    graph = _PooledPairs.build(images, preds, truths, radius)
    grid = _grid(thresholds, graph.scores, graph.unscored)
    if matching == "midog":
        p_xys = [_xy(preds[i]) for i in images]
        t_xys = [_xy(truths[i]) for i in images]

    rows: list[SweepRow] = []
    for t in grid:
        keep = graph.unscored | (graph.scores >= t)
        n_kept = int(keep.sum())
        if matching == "midog":
            tp = _midog_tp(p_xys, t_xys, keep, radius)
        else:
            tp = graph.max_matching(keep)
        rows.append(SweepRow(tp=tp, fp=n_kept - tp, fn=graph.n_truth - tp, threshold=float(t)))
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


@dataclass(frozen=True)
class _PooledPairs:
    """The within-radius (pred, truth) pairs of all images as one block-diagonal graph.

    Predictions and truth points are numbered across the images in order; pairs never cross
    images.

    Attributes:
        pi: Prediction index of each pair.
        ti: Truth index of each pair.
        scores: Score of each prediction (NaN for a prediction without one).
        n_truth: Number of truth points.
    """

    pi: np.ndarray
    ti: np.ndarray
    scores: np.ndarray
    n_truth: int

    @classmethod
    def build(
        cls,
        images: list[str],
        preds: dict[str, list[Annotation]],
        truths: dict[str, list[Annotation]],
        radius: float,
    ) -> _PooledPairs:
        """The pairs of every image within ``radius``, numbered across the images."""
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
        return cls(pi, ti, np.asarray(scores, dtype=float), n_truth)

    @property
    def unscored(self) -> np.ndarray:
        """Which predictions have no score (always kept)."""
        return np.isnan(self.scores)

    def max_matching(self, keep: np.ndarray) -> int:
        """Size of a maximum matching among the predictions ``keep`` marks."""
        edge = keep[self.pi]
        return _max_matching_size(self.pi[edge], self.ti[edge], len(self.scores), self.n_truth)


def _grid(
    thresholds: Iterable[float] | None, scores: np.ndarray, unscored: np.ndarray
) -> np.ndarray:
    """The thresholds of the sweep: those given (sorted, unique), else the scores' default grid.

    Raises:
        MitokitError: No prediction has a score and no thresholds were given, or a threshold is
            not finite.
    """
    if thresholds is None:
        if unscored.all():
            raise MitokitError("no prediction has a score: there is no threshold to sweep")
        return default_thresholds(scores[~unscored])
    grid = np.unique(np.asarray(list(thresholds), dtype=float))
    if grid.size == 0 or not np.isfinite(grid).all():
        raise MitokitError("the sweep needs at least one threshold, all finite")
    return grid


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


__all__ = ["SweepRow", "ThresholdSweep", "default_thresholds", "sweep_thresholds"]

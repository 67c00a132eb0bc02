"""Pooled precision, recall and F1 over score thresholds, and the best threshold.

:func:`sweep_thresholds` scores the predictions at every threshold of a grid
(:func:`default_thresholds`: every distinct score, or 101 quantiles when there are many) with the
conventions of :mod:`mitokit.metrics.points`, without matching every threshold from scratch:
:func:`falling_counts` counts the true positives at falling thresholds, matching again only the
images a threshold changes (the FROC curves of :mod:`mitokit.metrics.ranking` count with it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.io.annotations import AnnotationSet, canonical_class
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
_INF = float("inf")


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
    pairs are found once, and going down the thresholds only the images whose kept predictions
    change are matched again (:func:`falling_counts`). With ``matching="midog"`` those images run
    the MIDOG scorer's rule on their kept predictions (its pairs depend on which predictions are
    present, in their order).

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
    pred_xy = [_xy(preds[i]) for i in images]
    truth_xy = [_xy(truths[i]) for i in images]
    # a prediction without a score is kept at every threshold: its score is +inf here
    scores = [
        np.array([_INF if a.score is None else a.score for a in preds[i]], dtype=float)
        for i in images
    ]
    all_scores = np.concatenate(scores) if scores else np.empty(0)
    grid = _grid(thresholds, all_scores[all_scores < _INF])
    counts = falling_counts(pred_xy, scores, truth_xy, grid[::-1], radius=radius, matching=matching)
    return _threshold_sweep(
        counts, grid, n_truth=sum(len(t) for t in truth_xy), radius=radius, label=label
    )


@dataclass(frozen=True)
class FallingCounts:
    """Pooled counts at falling score thresholds (predictions with ``score >= t`` kept).

    Attributes:
        thresholds: The thresholds, descending.
        tp: True positives at each threshold.
        kept: Kept predictions at each threshold.
        matching: The matching rule of the true positives.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    kept: np.ndarray
    matching: str

    def at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tp, kept)`` at the given thresholds, each one of :attr:`thresholds`."""
        index = {float(t): k for k, t in enumerate(self.thresholds)}
        rows = np.array([index[float(t)] for t in thresholds], dtype=np.intp)
        return self.tp[rows], self.kept[rows]


def falling_counts(
    pred_xy: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    truth_xy: Sequence[np.ndarray],
    thresholds: np.ndarray,
    *,
    radius: float,
    matching: str,
) -> FallingCounts:
    """True positives and kept predictions, pooled over images, at falling score thresholds.

    What the threshold sweep, the FROC curve and MIDOG 2025's FROC AUC all count. An image is
    matched anew only at the thresholds that let one of its predictions in: with
    ``matching="optimal"`` its within-radius pairs are found once and each threshold solves a
    maximum bipartite matching on the kept ones (the optimal matching's size); with ``"midog"``
    the MIDOG scorer's rule runs on its kept predictions, in their order.

    Args:
        pred_xy: Per image, the ``(N, 2)`` predictions.
        scores: Per image, their ``(N,)`` scores (``+inf``: kept at every threshold).
        truth_xy: Per image, the ``(M, 2)`` truth positives.
        thresholds: The thresholds, descending (a repeated one counts again).
        radius: The matching radius in pixels (inclusive).
        matching: ``"optimal"`` or ``"midog"``.
    """
    thresholds = np.asarray(thresholds, dtype=float)
    per_image = np.zeros(len(pred_xy), dtype=int)
    tp = np.zeros(len(thresholds), dtype=int)
    edges = [
        _candidate_pairs(p, t, radius)[:2] if matching == "optimal" else None
        for p, t in zip(pred_xy, truth_xy, strict=True)
    ]
    previous = None
    for k, t in enumerate(thresholds):
        for i, s in enumerate(scores):
            keep = s >= t
            entering = keep if previous is None else keep & (s < previous)
            if not len(truth_xy[i]) or not entering.any():
                continue
            if matching == "midog":
                per_image[i] = len(_midog_pairs(pred_xy[i][keep], truth_xy[i], radius)[0])
            else:
                pi, ti = edges[i]
                e = keep[pi]
                per_image[i] = _max_matching_size(pi[e], ti[e], len(s), len(truth_xy[i]))
        tp[k] = per_image.sum()
        previous = t
    kept = np.array([sum(int((s >= t).sum()) for s in scores) for t in thresholds], dtype=int)
    return FallingCounts(thresholds, tp, kept, matching)


def _threshold_sweep(
    counts: FallingCounts, grid: np.ndarray, *, n_truth: int, radius: float, label: str
) -> ThresholdSweep:
    """The sweep at the ascending ``grid`` (thresholds of ``counts``) and its best threshold."""
    tps, kept = counts.at(grid)
    rows = [
        SweepRow(tp=int(tp), fp=int(n) - int(tp), fn=n_truth - int(tp), threshold=float(t))
        for t, tp, n in zip(grid, tps, kept, strict=True)
    ]
    f1s = np.array([r.f1 for r in rows])
    best = int(np.argmax(f1s))  # the first, i.e. lowest, threshold among equals
    return ThresholdSweep(
        rows=tuple(rows),
        best_threshold=rows[best].threshold,
        best_f1=float(f1s[best]),
        radius_px=radius,
        label=canonical_class(label),
        matching=counts.matching,
    )


def _grid(thresholds: Iterable[float] | None, scores: np.ndarray) -> np.ndarray:
    """The thresholds of the sweep: those given (sorted, unique), else the default grid of the
    ``scores`` (those of the predictions that have one).

    Raises:
        MitokitError: No prediction has a score and no thresholds were given, or a threshold is
            not finite.
    """
    if thresholds is None:
        if not len(scores):
            raise MitokitError("no prediction has a score: there is no threshold to sweep")
        return default_thresholds(scores)
    grid = np.unique(np.asarray(list(thresholds), dtype=float))
    if grid.size == 0 or not np.isfinite(grid).all():
        raise MitokitError("the sweep needs at least one threshold, all finite")
    return grid


__all__ = [
    "FallingCounts",
    "SweepRow",
    "ThresholdSweep",
    "default_thresholds",
    "falling_counts",
    "sweep_thresholds",
]

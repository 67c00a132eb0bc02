"""Detection scores over all score thresholds: average precision and FROC.

F1 needs one score threshold; these summarise the whole ranking of the predictions, as the MIDOG
2025 evaluation does beside F1. Every function takes the predictions and truth of
:func:`mitokit.metrics.evaluate_points` and uses its conventions: positives are the truth objects
of class ``label``, predictions of that class count, images are those of either set. Every
counted prediction must carry a score (an unscored prediction has no place in a ranking). No score
threshold is applied: the thresholds are what these functions run over.

What MIDOG 2025 computes (its evaluation container, read for this module) and what is here:

* **AP** (:func:`average_precision`): MIDOG 2025 reports torchmetrics' ``MeanAveragePrecision``
  ``map_50`` on square boxes of half-side 11.25 um around each point (so that two points 7.5 um
  apart horizontally overlap with IoU 0.5), i.e. COCO AP at IoU 0.5. The same is computed here,
  with the half-side 1.5 x the matching radius: per image, predictions in descending score order
  each take the still unmatched truth box of highest IoU >= 0.5 (the later truth among equal IoUs,
  as pycocotools); the matches of all images are ranked by score (stable), precision is made
  non-increasing from the right and read at the 101 recall levels 0, 0.01, ..., 1 (0 beyond the
  largest recall reached), and AP is their mean. The boxes match exactly up to the radius along
  the axes but only to about 0.78 x the radius along the diagonals (IoU >= 0.5 holds where
  ``(s - |dx|)(s - |dy|) >= 2 s^2 / 3`` for the side ``s``), so a hit for F1 may miss for AP.
  On 287 random multi-image sets (crowded points, tied scores) this equalled pycocotools'
  ``COCOeval`` (bbox, IoU 0.5, area "all", maxDets 1e6) to 1e-9; pycocotools is not a dependency,
  so the tests check hand-computed cases and sklearn's precision-recall curve instead.
* **FROC score** (:func:`froc`): the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false
  positives per image (the seven rates of LUNA16; CAMELYON16 uses the last six). Sensitivity at a
  rate is the highest sensitivity (true positives / truth positives) of any score threshold whose
  false positives, summed over images and divided by the number of images, do not exceed that
  rate; 0 when no threshold does. These are operating points the detector can be run at: no
  interpolation between them (CAMELYON16's and LUNA16's scripts interpolate linearly). The
  thresholds are all distinct scores; true positives use the chosen matching rule.
* **MIDOG 2025 FROC AUC** (:func:`midog2025_froc_auc`): what the MIDOG 2025 evaluation reports as
  ``froc_auc``: at 40 thresholds evenly spaced from the lowest to the highest score (or the one
  score when all are equal), the recall ``TP / (TP + FN + 1e-6)`` and the mean false positives per
  image, both from evalutils' ``score_detection`` (``matching="midog"``) on the predictions with
  ``score >= threshold``; the points sorted by false positives per image, the recall linearly
  interpolated at 50 evenly spaced rates from 0 to 8 (0 below the first point, the last recall
  beyond the last), and the area under that by the trapezoid rule. It lies between 0 and 8.

MIDOG's own script counts predictions of every class in AP and FROC AUC (only F1 drops those not
named "mitotic figure"); here only predictions of class ``label`` count, as in F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.metrics.matching import Matching, _check_matching, _check_radius
from mitokit.metrics.points import _split, _xy
from mitokit.metrics.sweep import (
    FallingCounts,
    ThresholdSweep,
    _threshold_sweep,
    default_thresholds,
    falling_counts,
)
from mitokit.types import MITOSIS

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per image at which the FROC score reads the sensitivity."""

AP_IOU = 0.5
"""The IoU a prediction box needs with a truth box to match, in :func:`average_precision`."""

AP_BOX_HALF_SIDE = 1.5
"""Half-side of the square boxes of :func:`average_precision`, in units of the matching radius."""

_RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


class _Scored:
    """Per image: the scored predictions (xy, scores) and the truth positives (xy)."""

    def __init__(self, pred: AnnotationSet, truth: AnnotationSet, label: str, what: str) -> None:
        self.images, preds, truths = _split(pred, truth, label)
        self.pred_xy: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.truth_xy: list[np.ndarray] = []
        unscored = 0
        for image_id in self.images:
            anns: Sequence[Annotation] = preds[image_id]
            unscored += sum(a.score is None for a in anns)
            self.pred_xy.append(_xy(anns))
            self.scores.append(np.array([a.score for a in anns if a.score is not None], float))
            self.truth_xy.append(_xy(truths[image_id]))
        n_pred = sum(len(p) for p in self.pred_xy)
        if unscored:
            raise MitokitError(
                f"{what} ranks predictions by score, but {unscored} of {n_pred} have no score"
            )
        all_scores = np.concatenate(self.scores) if self.scores else np.empty(0)
        if not np.isfinite(all_scores).all():
            raise MitokitError(f"{what} needs finite scores; some predictions' are not")
        self.n_truth = sum(len(t) for t in self.truth_xy)
        if self.n_truth == 0:
            raise MitokitError(f"{what} needs at least one true object of the evaluated class")


# --------------------------------------------------------------------------------------------
# Average precision


def average_precision(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    label: str = MITOSIS,
) -> float:
    """COCO AP at IoU 0.5 on square boxes of half-side 1.5 x radius: MIDOG 2025's ``AP``.

    See the module docstring for the exact definition.

    Args:
        pred: The predictions, every one with a score.
        truth: The ground truth.
        radius_px: The matching radius in pixels (7.5 um in MIDOG); the boxes have half-side
            ``1.5 * radius_px``.
        label: The evaluated class.

    Returns:
        AP in [0, 1].

    Raises:
        MitokitError: A prediction has no score or a non-finite one, or the truth holds no object
            of the class.
    """
    radius = _check_radius(radius_px)
    data = _Scored(pred, truth, label, "AP")
    side = 2.0 * AP_BOX_HALF_SIDE * radius
    all_scores: list[np.ndarray] = []
    all_hits: list[np.ndarray] = []
    for p_xy, scores, t_xy in zip(data.pred_xy, data.scores, data.truth_xy, strict=True):
        order = np.argsort(-scores, kind="mergesort")
        all_scores.append(scores[order])
        all_hits.append(_coco_hits(p_xy[order], t_xy, side))
    scores = np.concatenate(all_scores)
    hits = np.concatenate(all_hits)
    order = np.argsort(-scores, kind="mergesort")
    return _coco_ap(hits[order], data.n_truth)


def _square_iou(pred: np.ndarray, truth: np.ndarray, side: float) -> np.ndarray:
    """IoU of axis-aligned squares of the same side centred on the points, (N, M)."""
    if side <= 0:
        return (np.abs(pred[:, None, :] - truth[None, :, :]).max(axis=2) == 0).astype(float)
    overlap = np.clip(side - np.abs(pred[:, None, :] - truth[None, :, :]), 0.0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    return inter / (2.0 * side * side - inter)


def _coco_hits(pred: np.ndarray, truth: np.ndarray, side: float) -> np.ndarray:
    """Per prediction (in the given order), whether it matched a truth box (COCO's greedy rule)."""
    hits = np.zeros(len(pred), dtype=bool)
    if len(pred) == 0 or len(truth) == 0:
        return hits
    iou = _square_iou(pred, truth, side)
    taken = np.zeros(len(truth), dtype=bool)
    for d in range(len(pred)):
        best, m = min(AP_IOU, 1 - 1e-10), -1
        for g in range(len(truth)):
            if taken[g] or iou[d, g] < best:
                continue
            best, m = iou[d, g], g
        if m >= 0:
            taken[m] = True
            hits[d] = True
    return hits


def _coco_ap(hits: np.ndarray, n_truth: int) -> float:
    """COCO's 101-point AP from the hit flags of all predictions in rank order."""
    tp = np.cumsum(hits).astype(float)
    fp = np.cumsum(~hits).astype(float)
    if len(hits) == 0:
        return 0.0
    recall = tp / n_truth
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_LEVELS, side="left")
    q = np.where(idx < len(hits), precision[np.minimum(idx, len(hits) - 1)], 0.0)
    return float(np.mean(q))


# --------------------------------------------------------------------------------------------
# FROC


@dataclass(frozen=True)
class FROC:
    """A FROC curve and its score.

    Attributes:
        thresholds: The score thresholds, descending (predictions with ``score >= t`` kept).
        fp_per_image: Mean false positives per image at each threshold.
        sensitivity: True positives / truth positives at each threshold.
        rates: The false-positive rates the score reads (``FROC_RATES``).
        at_rates: The sensitivity at each rate (highest with no more false positives per image).
        score: The mean of ``at_rates``.
        n_images: The images the false positives are averaged over.
        n_truth: The truth positives.
        matching: The matching rule used for true positives.
    """

    thresholds: tuple[float, ...]
    fp_per_image: tuple[float, ...]
    sensitivity: tuple[float, ...]
    rates: tuple[float, ...]
    at_rates: tuple[float, ...]
    score: float
    n_images: int
    n_truth: int
    matching: str = "optimal"

    def to_dict(self, *, include_curve: bool = False) -> dict[str, Any]:
        """A JSON-friendly dict: the score and the sensitivity at each rate (and the curve)."""
        out: dict[str, Any] = {
            "score": self.score,
            "rates": list(self.rates),
            "sensitivity_at_rates": list(self.at_rates),
            "n_images": self.n_images,
            "n_truth": self.n_truth,
            "matching": self.matching,
        }
        if include_curve:
            out["curve"] = {
                "thresholds": list(self.thresholds),
                "fp_per_image": list(self.fp_per_image),
                "sensitivity": list(self.sensitivity),
            }
        return out


def froc(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    label: str = MITOSIS,
    matching: Matching = "optimal",
    rates: Sequence[float] = FROC_RATES,
) -> FROC:
    """The FROC curve over every distinct score and the FROC score (mean sensitivity at rates).

    See the module docstring for the exact definition.

    Args:
        pred: The predictions, every one with a score.
        truth: The ground truth.
        radius_px: The matching radius in pixels (inclusive).
        label: The evaluated class.
        matching: ``"optimal"`` or ``"midog"``: how true positives are counted at each threshold.
        rates: False positives per image at which sensitivity is read.

    Raises:
        MitokitError: A prediction has no score or a non-finite one, or the truth holds no object
            of the class.
    """
    return _froc_and_sweep(
        pred, truth, radius_px=radius_px, label=label, matching=matching, rates=rates, sweep=False
    )[0]


def _froc_and_sweep(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    label: str,
    matching: str,
    rates: Sequence[float],
    sweep: bool,
) -> tuple[FROC, ThresholdSweep | None]:
    """:func:`froc`, and with ``sweep`` :func:`~mitokit.metrics.sweep_thresholds` at its default
    thresholds (else None), from one matching.

    Both count the true positives at falling score thresholds; the sweep's default thresholds
    are scores, so it reads its counts off the FROC curve's. The results equal those of the two
    functions called apart.
    """
    radius = _check_radius(radius_px)
    _check_matching(matching)
    data = _Scored(pred, truth, label, "FROC")
    every_score = np.unique(np.concatenate(data.scores))[::-1]
    counts = falling_counts(
        data.pred_xy, data.scores, data.truth_xy, every_score, radius=radius, matching=matching
    )
    curve = _froc_of(data, counts, rates)
    if not sweep:
        return curve, None
    grid = default_thresholds(np.concatenate(data.scores))
    return curve, _threshold_sweep(counts, grid, n_truth=data.n_truth, radius=radius, label=label)


def _froc_of(data: _Scored, counts: FallingCounts, rates: Sequence[float]) -> FROC:
    """The FROC curve of the counts at every distinct score, read at ``rates``."""
    n_images = len(data.images)
    fppi = (counts.kept - counts.tp) / n_images
    sens = counts.tp / data.n_truth
    at_rates = []
    for rate in rates:
        ok = fppi <= rate
        at_rates.append(float(sens[ok].max()) if ok.any() else 0.0)
    return FROC(
        thresholds=tuple(float(t) for t in counts.thresholds),
        fp_per_image=tuple(float(f) for f in fppi),
        sensitivity=tuple(float(s) for s in sens),
        rates=tuple(float(r) for r in rates),
        at_rates=tuple(at_rates),
        score=float(np.mean(at_rates)) if at_rates else 0.0,
        n_images=n_images,
        n_truth=data.n_truth,
        matching=counts.matching,
    )


def midog2025_froc_auc(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    label: str = MITOSIS,
    max_fp: float = 8.0,
    n_thresholds: int = 40,
) -> float:
    """The ``froc_auc`` of the MIDOG 2025 evaluation (area under recall vs FP per image, 0..8).

    See the module docstring for the exact recipe; matching is always the MIDOG scorer's.
    Without any prediction the result is NaN, as in MIDOG's script.

    Raises:
        MitokitError: A prediction has no score or a non-finite one, or the truth holds no object
            of the class.
    """
    radius = _check_radius(radius_px)
    data = _Scored(pred, truth, label, "FROC AUC")
    all_scores = np.concatenate(data.scores)
    if len(all_scores) == 0:
        return float("nan")  # as MIDOG's script does without detections
    lo, hi = float(np.min(all_scores)), float(np.max(all_scores))
    grid = [lo] if lo == hi else np.linspace(lo, hi, n_thresholds).tolist()
    falling = np.asarray(grid, dtype=float)[::-1]
    counts = falling_counts(
        data.pred_xy, data.scores, data.truth_xy, falling, radius=radius, matching="midog"
    )
    tp, kept = counts.tp[::-1], counts.kept[::-1]
    recall_arr = tp / (data.n_truth + 1e-6)  # TP / (TP + FN + 1e-6), as evalutils
    fppi_arr = (kept - tp) / len(data.images)
    order = np.argsort(fppi_arr)
    fppi_sorted, recall_sorted = fppi_arr[order], recall_arr[order]
    at = np.linspace(0, max_fp, 50)
    interp = np.interp(at, fppi_sorted, recall_sorted, left=0, right=recall_sorted[-1])
    # the trapezoid rule as numpy.trapezoid computes it (written out: numpy < 2 lacks the name)
    return float(np.add.reduce(np.diff(at) * (interp[1:] + interp[:-1]) / 2.0))

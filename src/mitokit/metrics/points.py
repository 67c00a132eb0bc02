"""Scoring predicted points against true points, per image and pooled (MIDOG's F1).

:func:`evaluate_points` matches each image on its own (:func:`mitokit.metrics.matching.
match_points`) and pools the counts over images; :class:`PointEvaluation` holds the pooled
(micro) and per-image results and the macro F1.

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

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, canonical_class
from mitokit.metrics.matching import Matching, _check_matching, _check_radius, match_points
from mitokit.types import CANONICAL_CLASSES, MITOSIS

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
        """A JSON-friendly dict of the four fields."""
        return dataclasses.asdict(self)


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


__all__ = [
    "DetectionCounts",
    "ImageResult",
    "Match",
    "PointEvaluation",
    "check_label",
    "evaluate_points",
    "precision_recall_f1",
]

"""Detection metrics: one-to-one point matching within a radius, and F1 as MIDOG computes it.

This module gathers the names of three others, so ``mitokit.metrics.detection`` offers all of
them:

* :mod:`mitokit.metrics.matching`: the matching radius (:func:`radius_to_px`, 7.5 um by
  default) and one-to-one point matching (:func:`match_points`), optimal or by the rule of the
  official MIDOG scorer (``matching="optimal"`` or ``"midog"``);
* :mod:`mitokit.metrics.points`: per-image and pooled scores of an annotation set
  (:func:`evaluate_points`: micro F1 as MIDOG, macro F1 beside it) and the conventions they
  follow (positives, thresholds, zero division, unknown classes);
* :mod:`mitokit.metrics.sweep`: the pooled F1 over score thresholds and the best threshold
  (:func:`sweep_thresholds`, :func:`default_thresholds`).
"""

from __future__ import annotations

# The underscored names ("_x as _x") are helpers other modules took from here before the split
# (mitokit.metrics.ranking); new code imports them from their own modules.
from mitokit.metrics.matching import (
    DEFAULT_RADIUS_UM,
    MATCHING_RULES,
    Matching,
    PointMatching,
    match_points,
    radius_to_px,
)
from mitokit.metrics.matching import _as_xy as _as_xy
from mitokit.metrics.matching import _candidate_pairs as _candidate_pairs
from mitokit.metrics.matching import _check_matching as _check_matching
from mitokit.metrics.matching import _check_radius as _check_radius
from mitokit.metrics.matching import _max_matching_size as _max_matching_size
from mitokit.metrics.matching import _midog_pairs as _midog_pairs
from mitokit.metrics.matching import _optimal_pairs as _optimal_pairs
from mitokit.metrics.points import (
    DetectionCounts,
    ImageResult,
    Match,
    PointEvaluation,
    check_label,
    evaluate_points,
    precision_recall_f1,
)
from mitokit.metrics.points import _kept as _kept
from mitokit.metrics.points import _split as _split
from mitokit.metrics.points import _xy as _xy
from mitokit.metrics.sweep import SweepRow, ThresholdSweep, default_thresholds, sweep_thresholds

__all__ = [
    "DEFAULT_RADIUS_UM",
    "MATCHING_RULES",
    "DetectionCounts",
    "ImageResult",
    "Match",
    "Matching",
    "PointEvaluation",
    "PointMatching",
    "SweepRow",
    "ThresholdSweep",
    "check_label",
    "default_thresholds",
    "evaluate_points",
    "match_points",
    "precision_recall_f1",
    "radius_to_px",
    "sweep_thresholds",
]

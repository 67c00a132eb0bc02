"""Metrics: point-matching F1 for detection, and rates, ROC and calibration for classifiers.

* :mod:`mitokit.metrics.detection` gathers three modules: :mod:`~mitokit.metrics.matching`
  (one-to-one point matching within a radius, optimal or by the MIDOG scorer's rule:
  :func:`match_points`), :mod:`~mitokit.metrics.points` (MIDOG-style pooled F1:
  :func:`evaluate_points`) and :mod:`~mitokit.metrics.sweep` (the F1 over score thresholds:
  :func:`sweep_thresholds`).
* :mod:`mitokit.metrics.alignment`: which predicted image is which true image
  (:func:`align_images`), to call before scoring.
* :mod:`mitokit.metrics.ranking`: scores over all thresholds: AP as MIDOG 2025 computes it
  (:func:`average_precision`), the FROC curve and score (:func:`froc`) and MIDOG 2025's FROC AUC
  (:func:`midog2025_froc_auc`).
* :mod:`mitokit.metrics.classification`: TPR/FPR at a threshold and over thresholds, ROC AUC,
  FPR at equal TPR, balanced accuracy, expected calibration error.
* :mod:`mitokit.metrics.evaluate`: point evaluation from files in one call
  (:func:`evaluate_point_files`: reading, alignment, radius, sweep, AP / FROC, overlays).
* :mod:`mitokit.metrics.patches` and :mod:`mitokit.metrics.tiles`: a patch classifier on a label
  file (:func:`evaluate_patch_file`) and tile scores against the truth
  (:func:`evaluate_tile_scores`, :func:`sweep_table`).
"""

from mitokit.metrics.alignment import ImageAlignment, align_images
from mitokit.metrics.classification import (
    balanced_accuracy,
    calibration_table,
    expected_calibration_error,
    fpr_at_tpr,
    roc_auc,
    threshold_sweep,
    tpr_at_fpr,
    tpr_fpr,
)
from mitokit.metrics.detection import (
    DEFAULT_RADIUS_UM,
    MATCHING_RULES,
    DetectionCounts,
    ImageResult,
    Match,
    Matching,
    PointEvaluation,
    PointMatching,
    SweepRow,
    ThresholdSweep,
    check_label,
    default_thresholds,
    evaluate_points,
    match_points,
    precision_recall_f1,
    radius_to_px,
    sweep_thresholds,
)
from mitokit.metrics.evaluate import PointReport, evaluate_point_files, read_predictions
from mitokit.metrics.patches import evaluate_patch_file, validation_threshold
from mitokit.metrics.ranking import (
    FROC,
    FROC_RATES,
    average_precision,
    froc,
    midog2025_froc_auc,
)
from mitokit.metrics.tiles import (
    TilePredictions,
    evaluate_tile_scores,
    read_tile_predictions,
    sweep_table,
    truth_tile_scores,
)

__all__ = [
    "DEFAULT_RADIUS_UM",
    "FROC",
    "FROC_RATES",
    "MATCHING_RULES",
    "DetectionCounts",
    "ImageAlignment",
    "ImageResult",
    "Match",
    "Matching",
    "PointEvaluation",
    "PointMatching",
    "PointReport",
    "SweepRow",
    "ThresholdSweep",
    "TilePredictions",
    "align_images",
    "average_precision",
    "balanced_accuracy",
    "calibration_table",
    "check_label",
    "default_thresholds",
    "evaluate_patch_file",
    "evaluate_point_files",
    "evaluate_points",
    "evaluate_tile_scores",
    "expected_calibration_error",
    "fpr_at_tpr",
    "froc",
    "match_points",
    "midog2025_froc_auc",
    "precision_recall_f1",
    "radius_to_px",
    "read_predictions",
    "read_tile_predictions",
    "roc_auc",
    "sweep_table",
    "sweep_thresholds",
    "threshold_sweep",
    "tpr_at_fpr",
    "tpr_fpr",
    "truth_tile_scores",
    "validation_threshold",
]

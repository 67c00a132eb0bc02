"""Metrics: point-matching F1 for detection, and rates, ROC and calibration for classifiers.

* :mod:`mitokit.metrics.detection`: optimal one-to-one point matching within a radius
  (:func:`match_points`), MIDOG-style pooled F1 (:func:`evaluate_points`) and the F1 over score
  thresholds (:func:`sweep_thresholds`).
* :mod:`mitokit.metrics.classification`: TPR/FPR at a threshold and over thresholds, ROC AUC,
  FPR at equal TPR, balanced accuracy, expected calibration error.
"""

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
    DetectionCounts,
    ImageResult,
    Match,
    PointEvaluation,
    PointMatching,
    SweepRow,
    ThresholdSweep,
    default_thresholds,
    evaluate_points,
    match_points,
    precision_recall_f1,
    radius_to_px,
    sweep_thresholds,
)

__all__ = [
    "DEFAULT_RADIUS_UM",
    "DetectionCounts",
    "ImageResult",
    "Match",
    "PointEvaluation",
    "PointMatching",
    "SweepRow",
    "ThresholdSweep",
    "balanced_accuracy",
    "calibration_table",
    "default_thresholds",
    "evaluate_points",
    "expected_calibration_error",
    "fpr_at_tpr",
    "match_points",
    "precision_recall_f1",
    "radius_to_px",
    "roc_auc",
    "sweep_thresholds",
    "threshold_sweep",
    "tpr_at_fpr",
    "tpr_fpr",
]

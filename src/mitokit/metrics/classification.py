"""Classification metrics for cells and tiles: rates at a threshold, ROC, calibration.

Labels ``y_true`` are 0/1 (1 = mitosis, or a tile with a mitosis) for the rate and ROC metrics;
the calibration error also accepts soft labels in [0, 1] (probabilistic labels from several
raters). A sample is called positive when its score is ``>= threshold``.

Zero division: a rate whose denominator is 0 (TPR without positives, FPR without negatives,
precision without predicted positives) is 0.0. ROC AUC and the rates read off the ROC curve need
both classes and raise :class:`~mitokit.errors.MitokitError` otherwise.

scikit-learn supplies ROC AUC, the ROC curve and balanced accuracy; it is imported inside the
functions so that importing :mod:`mitokit.metrics` stays cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from mitokit.errors import MitokitError

# --------------------------------------------------------------------------------------------
# Input checks


def _vector(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise MitokitError(f"{name} must be numbers") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise MitokitError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MitokitError(f"{name} holds non-finite values (NaN or inf)")
    return arr


def _check_pair(
    y_true: Any, scores: Any, *, scores_name: str = "scores", binary: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and scores: same non-zero length, finite, labels in [0, 1] (or 0/1)."""
    y = _vector(y_true, "y_true")
    s = _vector(scores, scores_name)
    if len(y) != len(s):
        raise MitokitError(f"y_true and {scores_name} differ in length ({len(y)} and {len(s)})")
    if len(y) == 0:
        raise MitokitError("no samples: y_true is empty")
    if ((y < 0) | (y > 1)).any():
        raise MitokitError("y_true must lie in [0, 1]")
    if binary and not np.isin(y, (0.0, 1.0)).all():
        raise MitokitError("y_true must be 0 or 1 here (soft labels are only for calibration)")
    return y, s


def _check_both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        raise MitokitError(
            f"only one class present in y_true (all {int(y[0])}): {what} is undefined"
        )


def _check_fraction(value: float, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise MitokitError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


# --------------------------------------------------------------------------------------------
# Rates at thresholds


def tpr_fpr(y_true: Any, scores: Any, threshold: float) -> dict[str, float]:
    """True- and false-positive rates when samples with ``score >= threshold`` are positive.

    Args:
        y_true: 0/1 labels.
        scores: Scores of the same length; higher means more likely positive.
        threshold: Decision threshold (inclusive).

    Returns:
        ``{"tpr", "fpr", "tp", "fp", "tn", "fn"}``; a rate with a zero denominator is 0.0.

    Raises:
        MitokitError: The inputs differ in length, are empty, non-finite, or not 0/1 labels.
    """
    y, s = _check_pair(y_true, scores)
    t = float(threshold)
    if math.isnan(t):
        raise MitokitError("threshold must be a number, got NaN")
    pos = y == 1
    called = s >= t
    tp = int((called & pos).sum())
    fp = int((called & ~pos).sum())
    fn = int((~called & pos).sum())
    tn = int((~called & ~pos).sum())
    return {
        "tpr": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def threshold_sweep(
    y_true: Any, scores: Any, thresholds: Iterable[float] | None = None
) -> list[dict[str, float]]:
    """Rates at each threshold: one row per threshold, thresholds ascending.

    Each row holds ``threshold, tpr, fpr, precision, balanced_accuracy, tp, fp, tn, fn``.
    Balanced accuracy is the mean recall of the classes present in ``y_true`` (as
    :func:`sklearn.metrics.balanced_accuracy_score`).

    Args:
        y_true: 0/1 labels.
        scores: Scores of the same length.
        thresholds: Thresholds to evaluate; by default every distinct score.

    Raises:
        MitokitError: Bad inputs (see :func:`tpr_fpr`) or a non-finite threshold.
    """
    y, s = _check_pair(y_true, scores)
    if thresholds is None:
        grid = np.unique(s)
    else:
        grid = np.unique(_vector(list(thresholds), "thresholds"))
        if grid.size == 0:
            raise MitokitError("thresholds is empty")
    pos_sorted = np.sort(s[y == 1])
    neg_sorted = np.sort(s[y == 0])
    n_pos, n_neg = len(pos_sorted), len(neg_sorted)
    # Samples with score >= t: everything from the first index not below t.
    tp_arr = n_pos - np.searchsorted(pos_sorted, grid, side="left")
    fp_arr = n_neg - np.searchsorted(neg_sorted, grid, side="left")
    rows = []
    for t, tp, fp in zip(grid, tp_arr, fp_arr, strict=True):
        tp, fp = int(tp), int(fp)
        fn, tn = n_pos - tp, n_neg - fp
        tpr, fpr = _ratio(tp, n_pos), _ratio(fp, n_neg)
        recalls = ([tpr] if n_pos else []) + ([1.0 - fpr] if n_neg else [])
        rows.append(
            {
                "threshold": float(t),
                "tpr": tpr,
                "fpr": fpr,
                "precision": _ratio(tp, tp + fp),
                "balanced_accuracy": float(np.mean(recalls)),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
            }
        )
    return rows


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Balanced accuracy of 0/1 predictions: the mean recall of the classes in ``y_true``.

    Uses :func:`sklearn.metrics.balanced_accuracy_score`; when ``y_true`` has one class only, the
    score is that class's recall (scikit-learn's warning about it is silenced).

    Raises:
        MitokitError: Bad inputs, or ``y_pred`` not 0/1.
    """
    from sklearn.metrics import balanced_accuracy_score

    y, p = _check_pair(y_true, y_pred, scores_name="y_pred")
    if not np.isin(p, (0.0, 1.0)).all():
        raise MitokitError("y_pred must be 0 or 1 (threshold the scores first)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y.astype(int), p.astype(int)))


# --------------------------------------------------------------------------------------------
# ROC


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve (:func:`sklearn.metrics.roc_auc_score`); ties count one half.

    Raises:
        MitokitError: Bad inputs, or only one class present ("only one class present").
    """
    from sklearn.metrics import roc_auc_score

    y, s = _check_pair(y_true, scores)
    _check_both_classes(y, "ROC AUC")
    return float(roc_auc_score(y.astype(int), s))


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    _check_both_classes(y, "the ROC curve")
    fpr, tpr, _ = roc_curve(y.astype(int), s, drop_intermediate=False)
    return fpr, tpr


def best_threshold(y_true: Any, scores: Any) -> float:
    """The score threshold of highest balanced accuracy (Youden's J = TPR - FPR).

    Taken from :func:`sklearn.metrics.roc_curve`; among equally good thresholds the one
    midway between the chosen score and the next lower score is returned, so that a threshold
    chosen on validation data does not sit on a validation score. Choose it on validation rows,
    then apply it to test rows.

    Raises:
        MitokitError: Bad inputs, or only one class present.
    """
    from sklearn.metrics import roc_curve

    y, s = _check_pair(y_true, scores)
    _check_both_classes(y, "a threshold")
    fpr, tpr, thr = roc_curve(y.astype(int), s, drop_intermediate=False)
    j = tpr - fpr
    k = int(np.argmax(j[1:])) + 1  # index 0 is the "nothing positive" point (threshold inf)
    lower = s[s < thr[k]]
    return float((thr[k] + lower.max()) / 2.0) if lower.size else float(thr[k])


def fpr_at_tpr(y_true: Any, scores: Any, target_tpr: float) -> float:
    """The lowest FPR at which the ROC curve reaches ``target_tpr``, interpolated linearly.

    The ROC curve is the piecewise-linear curve through the operating points of all thresholds
    (from (0, 0) to (1, 1)); between two points it is linear, as for a randomised threshold.
    Used to compare two models at equal sensitivity ("FPR at equal TPR").

    Args:
        y_true: 0/1 labels with both classes.
        scores: Scores of the same length.
        target_tpr: The sensitivity to reach, in [0, 1].

    Raises:
        MitokitError: Bad inputs, one class only, or a target outside [0, 1].
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target_tpr, "target_tpr")
    fpr, tpr = _roc(y, s)
    k = int(np.searchsorted(tpr, target, side="left"))  # first point with tpr >= target
    if tpr[k] == target or k == 0:
        return float(fpr[k])
    w = (target - tpr[k - 1]) / (tpr[k] - tpr[k - 1])
    return float(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]))


def tpr_at_fpr(y_true: Any, scores: Any, target_fpr: float) -> float:
    """The highest TPR the ROC curve reaches at ``target_fpr``, interpolated linearly.

    The counterpart of :func:`fpr_at_tpr` on the same piecewise-linear ROC curve.

    Args:
        y_true: 0/1 labels with both classes.
        scores: Scores of the same length.
        target_fpr: The false-positive rate allowed, in [0, 1].

    Raises:
        MitokitError: Bad inputs, one class only, or a target outside [0, 1].
    """
    y, s = _check_pair(y_true, scores)
    target = _check_fraction(target_fpr, "target_fpr")
    fpr, tpr = _roc(y, s)
    k = int(np.searchsorted(fpr, target, side="right")) - 1  # last point with fpr <= target
    if fpr[k] == target or k == len(fpr) - 1:
        return float(tpr[k])
    w = (target - fpr[k]) / (fpr[k + 1] - fpr[k])
    return float(tpr[k] + w * (tpr[k + 1] - tpr[k]))


# --------------------------------------------------------------------------------------------
# Calibration


def calibration_table(
    y_true: Any, probs: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> list[dict[str, float]]:
    """Bins of predicted probability with their mean prediction and mean label.

    Bins are right-closed, ``(lower, upper]``, the first also holding its lower edge (as
    :func:`sklearn.calibration.calibration_curve`). Empty bins are left out.

    Args:
        y_true: Labels in [0, 1]; soft labels (e.g. the fraction of raters saying yes) allowed.
        probs: Predicted probabilities in [0, 1].
        n_bins: Number of bins.
        strategy: ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"`` (equal-count bins
            at the quantiles of ``probs``).

    Returns:
        One row per non-empty bin: ``lower, upper, count, mean_prob, mean_true``.

    Raises:
        MitokitError: Bad inputs, probabilities outside [0, 1], ``n_bins < 1`` or an unknown
            strategy.
    """
    y, p = _check_pair(y_true, probs, scores_name="probs", binary=False)
    if ((p < 0) | (p > 1)).any():
        raise MitokitError("probs must lie in [0, 1]")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MitokitError(f"n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        raise MitokitError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    which = np.searchsorted(edges[1:-1], p, side="left")
    count = np.bincount(which, minlength=n_bins)
    sum_p = np.bincount(which, weights=p, minlength=n_bins)
    sum_y = np.bincount(which, weights=y, minlength=n_bins)
    rows = []
    for b in np.flatnonzero(count):
        rows.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": int(count[b]),
                "mean_prob": float(sum_p[b] / count[b]),
                "mean_true": float(sum_y[b] / count[b]),
            }
        )
    return rows


def expected_calibration_error(
    y_true: Any, probs: Any, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Expected calibration error: ``sum_b (n_b / N) * |mean(y in b) - mean(p in b)|``.

    Binning as in :func:`calibration_table`. ``y_true`` may hold soft labels in [0, 1]; a set
    whose every bin has mean label equal to mean probability has an ECE of 0.

    Args:
        y_true: Labels in [0, 1].
        probs: Predicted probabilities in [0, 1].
        n_bins: Number of bins (15 by default, as in Guo et al. 2017).
        strategy: ``"uniform"`` or ``"quantile"``.

    Raises:
        MitokitError: As :func:`calibration_table`.
    """
    rows = calibration_table(y_true, probs, n_bins=n_bins, strategy=strategy)
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] / n * abs(r["mean_true"] - r["mean_prob"]) for r in rows))

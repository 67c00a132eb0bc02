"""Classification metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mitokit.errors import MitokitError
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

Y = [1, 1, 0, 0, 1, 0]
S = [0.9, 0.4, 0.35, 0.8, 0.7, 0.1]


def test_tpr_fpr_by_hand():
    # score >= 0.5: 0.9 (P), 0.8 (N), 0.7 (P) -> TP 2, FP 1, FN 1 (0.4), TN 2.
    r = tpr_fpr(Y, S, 0.5)
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 2, 1)
    assert r["tpr"] == pytest.approx(2 / 3)
    assert r["fpr"] == pytest.approx(1 / 3)
    assert tpr_fpr(Y, S, 0.8)["fp"] == 1  # the threshold itself counts as positive


def test_tpr_fpr_without_positives_is_zero():
    r = tpr_fpr([0, 0], [0.2, 0.9], 0.5)
    assert (r["tpr"], r["fpr"]) == (0.0, 0.5)


def test_threshold_sweep_rows():
    rows = threshold_sweep(Y, S)
    assert [r["threshold"] for r in rows] == sorted(S)
    for row in rows:
        single = tpr_fpr(Y, S, row["threshold"])
        assert row["tpr"] == pytest.approx(single["tpr"])
        assert row["fpr"] == pytest.approx(single["fpr"])
    at_07 = next(r for r in rows if r["threshold"] == 0.7)
    # TP 2 (0.9, 0.7), FP 1 (0.8): precision 2/3; balanced accuracy (2/3 + 2/3) / 2.
    assert at_07["precision"] == pytest.approx(2 / 3)
    assert at_07["balanced_accuracy"] == pytest.approx(2 / 3)
    custom = threshold_sweep(Y, S, thresholds=[1.0, 0.0])
    assert [r["threshold"] for r in custom] == [0.0, 1.0]
    assert custom[1]["precision"] == 0.0  # nothing called positive


def test_balanced_accuracy_matches_hand_value():
    y_pred = (np.array(S) >= 0.5).astype(int)
    assert balanced_accuracy(Y, y_pred) == pytest.approx((2 / 3 + 2 / 3) / 2)
    with pytest.raises(MitokitError, match="0 or 1"):
        balanced_accuracy(Y, S)


def test_roc_auc_equals_pairwise_count():
    pos = [s for s, y in zip(S, Y, strict=True) if y == 1]
    neg = [s for s, y in zip(S, Y, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert wins == 7
    assert roc_auc(Y, S) == pytest.approx(wins / (len(pos) * len(neg)))
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)  # ties count half


def test_roc_auc_one_class_raises():
    with pytest.raises(MitokitError, match="only one class present"):
        roc_auc([1, 1, 1], [0.1, 0.5, 0.9])


def test_fpr_at_tpr_interpolates():
    # ROC: (0,0) -> (0, .5) at 0.9 -> (.5, 1) at the tie 0.5 -> (1, 1).
    y = [1, 0, 1, 0]
    s = [0.9, 0.5, 0.5, 0.1]
    assert fpr_at_tpr(y, s, 0.75) == pytest.approx(0.25)  # halfway along the tie segment
    assert fpr_at_tpr(y, s, 0.5) == pytest.approx(0.0)  # reached at fpr 0
    assert fpr_at_tpr(y, s, 1.0) == pytest.approx(0.5)
    assert tpr_at_fpr(y, s, 0.25) == pytest.approx(0.75)
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.5)  # highest tpr at fpr 0
    assert tpr_at_fpr(y, s, 0.9) == pytest.approx(1.0)


def test_fpr_at_tpr_on_vertical_segment():
    # Y/S ROC: (0,0),(0,1/3),(1/3,1/3),(1/3,2/3),(1/3,1),(2/3,1),(1,1).
    assert fpr_at_tpr(Y, S, 0.5) == pytest.approx(1 / 3)
    assert fpr_at_tpr(Y, S, 0.2) == pytest.approx(0.0)
    with pytest.raises(MitokitError, match="target_tpr"):
        fpr_at_tpr(Y, S, 1.5)


def test_ece_two_bins_by_hand():
    # Bin (0, .5]: p .2, .4 (mean .3), labels 0, 0 -> gap .3;
    # bin (.5, 1]: p .6, .8 (mean .7), labels 1, 1 -> gap .3. ECE = .3.
    y = [0, 1, 1, 0]
    p = [0.2, 0.8, 0.6, 0.4]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.3)
    # Unequal bins: three in the upper bin with mean label 2/3.
    y2 = [0, 1, 1, 0, 0]
    p2 = [0.2, 0.8, 0.6, 0.9, 0.4]
    # Upper: mean p = 2.3/3, mean y = 2/3, gap .1, weight 3/5; lower gap .3, weight 2/5.
    assert expected_calibration_error(y2, p2, n_bins=2) == pytest.approx(3 / 5 * 0.1 + 2 / 5 * 0.3)


def test_ece_zero_when_calibrated():
    # In each bin the mean label equals the mean probability.
    p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0)
    # Soft labels equal to the probabilities are calibrated too.
    q = np.linspace(0, 1, 37)
    assert expected_calibration_error(q, q, n_bins=15) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(q, q, strategy="quantile") == pytest.approx(0.0, abs=1e-12)


def test_calibration_bins_are_right_closed():
    rows = calibration_table([0, 1, 1], [0.0, 0.5, 0.51], n_bins=2)
    assert [r["count"] for r in rows] == [2, 1]
    assert rows[0]["lower"] == 0.0 and rows[0]["upper"] == 0.5


def test_quantile_bins_have_equal_counts():
    p = np.linspace(0.01, 0.99, 40)
    rows = calibration_table(np.zeros(40), p, n_bins=4, strategy="quantile")
    assert [r["count"] for r in rows] == [10, 10, 10, 10]


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([1, 0], [0.5], "differ in length"),
        ([1, 0], [0.5, math.nan], "non-finite"),
        ([1, 2], [0.5, 0.3], r"\[0, 1\]"),
        ([1, 0.5], [0.5, 0.3], "0 or 1"),
        ([], [], "empty"),
    ],
)
def test_bad_input_raises(y, s, match):
    with pytest.raises(MitokitError, match=match):
        tpr_fpr(y, s, 0.5)


def test_ece_bad_input():
    with pytest.raises(MitokitError, match="probs must lie"):
        expected_calibration_error([0, 1], [0.5, 1.5])
    with pytest.raises(MitokitError, match="strategy"):
        expected_calibration_error([0, 1], [0.5, 0.5], strategy="nope")
    with pytest.raises(MitokitError, match="n_bins"):
        expected_calibration_error([0, 1], [0.5, 0.5], n_bins=0)
    # Soft labels are fine here.
    assert expected_calibration_error([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_best_threshold_hand_computed():
    from mitokit.metrics.classification import best_threshold

    # separable: any cut between 0.2 and 0.3; the midpoint is returned
    assert best_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)
    # J = 0.5 at >= 0.8 and at >= 0.35; the higher cut comes first: midway 0.8 / 0.4
    t = best_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert t == pytest.approx(0.6)
    assert balanced_accuracy([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.75)
    # lowest score positive and everything above it: the cut sits on that score
    assert best_threshold([1, 1, 1, 0], [0.1, 0.2, 0.3, 0.05]) == pytest.approx(0.075)
    with pytest.raises(MitokitError, match="one class"):
        best_threshold([1, 1], [0.2, 0.3])

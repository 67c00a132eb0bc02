"""AP as MIDOG 2025 computes it, the FROC score, and MIDOG 2025's FROC AUC."""

from __future__ import annotations

import numpy as np
import pytest
from evalutils.scorers import score_detection
from sklearn.metrics import precision_recall_curve

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.metrics import (
    FROC_RATES,
    average_precision,
    froc,
    midog2025_froc_auc,
    sweep_thresholds,
)
from mitokit.metrics.ranking import _froc_and_sweep
from mitokit.types import MITOSIS


def _set(rows, images=()):
    """rows: (image, x, y[, score])."""
    anns = []
    for k, row in enumerate(rows):
        image, x, y, *rest = row
        score = rest[0] if rest else None
        anns.append(
            Annotation(id=f"a{k}", image=image, point=(float(x), float(y)), label=MITOSIS,
                       score=score)
        )  # fmt: skip
    return AnnotationSet(anns, {i: ImageInfo(id=i) for i in images})


# Two images, three true mitoses; the predictions alternate hit / false alarm down the ranking.
TRUTH = _set([("A", 0, 0), ("A", 100, 0), ("B", 0, 0)])
PRED = _set(
    [
        ("A", 1, 0, 0.9),  # hit
        ("A", 50, 50, 0.8),  # false alarm
        ("B", 0, 1, 0.7),  # hit
        ("B", 60, 60, 0.6),  # false alarm
        ("A", 100, 1, 0.5),  # hit
        ("B", 200, 200, 0.4),  # false alarm
    ]
)


# ---------------------------------------------------------------------------------------------
# AP


def test_ap_by_hand():
    # Ranked: hit, FA, hit, FA, hit, FA -> recall 1/3 1/3 2/3 2/3 1 1, precision 1 .5 .67 .5 .6 .5.
    # Made non-increasing from the right: 1, .67, .67, .6, .6, .5. Read at the 101 recall levels:
    # r <= 1/3 (34 levels) -> 1; 1/3 < r <= 2/3 (33) -> 2/3; r > 2/3 (34) -> 0.6.
    expected = (34 * 1.0 + 33 * (2 / 3) + 34 * 0.6) / 101
    assert average_precision(PRED, TRUTH, radius_px=10) == pytest.approx(expected)


def test_ap_perfect_and_nothing_found():
    perfect = _set([("A", 0, 0, 0.9), ("A", 100, 0, 0.8), ("B", 0, 0, 0.7)])
    assert average_precision(perfect, TRUTH, radius_px=10) == pytest.approx(1.0)
    far = _set([("A", 500, 500, 0.9)])
    assert average_precision(far, TRUTH, radius_px=10) == 0.0
    assert average_precision(_set([]), TRUTH, radius_px=10) == 0.0


def test_ap_boxes_match_up_to_the_radius_along_an_axis_only():
    truth = _set([("A", 0, 0)])
    # Horizontal offset equal to the radius: squares of side 3 r overlap with IoU exactly 0.5.
    hit = average_precision(_set([("A", 10, 0, 0.9)]), truth, radius_px=10)
    assert hit == pytest.approx(1.0)  # COCO's precision tp / (tp + fp + eps): 1 - 2e-16
    assert average_precision(_set([("A", 10.01, 0, 0.9)]), truth, radius_px=10) == 0.0
    # Diagonal, 0.8 r away (within the radius): IoU < 0.5, no match for AP; 0.75 r still matches
    # (the limit is (1 - sqrt(2/3)) * 3 r * sqrt(2) = 0.78 r).
    d = 0.8 * 10 / np.sqrt(2)
    assert average_precision(_set([("A", d, d, 0.9)]), truth, radius_px=10) == 0.0
    d = 0.75 * 10 / np.sqrt(2)
    assert average_precision(_set([("A", d, d, 0.9)]), truth, radius_px=10) == pytest.approx(1)


def test_ap_a_truth_box_is_taken_once_in_score_order():
    truth = _set([("A", 0, 0)])
    # The lower-scored duplicate is the false alarm: ranked hit, FA -> AP 1 (precision 1 up to
    # recall 1, reached at rank 1).
    pred = _set([("A", 1, 0, 0.9), ("A", 0, 1, 0.8)])
    assert average_precision(pred, truth, radius_px=10) == pytest.approx(1.0)
    # Ranked FA (a far one) then hit: precision 0.5 at recall 1.
    pred = _set([("A", 300, 0, 0.9), ("A", 0, 1, 0.8)])
    assert average_precision(pred, truth, radius_px=10) == pytest.approx(0.5)


def test_ap_equals_the_interpolated_sklearn_curve_where_matching_is_unambiguous():
    """Isolated truths, each prediction either on one or far from all: sklearn gives the curve."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        n_truth = int(rng.integers(1, 12))
        truth_xy = np.stack([np.arange(n_truth) * 1000.0, np.zeros(n_truth)], axis=1)
        found = rng.random(n_truth) < 0.7
        n_fa = int(rng.integers(0, 10))
        pts = [(x + 2.0, y) for (x, y), f in zip(truth_xy, found, strict=True) if f]
        pts += [(500.0 + 1000.0 * k, 500.0) for k in range(n_fa)]
        hit = np.array([True] * int(found.sum()) + [False] * n_fa)
        if len(pts) == 0:
            continue
        scores = rng.permutation(len(pts)) / len(pts) + 0.01  # distinct
        pred = _set([("A", x, y, float(s)) for (x, y), s in zip(pts, scores, strict=True)])
        truth = _set([("A", x, y) for x, y in truth_xy])
        ap = average_precision(pred, truth, radius_px=10)
        if not hit.any():
            assert ap == 0.0
            continue
        precision, recall, _ = precision_recall_curve(hit, scores)
        precision, recall = precision[:-1], recall[:-1]  # drop sklearn's closing (1, 0) point
        recall = np.round(recall * hit.sum()) / n_truth  # sklearn knows only the found truths
        levels = np.linspace(0, 1, 101)
        expected = [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in levels]
        assert ap == pytest.approx(np.mean(expected), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# FROC


def test_froc_by_hand():
    # Thresholds .9 .8 .7 .6 .5 .4 over 2 images and 3 truths:
    # FP/image 0 .5 .5 1 1 1.5; sensitivity 1/3 1/3 2/3 2/3 1 1.
    curve = froc(PRED, TRUTH, radius_px=10)
    assert curve.thresholds == pytest.approx((0.9, 0.8, 0.7, 0.6, 0.5, 0.4))
    assert curve.fp_per_image == pytest.approx((0, 0.5, 0.5, 1, 1, 1.5))
    assert curve.sensitivity == pytest.approx((1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1))
    assert curve.rates == FROC_RATES
    # at 1/8 and 1/4: 1/3 (only the top threshold); 1/2: 2/3; 1 and beyond: 1.
    assert curve.at_rates == pytest.approx((1 / 3, 1 / 3, 2 / 3, 1, 1, 1, 1))
    assert curve.score == pytest.approx(16 / 21)
    assert (curve.n_images, curve.n_truth) == (2, 3)
    assert curve.to_dict()["score"] == pytest.approx(16 / 21)


def test_froc_counts_every_image_and_reads_reachable_points_only():
    # A third image without truth or prediction halves nothing but counts in the FP average.
    truth = AnnotationSet(TRUTH.annotations, {i: ImageInfo(id=i) for i in ("A", "B", "C")})
    curve = froc(PRED, truth, radius_px=10)
    assert curve.n_images == 3
    assert curve.fp_per_image[-1] == pytest.approx(1.0)
    # no threshold has at most 1/8 FP per image beyond the top one: no interpolation upwards
    few = froc(_set([("A", 500, 0, 0.9), ("A", 0, 0, 0.8)]), TRUTH, radius_px=10)
    assert few.at_rates[:2] == (0.0, 0.0)  # 1/8 and 1/4: the FA comes first, 0.5 FP/image
    assert few.at_rates[2] == pytest.approx(1 / 3)


def test_froc_tied_scores_enter_together():
    pred = _set([("A", 1, 0, 0.5), ("A", 50, 50, 0.5)])
    curve = froc(pred, TRUTH, radius_px=10)
    assert curve.thresholds == (0.5,)
    assert curve.fp_per_image == (0.5,) and curve.sensitivity == pytest.approx((1 / 3,))


def test_froc_follows_the_matching_rule():
    # The case where the rules differ (see test_metrics_midog): optimal finds 2, MIDOG 1.
    truth = _set([("A", 0, 0), ("A", 9, 0)])
    pred = _set([("A", 4, 0, 0.9), ("A", -4.5, 0, 0.8)])
    optimal = froc(pred, truth, radius_px=5)
    midog = froc(pred, truth, radius_px=5, matching="midog")
    assert optimal.sensitivity == (0.5, 1.0)
    assert midog.sensitivity == (0.5, 0.5)
    assert midog.fp_per_image == (0.0, 1.0)


@pytest.mark.parametrize("matching", ["optimal", "midog"])
def test_froc_and_sweep_equal_the_two_apart(matching):
    # _froc_and_sweep (evaluate --sweep) matches once for both: the results are those apart.
    rng = np.random.default_rng(7)
    for _ in range(30):
        images = [f"i{k}" for k in range(int(rng.integers(1, 4)))]
        rows, truth_rows = [], []
        for image in images:
            n_p, n_t = int(rng.integers(0, 90)), int(rng.integers(0, 8))
            decimals = int(rng.choice([1, 3]))  # ties, or (with 3) at times over 200 scores
            rows += [
                (image, *np.round(rng.uniform(0, 60, 2)), float(np.round(rng.random(), decimals)))
                for _ in range(n_p)
            ]
            truth_rows += [(image, *np.round(rng.uniform(0, 60, 2))) for _ in range(n_t)]
        if not rows or not truth_rows:
            continue
        pred, truth = _set(rows, images), _set(truth_rows, images)
        kw = {"radius_px": 8.0, "matching": matching}
        curve, sweep = _froc_and_sweep(
            pred, truth, label=MITOSIS, rates=FROC_RATES, sweep=True, **kw
        )
        assert curve == froc(pred, truth, **kw)
        assert sweep == sweep_thresholds(pred, truth, **kw)


def test_ranking_needs_scores_and_truth():
    unscored = _set([("A", 0, 0, 0.9), ("A", 5, 5)])
    for fn in (average_precision, froc, midog2025_froc_auc):
        with pytest.raises(MitokitError, match="1 of 2 have no score"):
            fn(unscored, TRUTH, radius_px=10)
        with pytest.raises(MitokitError, match="at least one true object"):
            fn(PRED, _set([], images=("A",)), radius_px=10)


# ---------------------------------------------------------------------------------------------
# MIDOG 2025 FROC AUC


def test_midog_froc_auc_by_hand():
    # One score: one point, FP/image 0, recall 1 / (2 + 1e-6): flat over 0..8.
    truth = _set([("A", 0, 0), ("A", 100, 0)])
    pred = _set([("A", 0, 0, 0.7)])
    assert midog2025_froc_auc(pred, truth, radius_px=5) == pytest.approx(8 / (2 + 1e-6), 1e-12)
    assert np.isnan(midog2025_froc_auc(_set([]), truth, radius_px=5))


def _midog_recipe(points_by_image, truth_by_image, radius):
    """MIDOG 2025's froc_auc written from its description, scoring with evalutils itself."""
    scores = np.concatenate([s for _, s in points_by_image.values()])
    lo, hi = scores.min(), scores.max()
    grid = [lo] if lo == hi else np.linspace(lo, hi, 40).tolist()
    recall, fppi = [], []
    for t in grid:
        tp = fn = 0
        fps = []
        for image, (xy, s) in points_by_image.items():
            res = score_detection(
                ground_truth=[tuple(p) for p in truth_by_image[image]],
                predictions=[tuple(p) for p in xy[s >= t]],
                radius=radius,
            )
            tp += res.true_positives
            fn += res.false_negatives
            fps.append(res.false_positives)
        recall.append(tp / (tp + fn + 1e-6))
        fppi.append(np.mean(fps))
    order = np.argsort(fppi)
    x, y = np.array(fppi)[order], np.array(recall)[order]
    at = np.linspace(0, 8, 50)
    return np.trapezoid(np.interp(at, x, y, left=0, right=y[-1]), at)


def test_midog_froc_auc_equals_the_recipe_with_evalutils_on_random_sets():
    rng = np.random.default_rng(2025)
    for _ in range(40):
        images = [f"i{k}" for k in range(int(rng.integers(1, 4)))]
        points, truths, rows, truth_rows = {}, {}, [], []
        for image in images:
            centre = rng.uniform(0, 60, 2)
            n_p, n_t = int(rng.integers(0, 25)), int(rng.integers(1, 10))
            xy = np.round(centre + rng.normal(0, 15, (n_p, 2)))
            s = np.round(rng.uniform(0, 1, n_p), 2)
            points[image] = (xy, s)
            truths[image] = np.round(centre + rng.normal(0, 15, (n_t, 2)))
            rows += [(image, *p, float(v)) for p, v in zip(xy, s, strict=True)]
            truth_rows += [(image, *p) for p in truths[image]]
        if not rows:
            continue
        radius = float(rng.choice([5.0, 8.0, 12.0]))
        got = midog2025_froc_auc(_set(rows, images), _set(truth_rows, images), radius_px=radius)
        assert got == pytest.approx(_midog_recipe(points, truths, radius), abs=1e-12)

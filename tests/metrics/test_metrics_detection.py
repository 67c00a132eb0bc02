"""Point matching and MIDOG-style detection F1, against hand-computed cases."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.metrics.detection import (
    default_thresholds,
    evaluate_points,
    match_points,
    precision_recall_f1,
    radius_to_px,
    sweep_thresholds,
)
from mitokit.types import MITOSIS, NON_MITOSIS


def _ann(i, image, x, y, label=MITOSIS, score=None):
    return Annotation(id=str(i), image=image, point=(float(x), float(y)), label=label, score=score)


def _set(rows, images=()):
    """rows: (image, x, y[, label[, score]])."""
    anns = [_ann(f"a{k}", *row) for k, row in enumerate(rows)]
    return AnnotationSet(anns, {i: ImageInfo(id=i) for i in images})


# ---------------------------------------------------------------------------------------------
# match_points


def _greedy_count(pred, truth, radius):
    """Nearest-first greedy matching, the baseline the optimal assignment must beat."""
    pairs = sorted(
        (math.dist(p, t), i, j)
        for i, p in enumerate(pred)
        for j, t in enumerate(truth)
        if math.dist(p, t) <= radius
    )
    used_p, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


def test_optimal_matching_beats_greedy():
    # T0 at x=1 and T1 at x=19.5; P0 at x=10 is closest to T0 (9) but also reaches T1 (9.5);
    # P1 at x=-8.5 reaches only T0 (9.5). Greedy takes P0-T0 first and stops at one pair.
    # P2 and T2 are far from everything.
    pred = [(10.0, 0.0), (-8.5, 0.0), (500.0, 500.0)]
    truth = [(1.0, 0.0), (19.5, 0.0), (900.0, 0.0)]
    assert _greedy_count(pred, truth, 10.0) == 1
    result = match_points(pred, truth, radius_px=10.0)
    assert result.pairs.tolist() == [[0, 1], [1, 0]]
    assert result.unmatched_pred.tolist() == [2]
    assert result.unmatched_truth.tolist() == [2]


def test_among_equal_counts_the_shorter_total_distance_wins():
    # Both assignments match two pairs; (P0-T0, P1-T1) totals 4 px, the crossed one 8 px.
    pred = [(0.0, 0.0), (4.0, 0.0)]
    truth = [(2.0, 0.0), (6.0, 0.0)]
    result = match_points(pred, truth, radius_px=10.0)
    assert result.pairs.tolist() == [[0, 0], [1, 1]]


def test_radius_boundary_is_inclusive():
    truth = [(0.0, 0.0)]
    at = match_points([(18.0, 24.0)], truth, radius_px=30.0)  # distance exactly 30
    assert at.pairs.tolist() == [[0, 0]]
    beyond = match_points([(18.0, 24.001)], truth, radius_px=30.0)
    assert beyond.pairs.shape == (0, 2)
    assert beyond.unmatched_pred.tolist() == [0]
    assert beyond.unmatched_truth.tolist() == [0]


def test_one_truth_takes_one_prediction_only():
    result = match_points([(0, 0), (1, 0), (2, 0)], [(1, 1)], radius_px=5)
    assert result.pairs.tolist() == [[1, 0]]  # the nearest one
    assert result.unmatched_pred.tolist() == [0, 2]


def test_empty_sides():
    r = match_points([], [(1.0, 2.0), (3.0, 4.0)], radius_px=5)
    assert r.pairs.shape == (0, 2)
    assert r.unmatched_pred.tolist() == []
    assert r.unmatched_truth.tolist() == [0, 1]
    r = match_points(np.empty((0, 2)), np.empty((0, 2)), radius_px=5)
    assert r.pairs.shape == (0, 2)


def test_zero_radius_matches_identical_points_only():
    r = match_points([(3, 4), (5, 5)], [(3, 4), (5, 5.5)], radius_px=0)
    assert r.pairs.tolist() == [[0, 0]]


@pytest.mark.parametrize(
    ("pred", "radius"),
    [
        ([(1.0, 2.0, 3.0)], 5.0),
        ([(math.nan, 1.0)], 5.0),
        ([(1.0, 1.0)], -1.0),
        ([(1.0, 1.0)], math.inf),
    ],
)
def test_bad_inputs_raise(pred, radius):
    with pytest.raises(ValueError):
        match_points(pred, [(0.0, 0.0)], radius_px=radius)


def _brute_force(pred, truth, radius):
    """(most pairs, least total distance) over every one-to-one assignment."""
    k = max(len(pred), len(truth))
    best = (0, 0.0)
    for perm in itertools.permutations(range(k)):
        count, total = 0, 0.0
        for i, j in enumerate(perm[: len(pred)]):
            if j < len(truth) and math.dist(pred[i], truth[j]) <= radius:
                count += 1
                total += math.dist(pred[i], truth[j])
        if (count, -total) > (best[0], -best[1]):
            best = (count, total)
    return best


def test_matches_brute_force_on_random_crowds():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n, m = rng.integers(0, 6, size=2)
        pred = rng.uniform(0, 20, size=(n, 2)).round(1)
        truth = rng.uniform(0, 20, size=(m, 2)).round(1)
        r = match_points(pred, truth, radius_px=6.0)
        total = sum(math.dist(pred[i], truth[j]) for i, j in r.pairs)
        count, best_total = _brute_force(pred.tolist(), truth.tolist(), 6.0)
        assert len(r.pairs) == count
        assert total == pytest.approx(best_total)
        assert len(set(r.pairs[:, 0])) == len(r.pairs) == len(set(r.pairs[:, 1]))
        assert len(r.pairs) + len(r.unmatched_pred) == n
        assert len(r.pairs) + len(r.unmatched_truth) == m


# ---------------------------------------------------------------------------------------------
# radius_to_px


def test_radius_from_micrometres():
    assert radius_to_px(radius_um=7.5, mpp=0.25) == pytest.approx(30.0)
    assert radius_to_px(mpp=0.25) == pytest.approx(30.0)  # the 7.5 um default
    assert radius_to_px(radius_px=12) == 12.0


def test_radius_errors():
    with pytest.raises(MitokitError, match="pass mpp or a radius in pixels"):
        radius_to_px(radius_um=7.5)
    with pytest.raises(MitokitError, match="not both"):
        radius_to_px(radius_um=7.5, radius_px=30, mpp=0.25)
    with pytest.raises(MitokitError):
        radius_to_px(radius_um=7.5, mpp=0)
    with pytest.raises(MitokitError):
        radius_to_px(radius_px=-3)


# ---------------------------------------------------------------------------------------------
# evaluate_points


def test_zero_division_conventions():
    assert precision_recall_f1(0, 0, 0) == (1.0, 1.0, 1.0)
    assert precision_recall_f1(0, 0, 3) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(0, 2, 0) == (0.0, 0.0, 0.0)
    p, r, f = precision_recall_f1(2, 1, 3)
    assert (p, r, f) == pytest.approx((2 / 3, 2 / 5, 4 / 8))


@pytest.fixture()
def two_images():
    # Image A: truth at (0,0), (100,0), (200,0); predictions hit the first two, one stray FP.
    # Image B: truth at (0,0); predictions: one hit, two FPs.
    truth = _set(
        [("A", 0, 0), ("A", 100, 0), ("A", 200, 0), ("B", 0, 0)],
        images=("A", "B"),
    )
    pred = _set(
        [
            ("A", 3, 4, MITOSIS, 0.9),  # hits A (0,0) at 5 px
            ("A", 100, 8, MITOSIS, 0.6),  # hits A (100,0) at 8 px
            ("A", 400, 400, MITOSIS, 0.3),  # FP
            ("B", 1, 1, MITOSIS, 0.8),  # hit
            ("B", 50, 50, MITOSIS, 0.7),  # FP
            ("B", 80, 80, MITOSIS, 0.2),  # FP
        ]
    )
    return pred, truth


def test_pooled_and_per_image_by_hand(two_images):
    pred, truth = two_images
    res = evaluate_points(pred, truth, radius_px=10)
    a, b = res.per_image
    assert (a.image, a.tp, a.fp, a.fn) == ("A", 2, 1, 1)
    assert (b.image, b.tp, b.fp, b.fn) == ("B", 1, 2, 0)
    assert a.f1 == pytest.approx(4 / 6)
    assert b.f1 == pytest.approx(2 / 4)
    # Micro: 3 TP, 3 FP, 1 FN -> P = 1/2, R = 3/4, F1 = 6/10.
    assert (res.tp, res.fp, res.fn) == (3, 3, 1)
    assert res.precision == pytest.approx(0.5)
    assert res.recall == pytest.approx(0.75)
    assert res.f1 == pytest.approx(0.6)
    # Macro: mean of 2/3 and 1/2, which differs from the micro F1.
    assert res.macro_f1 == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert {(m.pred_id, m.truth_id) for m in res.matches} == {
        ("a0", "a0"),
        ("a1", "a1"),
        ("a3", "a3"),
    }
    assert [m.distance_px for m in res.matches if m.image == "A"] == pytest.approx([5.0, 8.0])


def test_threshold_filters_predictions(two_images):
    pred, truth = two_images
    res = evaluate_points(pred, truth, radius_px=10, threshold=0.65)
    # Kept: A 0.9 (hit), B 0.8 (hit), B 0.7 (FP). A (100,0) and (200,0) are missed.
    assert (res.tp, res.fp, res.fn) == (2, 1, 2)
    assert res.threshold == 0.65
    at_score = evaluate_points(pred, truth, radius_px=10, threshold=0.6)
    assert at_score.tp == 3  # score == threshold is kept


def test_predictions_without_score_are_always_kept():
    truth = _set([("A", 0, 0)])
    pred = _set([("A", 0, 0, MITOSIS, None), ("A", 50, 0, MITOSIS, 0.1)])
    res = evaluate_points(pred, truth, radius_px=5, threshold=0.5)
    assert (res.tp, res.fp, res.fn) == (1, 0, 0)


def test_images_on_one_side_only():
    truth = _set([("A", 0, 0)], images=("A", "empty"))
    pred = _set([("A", 0, 0), ("extra", 5, 5), ("extra", 50, 50)])
    res = evaluate_points(pred, truth, radius_px=5)
    by_image = {r.image: r for r in res.per_image}
    assert [r.image for r in res.per_image] == ["A", "empty", "extra"]
    assert (by_image["extra"].tp, by_image["extra"].fp, by_image["extra"].fn) == (0, 2, 0)
    # No truth and no predictions: a perfect image by convention, but not part of macro F1.
    assert by_image["empty"].f1 == 1.0
    assert (res.tp, res.fp, res.fn) == (1, 2, 0)
    assert [r.image for r in res.macro_images] == ["A", "extra"]
    assert res.macro_f1 == pytest.approx((1.0 + 0.0) / 2)


def test_truth_image_without_predictions_is_all_fn():
    truth = _set([("A", 0, 0), ("B", 0, 0), ("B", 100, 100)])
    pred = _set([("A", 1, 0)])
    res = evaluate_points(pred, truth, radius_px=5)
    b = res.per_image[1]
    assert (b.image, b.tp, b.fp, b.fn, b.precision, b.recall, b.f1) == ("B", 0, 0, 2, 0, 0, 0)


def test_imposters_are_not_positives():
    truth = _set([("A", 0, 0), ("A", 100, 0, NON_MITOSIS)])
    pred = _set([("A", 0, 0), ("A", 100, 1)])  # the second sits on the imposter
    res = evaluate_points(pred, truth, radius_px=5)
    assert (res.tp, res.fp, res.fn) == (1, 1, 0)
    # Evaluating the other class turns it around.
    res_nm = evaluate_points(
        _set([("A", 100, 1, "imposter")]), truth, radius_px=5, label=NON_MITOSIS
    )
    assert (res_nm.tp, res_nm.fp, res_nm.fn) == (1, 0, 0)


def test_predictions_of_another_class_are_ignored():
    truth = _set([("A", 0, 0)])
    pred = _set([("A", 0, 0, NON_MITOSIS), ("A", 50, 50, NON_MITOSIS)])
    res = evaluate_points(pred, truth, radius_px=5)
    assert (res.tp, res.fp, res.fn) == (0, 0, 1)


def test_box_predictions_use_their_centre():
    truth = _set([("A", 10, 10)])
    pred = AnnotationSet([Annotation(id="b", image="A", box=(0.0, 0.0, 20.0, 22.0))])
    res = evaluate_points(pred, truth, radius_px=1.0)
    assert res.tp == 1


def test_to_dict_is_json(two_images):
    pred, truth = two_images
    d = evaluate_points(pred, truth, radius_px=10).to_dict(include_matches=True)
    text = json.dumps(d)
    back = json.loads(text)
    for key in ("precision", "recall", "f1", "tp", "fp", "fn", "macro_f1", "radius_px"):
        assert key in back
    assert len(back["per_image"]) == 2
    assert len(back["matches"]) == 3


# ---------------------------------------------------------------------------------------------
# sweep_thresholds


def test_sweep_finds_the_best_threshold(two_images):
    pred, truth = two_images
    sweep = sweep_thresholds(pred, truth, radius_px=10)
    thresholds = [r.threshold for r in sweep.rows]
    assert thresholds == [0.2, 0.3, 0.6, 0.7, 0.8, 0.9]
    # By hand (TP, FP, FN): 0.2 (3,3,1) F1 .6; 0.3 (3,2,1) 6/9; 0.6 (3,1,1) 6/8;
    # 0.7 (2,1,2) 4/7; 0.8 (2,0,2) 4/6; 0.9 (1,0,3) 2/5.
    counts = [(r.tp, r.fp, r.fn) for r in sweep.rows]
    assert counts == [(3, 3, 1), (3, 2, 1), (3, 1, 1), (2, 1, 2), (2, 0, 2), (1, 0, 3)]
    assert sweep.best_threshold == 0.6
    assert sweep.best_f1 == pytest.approx(0.75)
    d = json.loads(json.dumps(sweep.to_dict()))
    assert d["best_threshold"] == 0.6
    assert len(d["rows"]) == 6


def test_sweep_rematches_per_threshold():
    # At a low threshold the optimal matching pairs P_low with T0 and P_high with T1; once
    # P_low is dropped, P_high must still be matched (to either) -- counts follow the re-match.
    truth = _set([("A", 1, 0), ("A", 19.5, 0)])
    pred = _set([("A", 10, 0, MITOSIS, 0.9), ("A", -8.5, 0, MITOSIS, 0.1)])
    sweep = sweep_thresholds(pred, truth, radius_px=10, thresholds=[0.0, 0.5, 1.0])
    assert [(r.tp, r.fp, r.fn) for r in sweep.rows] == [(2, 0, 0), (1, 0, 1), (0, 0, 2)]


def test_sweep_agrees_with_evaluate_points_at_every_threshold():
    rng = np.random.default_rng(1)
    rows_t, rows_p = [], []
    for image in ("A", "B", "C"):
        for xy in rng.uniform(0, 200, size=(15, 2)):
            rows_t.append((image, *xy))
        for xy in rng.uniform(0, 200, size=(20, 2)):
            rows_p.append((image, *xy, MITOSIS, float(rng.uniform())))
    truth, pred = _set(rows_t), _set(rows_p)
    sweep = sweep_thresholds(pred, truth, radius_px=15)
    assert len(sweep.rows) == 60
    for row in sweep.rows[::7]:
        res = evaluate_points(pred, truth, radius_px=15, threshold=row.threshold)
        assert (row.tp, row.fp, row.fn) == (res.tp, res.fp, res.fn)


def test_sweep_without_scores_needs_thresholds():
    truth = _set([("A", 0, 0)])
    pred = _set([("A", 0, 0)])
    with pytest.raises(MitokitError, match="no prediction has a score"):
        sweep_thresholds(pred, truth, radius_px=5)
    sweep = sweep_thresholds(pred, truth, radius_px=5, thresholds=[0.5])
    assert sweep.best_f1 == 1.0


def test_default_grid():
    assert default_thresholds([0.5, 0.1, 0.5]).tolist() == [0.1, 0.5]
    many = np.linspace(0, 1, 1000)
    grid = default_thresholds(many)
    assert len(grid) == 101
    assert grid[0] == 0.0 and grid[-1] == 1.0
    assert np.isin(grid, many).all()  # observed scores, not interpolated values


def test_unknown_label_is_an_error_listing_the_classes():
    truth = _set([("A", 0, 0), ("A", 50, 50, NON_MITOSIS)])
    pred = _set([("A", 1, 0, MITOSIS, 0.9)])
    for call in (evaluate_points, sweep_thresholds):
        with pytest.raises(MitokitError) as err:
            call(pred, truth, radius_px=5, label="mitsis")
        assert str(err.value) == (
            "no object has the class 'mitsis': the truth holds mitosis (1), non_mitosis (1); "
            "the predictions hold mitosis (1)"
        )


def test_a_known_or_present_label_is_evaluated():
    # mitosis absent from both sides (a region without mitoses, nothing predicted): vacuous 1.0
    truth = _set([("A", 50, 50, NON_MITOSIS)])
    res = evaluate_points(_set([]), truth, radius_px=5)
    assert (res.tp, res.fp, res.fn, res.f1) == (0, 0, 0, 1.0)
    # a class of its own that only the predictions carry: every such prediction is an FP
    res = evaluate_points(_set([("A", 0, 0, "tumour")]), truth, radius_px=5, label="tumour")
    assert (res.tp, res.fp, res.fn) == (0, 1, 0)


def test_macro_f1_leaves_out_images_with_nothing():
    truth = _set([("A", 0, 0), ("B", 0, 0)], images=("A", "B", "empty1", "empty2"))
    pred = _set([("A", 0, 0), ("B", 90, 90)])
    res = evaluate_points(pred, truth, radius_px=5)
    # A: F1 1, B: F1 0; the two empty images would have made the mean 0.75.
    assert res.macro_f1 == pytest.approx(0.5)
    assert res.to_dict()["macro_images"] == 2 and res.to_dict()["n_images"] == 4
    # nothing anywhere: the pooled convention (1.0)
    assert evaluate_points(_set([]), _set([], images=("A",)), radius_px=5).macro_f1 == 1.0

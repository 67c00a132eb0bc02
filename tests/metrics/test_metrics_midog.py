"""The MIDOG matching rule against the official scorer, evalutils' ``score_detection``.

``matching="midog"`` must give the counts of evalutils 0.4.2 (the scorer of the MIDOG challenges)
on every input, ties and boundary included; the optimal rule must never find fewer true positives
and must find more on some crowded sets.
"""

from __future__ import annotations

import numpy as np
import pytest
from evalutils.scorers import score_detection

from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.metrics.detection import evaluate_points, match_points, sweep_thresholds
from mitokit.types import MITOSIS

RADII = (3.0, 5.0, 8.0, 10.0, 12.5)


def _reference(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of evalutils on the points as MIDOG passes them: lists of tuples."""
    score = score_detection(
        ground_truth=[tuple(p) for p in truth],
        predictions=[tuple(p) for p in pred],
        radius=radius,
    )
    return score.true_positives, score.false_positives, score.false_negatives


def _counts(pred: np.ndarray, truth: np.ndarray, radius: float, matching: str):
    tp = len(match_points(pred, truth, radius_px=radius, matching=matching).pairs)
    return tp, len(pred) - tp, len(truth) - tp


def _crowd(rng: np.random.Generator, n: int, centres: np.ndarray, integer: bool) -> np.ndarray:
    """Points around a few centres (so that several points compete for the same partner)."""
    if n == 0:
        return np.empty((0, 2))
    pts = centres[rng.integers(0, len(centres), n)] + rng.normal(0.0, 7.0, (n, 2))
    return np.round(pts) if integer else pts


def _random_sets(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for k in range(count):
        centres = rng.uniform(0.0, 100.0, (int(rng.integers(1, 4)), 2))
        integer = k % 2 == 0  # integer coordinates: exact ties in distance and on the boundary
        pred = _crowd(rng, int(rng.integers(0, 16)), centres, integer)
        truth = _crowd(rng, int(rng.integers(0, 16)), centres, integer)
        yield pred, truth, float(rng.choice(RADII))


def _has_tie(pred: np.ndarray, truth: np.ndarray, radius: float) -> bool:
    """Whether a truth point has two predictions at the same distance within the radius."""
    for t in truth:
        d = np.hypot(*(pred - t).T) if len(pred) else np.empty(0)
        d = d[d <= radius]
        if len(d) != len(np.unique(d)):
            return True
    return False


def test_hand_computed_case_where_the_rules_differ():
    # radius 5. T0 = (0, 0), T1 = (9, 0); P0 = (4, 0) reaches T0 (4) and T1 (5, on the boundary);
    # P1 = (-4.5, 0) reaches only T0 (4.5). MIDOG walks the truth in order: T0 claims its nearest,
    # P0; T1's only hit P0 is taken, so T1 is a FN and P1 a FP. The optimal rule pairs P1-T0 and
    # P0-T1.
    pred = np.array([[4.0, 0.0], [-4.5, 0.0]])
    truth = np.array([[0.0, 0.0], [9.0, 0.0]])
    midog = match_points(pred, truth, radius_px=5.0, matching="midog")
    assert midog.pairs.tolist() == [[0, 0]]
    assert midog.unmatched_pred.tolist() == [1] and midog.unmatched_truth.tolist() == [1]
    assert _reference(pred, truth, 5.0) == (1, 1, 1)
    optimal = match_points(pred, truth, radius_px=5.0)
    assert optimal.pairs.tolist() == [[0, 1], [1, 0]]
    # The MIDOG rule depends on the order of the truth: T1 first claims P0, then T0 takes P1.
    assert len(match_points(pred, truth[::-1], radius_px=5.0, matching="midog").pairs) == 2
    assert _reference(pred, truth[::-1], 5.0) == (2, 0, 0)


def test_midog_boundary_is_inclusive():
    assert _counts(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]]), 5.0, "midog") == (1, 0, 0)
    assert _reference(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]]), 5.0) == (1, 0, 0)
    assert _counts(np.array([[3.0, 4.01]]), np.array([[0.0, 0.0]]), 5.0, "midog") == (0, 1, 1)


def test_midog_empty_sides():
    empty = np.empty((0, 2))
    one = np.array([[1.0, 1.0]])
    assert _counts(empty, one, 5.0, "midog") == (0, 0, 1)
    assert _counts(one, empty, 5.0, "midog") == (0, 1, 0)
    assert _counts(empty, empty, 5.0, "midog") == (0, 0, 0)


def test_unknown_matching_rule_is_refused():
    with pytest.raises(ValueError, match="matching"):
        match_points([[0, 0]], [[0, 0]], radius_px=1, matching="greedy")


def test_midog_equals_evalutils_on_600_random_sets_and_optimal_is_never_worse():
    n_sets = better = ties = 0
    for pred, truth, radius in _random_sets(seed=2021, count=600):
        midog = _counts(pred, truth, radius, "midog")
        assert midog == _reference(pred, truth, radius), (pred.tolist(), truth.tolist(), radius)
        optimal = _counts(pred, truth, radius, "optimal")
        assert optimal[0] >= midog[0]
        better += optimal[0] > midog[0]
        ties += _has_tie(pred, truth, radius)
        n_sets += 1
    assert n_sets == 600
    assert better > 0  # the optimal rule finds more true positives on some crowded sets
    assert ties > 0  # equidistant predictions occurred, so the tie order was compared too


def _annotations(points_by_image, scores_by_image=None):
    anns = []
    for image, pts in points_by_image.items():
        scores = None if scores_by_image is None else scores_by_image[image]
        for k, (x, y) in enumerate(pts):
            score = None if scores is None else float(scores[k])
            anns.append(
                Annotation(id=f"{image}-{k}", image=image, point=(x, y), label=MITOSIS, score=score)
            )
    return AnnotationSet(anns, {i: ImageInfo(id=i) for i in points_by_image})


def test_evaluation_and_sweep_with_thresholds_equal_evalutils_per_image():
    """Pooled counts over several images, at score thresholds, as MIDOG's evaluation sums them."""
    rng = np.random.default_rng(22)
    compared = 0
    for _ in range(60):
        images = [f"img{i}" for i in range(int(rng.integers(1, 4)))]
        pred_pts, truth_pts, scores = {}, {}, {}
        for image in images:
            centres = rng.uniform(0.0, 80.0, (2, 2))
            pred_pts[image] = _crowd(rng, int(rng.integers(0, 14)), centres, integer=True)
            truth_pts[image] = _crowd(rng, int(rng.integers(0, 14)), centres, integer=True)
            scores[image] = np.round(rng.uniform(0, 1, len(pred_pts[image])), 1)
        pred = _annotations(pred_pts, scores)
        truth = _annotations(truth_pts)
        radius = float(rng.choice(RADII))
        thresholds = [0.0, 0.3, 0.5, 0.75, 1.0]
        sweep = sweep_thresholds(pred, truth, radius_px=radius, thresholds=thresholds,
                                 matching="midog")  # fmt: skip
        for t, row in zip(thresholds, sweep.rows, strict=True):
            expected = np.zeros(3, dtype=int)
            for image in images:
                kept = pred_pts[image][scores[image] >= t]
                expected += _reference(kept, truth_pts[image], radius)
            res = evaluate_points(pred, truth, radius_px=radius, threshold=t, matching="midog")
            assert (res.tp, res.fp, res.fn) == tuple(expected)
            assert (row.tp, row.fp, row.fn) == tuple(expected)
            assert res.matching == "midog" and sweep.matching == "midog"
            optimal = evaluate_points(pred, truth, radius_px=radius, threshold=t)
            assert optimal.tp >= res.tp
            compared += 1
    assert compared == 300

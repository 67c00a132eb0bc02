"""Vote aggregation, agreement and tile coarsening against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.labels import (
    aggregate,
    aggregate_votes,
    agreement,
    box_fraction_inside,
    coarsen_to_tiles,
    plot_score_distribution,
    summarize,
    tile_scores,
)


def votes(*pairs):
    return tuple(Vote(r, v) for r, v in pairs)


def test_pooled_repeats_weigh_each_rating():
    # Rater A said "mitosis" three times, rater B "no" once.
    v = votes(("A", 1), ("A", 1), ("A", 1), ("B", 0))
    pooled = aggregate_votes(v)
    assert pooled.score == pytest.approx(0.75)
    assert pooled.majority == 1
    assert pooled.agreement == pytest.approx(0.75)
    assert (pooled.n_votes, pooled.n_raters) == (4, 2)
    per_rater = aggregate_votes(v, repeats="rater_mean", tie="none")
    assert per_rater.score == pytest.approx(0.5)
    assert per_rater.majority is None


def test_half_votes_and_ties():
    s = aggregate_votes(votes(("A", 0.5), ("A", 1.0), ("B", 0.5)))
    assert s.score == pytest.approx(2 / 3)
    assert s.majority == 1
    tie = votes(("A", 0.0), ("B", 1.0))
    assert aggregate_votes(tie).majority == 0
    assert aggregate_votes(tie, tie="positive").majority == 1
    empty = aggregate_votes(())
    assert math.isnan(empty.score) and empty.majority is None


def _rated_set():
    # obj1: both raters yes; obj2: both no; obj3: split.
    anns = [
        Annotation("1", "img", point=(1, 1), votes=votes(("A", 1), ("B", 1))),
        Annotation("2", "img", point=(2, 2), votes=votes(("A", 0), ("B", 0))),
        Annotation("3", "img", point=(3, 3), votes=votes(("A", 1), ("B", 0))),
    ]
    return AnnotationSet(anns, images={"img": ImageInfo("img"), "empty": ImageInfo("empty")})


def test_fleiss_and_krippendorff_hand_computed():
    ag = agreement(_rated_set())
    # P_i = 1, 1, 0 -> Pbar = 2/3; p_0 = p_1 = 1/2 -> Pe = 1/2; kappa = (2/3 - 1/2) / (1/2)
    assert ag.fleiss_kappa == pytest.approx(1 / 3)
    assert ag.fleiss_objects == 3 and ag.ratings_per_object == 2
    # Coincidences o00 = o11 = 2, o01 = o10 = 1, n = 6: Do = 2/6, De = 2*3*3/(6*5) -> 4/9
    assert ag.krippendorff_alpha == pytest.approx(4 / 9)
    assert ag.unanimous_fraction == pytest.approx(2 / 3)


def test_alpha_uses_objects_with_missing_ratings_kappa_the_modal_count():
    sets = [
        votes(("A", 1), ("B", 1), ("C", 1)),
        votes(("A", 0), ("B", 0), ("C", 0)),
        votes(("A", 1), ("B", 0), ("C", 1)),
        votes(("A", 1), ("C", 1)),  # B missing
        votes(
            ("A", 0),
        ),  # a single rating cannot be paired
    ]
    ag = agreement(sets)
    assert ag.fleiss_objects == 3 and ag.ratings_per_object == 3
    assert ag.alpha_objects == 4
    assert -1.0 <= ag.krippendorff_alpha <= 1.0
    # Perfect agreement gives alpha = kappa = 1.
    perfect = agreement([votes(("A", 1), ("B", 1)), votes(("A", 0), ("B", 0))])
    assert perfect.fleiss_kappa == pytest.approx(1.0)
    assert perfect.krippendorff_alpha == pytest.approx(1.0)


def test_agreement_without_variation_is_nan_not_an_error():
    ag = agreement([votes(("A", 1), ("B", 1))])
    assert math.isnan(ag.fleiss_kappa) and math.isnan(ag.krippendorff_alpha)
    assert ag.to_dict()["fleiss_kappa"] is None


def test_aggregate_table():
    table = aggregate(_rated_set())
    assert list(table["score"]) == pytest.approx([1.0, 0.0, 0.5])
    assert list(table["majority"]) == [1, 0, 0]
    assert list(table["n_raters"]) == [2, 2, 2]


def test_summary_counts_unannotated_images_and_votes():
    s = summarize(_rated_set(), bins=2)
    assert s["images"] == 2 and s["annotated_images"] == 1
    assert s["classes"] == {"mitosis": 3}
    assert s["raters"] == 2
    assert s["votes_per_object"] == {"2": 3}
    assert s["score_histogram"]["counts"] == [1, 2]  # 0.0 | 0.5, 1.0
    assert s["agreement"]["fleiss_kappa"] == pytest.approx(1 / 3)


def test_box_fraction_and_tile_score_hand_computed():
    tiles = np.array([[0, 0, 100, 100], [100, 0, 200, 100]])
    boxes = np.array([[90, 0, 110, 10], [10, 10, 20, 20]])
    frac = box_fraction_inside(boxes, tiles)
    assert frac == pytest.approx(np.array([[0.5, 1.0], [0.5, 0.0]]))
    s = tile_scores(boxes, [0.5, 1.0], tiles)
    assert s == pytest.approx([0.5 * 0.5 + 1.0, 0.5 * 0.5])


def test_coarsen_to_tiles_points_and_classes():
    anns = AnnotationSet(
        [
            Annotation("a", "s1", point=(50, 50), agreement=0.4),
            Annotation("b", "s1", box=(0, 0, 10, 10), label="non_mitosis"),
            Annotation("c", "s2", point=(100, 50)),  # on the border of two tiles
        ]
    )
    tiles = [("s1", [0, 0, 100, 100]), ("s1", [100, 0, 200, 100]), ("s2", [0, 0, 100, 100])]
    scores, classes = coarsen_to_tiles(anns, tiles, point_box_size=20)
    assert scores == pytest.approx([0.4, 0.0, 0.5])
    assert classes.tolist() == [1, 0, 1]


def test_score_distribution_figure(tmp_path):
    out = tmp_path / "fig.png"
    s = _rated_set()
    s.annotations.append(
        Annotation(
            "4",
            "img",
            point=(4, 4),
            votes=votes(
                ("A", 1),
            ),
        )
    )
    drawn = plot_score_distribution(s, out, bins=4)
    assert sorted(drawn) == [1, 2]
    assert drawn[2].sum() == 3 and drawn[1].sum() == 1
    with Image.open(out) as im:
        assert im.size[0] > 300
    with pytest.raises(ValueError, match="no object carries votes"):
        plot_score_distribution(AnnotationSet([Annotation("x", "i", point=(0, 0))]), out)

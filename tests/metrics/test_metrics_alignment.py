"""Which predicted image is which true image: :func:`align_images`."""

from __future__ import annotations

import pytest

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.metrics import align_images, evaluate_points
from mitokit.metrics.alignment import format_ids
from mitokit.types import MITOSIS


def _set(images, listed=()):
    anns = [
        Annotation(id=f"{image}-{k}", image=image, point=(10.0 * k, 0.0), label=MITOSIS)
        for image in images
        for k in range(2)
    ]
    return AnnotationSet(anns, {i: ImageInfo(id=i, mpp=0.25) for i in listed})


def test_same_ids_are_left_alone():
    truth, pred = _set(["A", "B"]), _set(["A", "B"])
    aligned = align_images(pred, truth)
    assert aligned.pred is pred
    assert aligned.notes == () and aligned.renamed == {}
    assert aligned.only_in_pred == () and aligned.only_in_truth == ()


def test_one_image_each_is_matched_with_a_note():
    truth, pred = _set(["truth"]), _set(["pred"], listed=["pred"])
    aligned = align_images(pred, truth)
    assert aligned.renamed == {"pred": "truth"}
    assert aligned.notes == ("pred image 'pred' matched to truth image 'truth' (one image each)",)
    assert {a.image for a in aligned.pred} == {"truth"}
    assert list(aligned.pred.images) == ["truth"]
    assert aligned.pred.images["truth"].id == "truth"
    assert aligned.pred.images["truth"].mpp == 0.25  # the rest of the image info is kept
    # Scored after alignment, the two points of each side match (F1 was 0 before).
    assert evaluate_points(aligned.pred, truth, radius_px=1).f1 == 1.0
    assert evaluate_points(pred, truth, radius_px=1).f1 == 0.0


def test_file_stems_are_matched_when_unambiguous():
    truth = _set(["case1", "case2", "case3"])
    pred = _set(["dir/case1.svs", "case2.tif", "case3"])
    aligned = align_images(pred, truth)
    assert aligned.renamed == {"dir/case1.svs": "case1", "case2.tif": "case2"}
    assert aligned.notes == (
        "2 pred image(s) matched to the truth image of the same file stem: "
        "'dir/case1.svs' -> 'case1', 'case2.tif' -> 'case2'",
    )
    assert evaluate_points(aligned.pred, truth, radius_px=1).f1 == 1.0


def test_two_predictions_for_one_stem_are_not_merged():
    truth = _set(["a", "b"])
    pred = _set(["a.svs", "a.tif", "b"])
    aligned = align_images(pred, truth)
    assert aligned.renamed == {}
    assert aligned.only_in_pred == ("a.svs", "a.tif")
    assert aligned.only_in_truth == ("a",)


def test_a_stem_already_taken_is_not_renamed_onto():
    truth = _set(["a", "b"])
    aligned = align_images(_set(["a", "a.svs", "b"]), truth)
    assert aligned.renamed == {}
    assert aligned.only_in_pred == ("a.svs",)


def test_images_on_one_side_are_listed():
    truth = _set(["A", "B", "C"])
    pred = _set(["A", "D"])
    aligned = align_images(pred, truth)
    assert aligned.only_in_truth == ("B", "C")
    assert aligned.only_in_pred == ("D",)
    assert aligned.notes == (
        "2 truth image(s) absent from the predictions ('B', 'C'): their true objects count as "
        "false negatives",
        "1 pred image(s) absent from the truth ('D'): their predictions count as false positives",
    )


def test_no_common_image_is_an_error_naming_both_sides():
    truth = _set([f"t{i}" for i in range(7)])
    pred = _set(["p0", "p1"])
    with pytest.raises(MitokitError) as err:
        align_images(pred, truth)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "no predicted image matches a truth image: the predictions name 2 image(s) ('p0', 'p1'), "
        "the truth 7 ('t0', 't1', 't2', 't3' and 3 more)"
    )


def test_predictions_naming_no_image_are_all_misses():
    truth = _set(["A"])
    aligned = align_images(AnnotationSet([], {}), truth)
    assert aligned.only_in_truth == ("A",)
    assert aligned.notes == (
        "the predictions name no image: every true object counts as a false negative",
    )


def test_format_ids():
    assert format_ids([]) == "none"
    assert format_ids(["a"]) == "'a'"
    assert format_ids("abcdef", shown=2) == "'a', 'b' and 4 more"

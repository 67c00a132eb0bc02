"""Real label files as published: border-crossing boxes, uneven votes, odd ids, empty files.

Each case was seen on a public data set or a common mistake; before, it was refused as a whole
or read silently wrong.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, adjustment_notes, read_annotations
from mitokit.io.formats import BORDER_TOLERANCE_PX, strict_reading
from mitokit.labels import agreement


def midogpp_like(tmp_path, *, seed=0, n_images=3, per_image=40):
    """A COCO file shaped like MIDOG++: 50 px xyxy boxes, some crossing the border, per-rater
    ``labels`` (category ids) with a third rater asked only where the first two disagree."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    crossing = 0
    for i in range(n_images):
        w, h = 2000, 1500
        images.append({"id": i + 1, "file_name": f"{i:03d}.tiff", "width": w, "height": h})
        for _ in range(per_image):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            if rng.random() < 0.2:  # a figure at the border: its centre within 25 px of it
                x = float(rng.choice([rng.uniform(-20, 0), rng.uniform(w, w + 20)]))
            box = [x - 25, y - 25, x + 25, y + 25]
            crossing += box[0] < 0 or box[2] > w or box[1] < 0 or box[3] > h
            first = int(rng.integers(1, 3))
            second = first if rng.random() < 0.8 else 3 - first
            labels = [first, second] if first == second else [first, second, 1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "bbox": box,
                    "category_id": int(np.bincount(labels).argmax()),
                    "labels": labels,
                }
            )
    doc = {
        "info": {"description": "MIDOG++ like"},
        "images": images,
        "categories": [
            {"id": 1, "name": "mitotic figure"},
            {"id": 2, "name": "non-mitotic figure"},
        ],
        "annotations": anns,
    }
    path = tmp_path / "midogpp.json"
    path.write_text(json.dumps(doc))
    return path, doc, crossing


def test_boxes_crossing_the_border_are_clipped_counted_and_kept_at_their_centre(tmp_path):
    path, doc, crossing = midogpp_like(tmp_path)
    assert crossing > 10
    s = read_annotations(path)
    assert len(s) == len(doc["annotations"])
    assert s.adjustments["clipped_boxes"] == crossing
    notes = adjustment_notes(s)
    assert any(f"{crossing} box(es) crossed the image border and were clipped" in n for n in notes)
    by_id = {a.id: a for a in s}
    for raw in doc["annotations"]:
        ann = by_id[str(raw["id"])]
        x1, y1, x2, y2 = raw["bbox"]
        info = s.images[ann.image]
        assert ann.box == (max(x1, 0), max(y1, 0), min(x2, info.width), min(y2, info.height))
        # evaluation by centre sees the published centre, not the clipped box's
        assert ann.center == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2))
    with pytest.raises(MitokitError, match="crosses the image border; refused"):
        read_annotations(path, strict=True)
    with strict_reading(), pytest.raises(MitokitError, match=r"--strict"):
        read_annotations(path)


def test_cli_reports_clipping_on_one_line_and_strict_refuses(tmp_path):
    path, _, crossing = midogpp_like(tmp_path)
    result = CliRunner().invoke(cli, ["labels", "summary", str(path)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "clipped" in line]
    assert notes == [f"mitokit: note: {path}: {crossing} box(es) crossed the image border and "
                     "were clipped"]  # fmt: skip
    strict = CliRunner().invoke(cli, ["labels", "summary", "--strict", str(path)])
    assert strict.exit_code == 2 and "Traceback" not in strict.output
    assert strict.stderr.count("\n") == 1 and "refused (--strict)" in strict.stderr
    out = tmp_path / "out.geojson"
    conv = CliRunner().invoke(cli, ["labels", "convert", "--strict", str(path), str(out)])
    assert conv.exit_code == 2 and not out.exists()


def test_per_rater_coco_labels_become_votes_and_agreement_is_honest(tmp_path):
    path, doc, _ = midogpp_like(tmp_path, seed=1)
    s = read_annotations(path)
    by_id = {a.id: a for a in s}
    for raw in doc["annotations"]:
        votes = by_id[str(raw["id"])].votes
        assert [v.value for v in votes] == [1.0 if c == 1 else 0.0 for c in raw["labels"]]
        assert [v.rater for v in votes] == [f"rater{k + 1}" for k in range(len(raw["labels"]))]
    ag = agreement(s)
    two = sum(len(r["labels"]) == 2 for r in doc["annotations"])
    three = len(doc["annotations"]) - two
    assert ag.ratings_vary and ag.rated_objects == two + three
    # the two-vote objects agree by construction: kappa 1 over them, and not the data set's
    assert ag.fleiss_kappa_subset == pytest.approx(1.0) and ag.fleiss_objects == two
    assert np.isnan(ag.fleiss_kappa)
    assert ag.alpha_objects == two + three and ag.krippendorff_alpha < 0.95
    text = ag.describe()
    assert "not the data set's agreement" in text and f"{two} of {two + three}" in text
    result = CliRunner().invoke(cli, ["labels", "summary", "--json", str(path)])
    data = json.loads(result.stdout)["agreement"]
    assert data["fleiss_kappa"] is None and data["fleiss_kappa_subset"] == pytest.approx(1.0)
    plain = CliRunner().invoke(cli, ["labels", "summary", str(path)]).stdout
    line = next(x for x in plain.splitlines() if x.startswith("agreement:"))
    assert line.startswith("agreement:  Krippendorff alpha") and "Fleiss kappa n/a" in line


def test_equal_votes_per_object_keep_fleiss_kappa(tmp_path):
    path, doc, _ = midogpp_like(tmp_path, seed=2)
    for raw in doc["annotations"]:
        raw["labels"] = (raw["labels"] + [1])[:3]
    path.write_text(json.dumps(doc))
    ag = agreement(read_annotations(path))
    assert not ag.ratings_vary and ag.fleiss_kappa == ag.fleiss_kappa_subset
    assert ag.fleiss_objects == len(doc["annotations"])


def points_file(path, rows, header="x,y,score"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_point_just_outside_is_kept_further_is_an_error(tmp_path):
    s = read_annotations(points_file(tmp_path / "p.csv", [(-0.2, 10, 0.9), (5, 5, 0.5)]))
    assert [a.point for a in s] == [(-0.2, 10.0), (5.0, 5.0)]
    assert s.adjustments == {"border_points": 1}
    with pytest.raises(MitokitError, match="outside the image.*refused"):
        read_annotations(tmp_path / "p.csv", strict=True)
    far = points_file(tmp_path / "q.csv", [(-BORDER_TOLERANCE_PX - 0.5, 10, 0.9)])
    with pytest.raises(MitokitError, match="more than 25 px outside"):
        read_annotations(far)


@pytest.mark.parametrize(
    "bbox, words",
    [
        ([2100, 10, 2150, 60], "wholly outside"),  # right of a 2000 px image
        ([-80, 10, -30, 60], "wholly outside"),
        ([-50, 10, 0, 60], "wholly outside"),  # touches the border only
    ],
)
def test_objects_wholly_outside_stay_errors(tmp_path, bbox, words):
    path, doc, _ = midogpp_like(tmp_path)
    doc["annotations"][0]["bbox"] = bbox
    path.write_text(json.dumps(doc))
    with pytest.raises(MitokitError, match=words):
        read_annotations(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_values_stay_errors(tmp_path, value):
    path, doc, _ = midogpp_like(tmp_path)
    doc["annotations"][0]["bbox"][0] = float(value)  # written as NaN / Infinity, as JSON tools do
    path.write_text(json.dumps(doc))
    with pytest.raises(MitokitError, match="not finite"):
        read_annotations(path)
    points = tmp_path / "p.csv"
    points.write_text(f"x,y\n{value},3\n")
    with pytest.raises(MitokitError, match="not finite"):
        read_annotations(points)


def test_csv_with_an_image_column_keeps_images_apart(tmp_path):
    path = points_file(
        tmp_path / "pred.csv",
        [("img1", 10, 20, 0.9), ("img2", 30, 40, 0.5), ("img1", 50, 60, 0.7)],
        header="image,x,y,score",
    )
    s = read_annotations(path)
    assert list(s.images) == ["img1", "img2"]
    assert [(a.id, a.image, a.point, a.score) for a in s] == [
        ("img1_1", "img1", (10.0, 20.0), 0.9),
        ("img2_1", "img2", (30.0, 40.0), 0.5),
        ("img1_2", "img1", (50.0, 60.0), 0.7),
    ]
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(cli, ["labels", "convert", str(path), str(out)])
    assert result.exit_code == 0, result.output
    back = read_annotations(out)
    assert sorted({a.image for a in back}) == ["img1", "img2"] and len(back) == 3
    spaced = points_file(tmp_path / "s.csv", [("slide 1.svs", 1, 2)], header="slide,x,y")
    assert [a.image for a in read_annotations(spaced)] == ["slide 1.svs"]
    with pytest.raises(MitokitError, match="image column"):
        read_annotations(path, image="other")


def test_duplicate_ids_are_refused(tmp_path):
    path, doc, _ = midogpp_like(tmp_path)
    doc["annotations"][5]["id"] = doc["annotations"][2]["id"]
    path.write_text(json.dumps(doc))
    with pytest.raises(MitokitError, match=r"id '3' appears twice \(objects #3 and #6\)"):
        read_annotations(path)
    features = [
        {"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [5, 6]}},
    ]
    gj = tmp_path / "dup.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    result = CliRunner().invoke(cli, ["labels", "summary", str(gj)])
    assert result.exit_code == 2 and "appears twice" in result.stderr


def test_multipolygon_with_separate_parts_is_one_object_per_part(tmp_path):
    parts = [
        [[[10, 10], [20, 10], [20, 20], [10, 10]]],
        [[[300, 300], [310, 300], [310, 320], [300, 300]]],
    ]
    feature = {
        "type": "Feature",
        "id": "m",
        "geometry": {"type": "MultiPolygon", "coordinates": parts},
        "properties": {"classification": {"name": "Mitosis"}},
    }
    single = {**feature, "id": "s", "geometry": {"type": "MultiPolygon", "coordinates": parts[:1]}}
    path = tmp_path / "mp.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature, single]}))
    s = read_annotations(path)
    assert [(a.id, a.box) for a in s] == [
        ("m_1", (10.0, 10.0, 20.0, 20.0)),
        ("m_2", (300.0, 300.0, 310.0, 320.0)),
        ("s", (10.0, 10.0, 20.0, 20.0)),
    ]
    assert s.adjustments == {"multipolygon_split": 1}
    with pytest.raises(MitokitError, match="multipolygon_split"):
        read_annotations(path, strict=True)


def test_box_with_x1_greater_than_x2_is_an_error(tmp_path):
    path, doc, _ = midogpp_like(tmp_path)
    doc["info"]["bbox_format"] = "xyxy"
    doc["annotations"][0]["bbox"] = [100, 10, 50, 60]
    path.write_text(json.dumps(doc))
    with pytest.raises(MitokitError, match="x2 < x1"):
        read_annotations(path)
    table = tmp_path / "t.csv"
    table.write_text(
        "id,image,x,y,x1,y1,x2,y2,label,agreement,score,votes\n1,a,,,100,10,50,60,mitosis,,,\n"
    )
    truth = points_file(tmp_path / "truth.csv", [(1, 2)], header="x,y")
    for args in (
        ["labels", "summary", str(table)],
        ["labels", "convert", str(table), str(tmp_path / "o.csv")],
        ["evaluate", "points", "--pred", str(table), "--truth", str(truth), "--radius-px", "5"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "x2 < x1" in result.stderr, result.output


@pytest.mark.parametrize("name", ["empty.json", "empty.csv", "empty.geojson", "empty.sqlite"])
def test_zero_byte_file_is_an_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(MitokitError, match=r"is empty \(0 bytes\)"):
        read_annotations(path)
    result = CliRunner().invoke(cli, ["labels", "summary", str(path)])
    assert result.exit_code == 2 and "0 bytes" in result.stderr


def test_empty_mitos_frame_file_is_still_a_frame_without_objects(tmp_path):
    path = tmp_path / "A01_00_mitosis.csv"
    path.write_bytes(b"")
    s = read_annotations(path)
    assert len(s) == 0


def test_prediction_just_outside_the_frame_is_scored_not_refused(tmp_path):
    truth = points_file(tmp_path / "frame.csv", [(1, 10), (50, 50)], header="x,y")
    pred = points_file(tmp_path / "frame_pred.csv", [(-0.2, 10, 0.9), (50, 51, 0.8)])
    args = ["evaluate", "points", "--pred", str(pred), "--truth", str(truth)]
    result = CliRunner().invoke(cli, [*args, "--radius-px", "5", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["tp"], body["fp"], body["fn"]) == (2, 0, 0)
    assert "lay just outside the image border" in result.stderr
    strict = CliRunner().invoke(cli, [*args, "--radius-px", "5", "--strict"])
    assert strict.exit_code == 2 and "refused (--strict)" in strict.stderr


@pytest.mark.parametrize("matching, tp", [("optimal", 2), ("midog", 1)])
def test_overlay_draws_the_pairs_of_the_chosen_matching(tmp_path, matching, tp):
    from mitokit.report.overlay import plot_point_overlay

    # T1 takes its nearest prediction P1 under MIDOG's rule, leaving T2 without one
    truth = [Annotation("t1", "i", point=(20.0, 20.0)), Annotation("t2", "i", point=(26.0, 20.0))]
    pred = [Annotation("p1", "i", point=(23.0, 20.0)), Annotation("p2", "i", point=(16.0, 20.0))]
    counts = plot_point_overlay(
        np.zeros((40, 40, 3), np.uint8),
        tmp_path / "o.png",
        pred=pred,
        truth=truth,
        radius_px=5,
        matching=matching,
    )
    assert counts == {"tp": tp, "fp": 2 - tp, "fn": 2 - tp}


def test_detect_folder_evaluation_skips_temporaries_of_a_killed_run(tmp_path):
    from mitokit.io.annotations import AnnotationSet, write_annotations

    out = tmp_path / "detect_out"
    done = AnnotationSet([Annotation("1", "s", point=(10.0, 10.0), score=0.9)], {})
    write_annotations(done, out / "s" / "detections.geojson")
    ghost = AnnotationSet([Annotation("1", "s", point=(40.0, 40.0), score=0.9)], {})
    write_annotations(ghost, out / ".s.abcd1234.mitokit.tmp" / "detections.geojson")
    truth = points_file(tmp_path / "s.csv", [(10, 10)], header="x,y")
    args = ["evaluate", "points", "--pred", str(out), "--truth", str(truth), "--radius-px", "5"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["tp"], body["fp"], body["fn"]) == (1, 0, 0)


def _set(points, *, size=(100, 80)):
    from mitokit.io.annotations import AnnotationSet, ImageInfo

    image = ImageInfo("a", width=size[0], height=size[1]) if size else ImageInfo("a")
    anns = [Annotation(id=f"p{k}", image="a", point=p) for k, p in enumerate(points)]
    return AnnotationSet(anns, {"a": image}, source="labels.csv")


def test_check_inside_takes_the_readers_border_tolerance():
    near = _set([(-0.5, 10), (100 + BORDER_TOLERANCE_PX, 40), (50, 40)])
    near.check_inside()  # within the tolerance, as reading keeps them
    with pytest.raises(MitokitError, match=r"labels\.csv: annotation p0 .*refused \(--strict\)"):
        near.check_inside(strict=True)
    far = _set([(50, 80 + BORDER_TOLERANCE_PX + 0.5)])
    with pytest.raises(MitokitError, match=r"^x\.csv: .*of size 100x80; more than 25 px outside"):
        far.check_inside("x.csv")
    with pytest.raises(MitokitError, match="more than 25 px outside"):
        _set([(-30, 5)], size=None).check_inside()  # below 0 counts where the size is unknown
    _set([(1e6, 5)], size=None).check_inside()
    assert [a.point for a in near] == [(-0.5, 10.0), (125.0, 40.0), (50.0, 40.0)]  # unchanged


def test_check_inside_agrees_with_reading_on_random_points():
    from mitokit.io.formats._validate import validate

    rng = np.random.default_rng(0)
    for _ in range(200):
        points = [tuple(map(float, p)) for p in rng.uniform(-40, 140, (3, 2))]
        for strict in (False, True):
            try:
                validate(_set(points), "labels.csv", strict=strict)
                read_error = None
            except MitokitError as err:
                read_error = str(err)
            try:
                _set(points).check_inside(strict=strict)
                check_error = None
            except MitokitError as err:
                check_error = str(err)
            assert check_error == read_error

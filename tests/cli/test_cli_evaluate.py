"""``mitokit evaluate points`` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import mitokit.io.annotations as annotations_module
from mitokit.cli import cli
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations
from mitokit.types import MITOSIS, NON_MITOSIS


def _set(rows, images=(), mpp=None):
    anns = [
        Annotation(id=f"a{k}", image=image, point=(float(x), float(y)), label=label, score=score)
        for k, (image, x, y, label, score) in enumerate(rows)
    ]
    return AnnotationSet(anns, {i: ImageInfo(id=i, mpp=mpp) for i in images})


TRUTH = _set(
    [
        ("A", 0, 0, MITOSIS, None),
        ("A", 100, 0, MITOSIS, None),
        ("A", 200, 0, MITOSIS, None),
        ("A", 300, 300, NON_MITOSIS, None),  # an imposter: not a positive
        ("B", 0, 0, MITOSIS, None),
    ],
    images=("A", "B"),
)
PRED = _set(
    [
        ("A", 3, 4, MITOSIS, 0.9),  # hit
        ("A", 100, 8, MITOSIS, 0.6),  # hit
        ("A", 301, 300, MITOSIS, 0.3),  # on the imposter: FP
        ("B", 1, 1, MITOSIS, 0.8),  # hit
        ("B", 50, 50, MITOSIS, 0.7),  # FP
        ("B", 80, 80, MITOSIS, 0.2),  # FP
    ]
)


@pytest.fixture()
def files(tmp_path):
    pred, truth = tmp_path / "pred.csv", tmp_path / "truth.csv"
    write_annotations(PRED, pred, format="csv")
    write_annotations(TRUTH, truth, format="csv")
    return str(pred), str(truth)


def _run(*args):
    return CliRunner().invoke(cli, ["evaluate", "points", *args])


def test_json_pooled_and_per_image(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-px", "10", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["tp"], out["fp"], out["fn"]) == (3, 3, 1)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.75)
    assert out["f1"] == pytest.approx(0.6)
    assert out["radius_px"] == 10.0
    assert out["macro_f1"] == pytest.approx((4 / 6 + 2 / 4) / 2)
    per_image = {r["image"]: r for r in out["per_image"]}
    assert (per_image["A"]["tp"], per_image["A"]["fp"], per_image["A"]["fn"]) == (2, 1, 1)
    assert (per_image["B"]["tp"], per_image["B"]["fp"], per_image["B"]["fn"]) == (1, 2, 0)
    assert "sweep" not in out


def test_json_threshold_and_sweep(files):
    pred, truth = files
    result = _run(
        "--pred", pred, "--truth", truth, "--mpp", "0.25", "--threshold", "0.65", "--sweep",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["radius_px"] == pytest.approx(30.0)  # 7.5 um at 0.25 um/px
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 2)
    sweep = out["sweep"]
    assert sweep["best_threshold"] == pytest.approx(0.6)
    assert sweep["best_f1"] == pytest.approx(0.75)
    assert len(sweep["rows"]) == 6


def test_plain_table(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-px", "10", "--sweep")
    assert result.exit_code == 0, result.output
    assert "pooled" in result.stdout
    assert "0.600" in result.stdout
    assert "best F1 0.750 at threshold 0.6" in result.stdout


def test_radius_options_are_mutually_exclusive(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-um", "7.5", "--radius-px", "30")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "mutually exclusive" in lines[0]
    assert result.stdout == ""


def test_missing_mpp_is_an_error(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth)
    assert result.exit_code == 2
    assert "--mpp" in result.stderr and "--radius-px" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_radius_from_the_truth_mpp(monkeypatch):
    sets = {"t": _set([("A", 0, 0, MITOSIS, None)], images=("A",), mpp=0.5), "p": PRED}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )
    result = _run("--pred", "p", "--truth", "t", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["radius_px"] == pytest.approx(15.0)


def test_differing_mpp_needs_an_override(monkeypatch):
    truth = AnnotationSet(
        TRUTH.annotations, {"A": ImageInfo(id="A", mpp=0.25), "B": ImageInfo(id="B", mpp=0.5)}
    )
    sets = {"t": truth, "p": PRED}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )
    result = _run("--pred", "p", "--truth", "t")
    assert result.exit_code == 2
    assert "different mpp" in result.stderr
    ok = _run("--pred", "p", "--truth", "t", "--mpp", "0.25", "--json")
    assert ok.exit_code == 0, ok.output


def test_radius_from_the_mpp_in_the_truth_file(tmp_path):
    truth = AnnotationSet(
        TRUTH.annotations, {"A": ImageInfo(id="A", mpp=0.25), "B": ImageInfo(id="B", mpp=0.25)}
    )
    write_annotations(truth, tmp_path / "truth.csv", format="csv")
    write_annotations(PRED, tmp_path / "pred.csv", format="csv")
    result = _run(
        "--pred", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv"), "--json"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["radius_px"] == pytest.approx(30.0)
    assert (out["tp"], out["fp"], out["fn"]) == (3, 3, 1)


def test_overlays_on_the_real_frames(tmp_path, shared_data):
    """Predictions drawn on the six MITOS-ATYPIA-14 frames: hits, false alarms, misses."""
    import numpy as np
    from PIL import Image

    from mitokit.io.annotations import read_annotations

    frames = shared_data / "mitos_atypia14" / "frames"
    truth = read_annotations(frames)
    mitoses = [a for a in truth if a.label == MITOSIS]
    first = sorted(truth.images)[0]
    # every true mitosis but one found, plus one false alarm on the first frame
    kept = [a.with_(score=0.9) for a in mitoses[1:]]
    fa = Annotation(id="fa", image=first, point=(5.0, 5.0), label=MITOSIS, score=0.8)
    pred = AnnotationSet([*kept, fa], {})
    pred_path = tmp_path / "pred.csv"
    write_annotations(pred, pred_path, format="csv")
    out = tmp_path / "overlays"
    res = _run(
        "--pred", str(pred_path), "--truth", str(frames), "--mpp", "0.2456",
        "--overlay", str(out), "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert (body["tp"], body["fp"], body["fn"]) == (len(mitoses) - 1, 1, 1)
    assert len(body["overlays"]) == len(truth.images) == 6
    png = np.asarray(Image.open(body["overlays"][0]).convert("RGB"))
    # red crosses (false alarm, on the first frame) and green circles are drawn
    red = (png[..., 0] > 230) & (png[..., 1] < 90) & (png[..., 2] < 80)
    green = (png[..., 1] > 180) & (png[..., 0] < 80) & (png[..., 2] < 100)
    assert red.sum() > 10 and green.sum() > 10


# ---------------------------------------------------------------------------------------------
# Images that carry other names on each side


def _notes(result):
    """The notes on stderr, without their ``mitokit: note: `` prefix."""
    prefix = "mitokit: note: "
    return [line[len(prefix) :] for line in result.stderr.splitlines() if line.startswith(prefix)]


def test_two_single_image_csv_files_are_matched(tmp_path):
    # Centroid CSVs name their image after the file: 'pred' and 'truth'. Scored apart, F1 was 0.
    (tmp_path / "pred.csv").write_text("x,y,score\n1,0,0.9\n100,0,0.8\n300,300,0.4\n")
    (tmp_path / "truth.csv").write_text("x,y\n0,0\n100,1\n")
    result = _run(
        "--pred", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv"),
        "--radius-px", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 0)
    assert out["alignment"]["renamed"] == {"pred": "truth"}
    assert _notes(result) == ["pred image 'pred' matched to truth image 'truth' (one image each)"]


def _geojson(path, points, image=None):
    features = []
    for x, y in points:
        props = {"classification": {"name": "mitosis"}}
        if image is not None:
            props["image"] = image
        features.append(
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
             "properties": props}
        )  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def test_two_single_image_geojson_files_are_matched(tmp_path):
    _geojson(tmp_path / "detections.geojson", [(0, 0), (50, 50)])
    _geojson(tmp_path / "annotations.geojson", [(1, 1), (50, 52), (200, 200)])
    result = _run(
        "--pred", str(tmp_path / "detections.geojson"),
        "--truth", str(tmp_path / "annotations.geojson"), "--radius-px", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0.800" in result.stdout  # F1 = 4 / 5
    assert _notes(result) == [
        "pred image 'detections' matched to truth image 'annotations' (one image each)"
    ]


def test_detect_output_folder_against_a_truth_of_another_name(tmp_path):
    out = tmp_path / "out"
    (out / "case7").mkdir(parents=True)
    _geojson(out / "case7" / "detections.geojson", [(10, 10), (80, 80)], image="case7.svs")
    _geojson(tmp_path / "slide_0042.geojson", [(11, 10), (80, 79)])
    result = _run(
        "--pred", str(out), "--truth", str(tmp_path / "slide_0042.geojson"), "--radius-px", "5",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["f1"] == 1.0
    assert _notes(result) == [
        "pred image 'case7.svs' matched to truth image 'slide_0042' (one image each)"
    ]


def test_no_common_image_is_an_error_naming_both_sides(monkeypatch):
    truth = _set([(f"slide{i}", 0, 0, MITOSIS, None) for i in range(6)])
    pred = _set([("tile_a", 0, 0, MITOSIS, 0.9), ("tile_b", 0, 0, MITOSIS, 0.9)])
    sets = {"t": truth, "p": pred}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )
    result = _run("--pred", "p", "--truth", "t", "--radius-px", "5")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "'tile_a', 'tile_b'" in lines[0]
    assert "'slide0', 'slide1', 'slide2', 'slide3' and 2 more" in lines[0]


def test_images_on_one_side_only_are_listed(monkeypatch):
    truth = _set([("A", 0, 0, MITOSIS, None), ("B", 0, 0, MITOSIS, None)], images=("A", "B"))
    pred = _set([("A", 0, 0, MITOSIS, 0.9), ("D", 0, 0, MITOSIS, 0.9)])
    sets = {"t": truth, "p": pred}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )
    result = _run("--pred", "p", "--truth", "t", "--radius-px", "5", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["alignment"]["only_in_truth"] == ["B"]
    assert out["alignment"]["only_in_pred"] == ["D"]
    assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 1)
    notes = _notes(result)
    assert any("truth image(s) absent from the predictions ('B')" in n for n in notes)
    assert any("pred image(s) absent from the truth ('D')" in n for n in notes)


# ---------------------------------------------------------------------------------------------
# Class, macro F1


def test_unknown_label_is_an_error_listing_the_classes(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-px", "10", "--label", "mitsis")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'mitsis'" in lines[0]
    assert "the truth holds mitosis (4), non_mitosis (1)" in lines[0]
    assert "the predictions hold mitosis (6)" in lines[0]


def test_macro_f1_ignores_images_without_truth_or_predictions(tmp_path):
    truth = AnnotationSet(TRUTH.annotations, {i: ImageInfo(id=i) for i in ("A", "B", "empty")})
    write_annotations(truth, tmp_path / "truth.csv", format="csv")
    write_annotations(PRED, tmp_path / "pred.csv", format="csv")
    result = _run(
        "--pred", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv"),
        "--radius-px", "10", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_images"] == 3 and out["macro_images"] == 2
    assert out["macro_f1"] == pytest.approx((4 / 6 + 2 / 4) / 2)
    text = _run(
        "--pred", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv"),
        "--radius-px", "10",
    )  # fmt: skip
    assert "macro F1 0.583 (2 of 3 images)" in text.stdout


# ---------------------------------------------------------------------------------------------
# Matching rule


def _rules_differ(monkeypatch, threshold_scores=(0.9, 0.8)):
    truth = _set([("A", 0, 0, MITOSIS, None), ("A", 9, 0, MITOSIS, None)], images=("A",))
    pred = _set(
        [("A", 4, 0, MITOSIS, threshold_scores[0]), ("A", -4.5, 0, MITOSIS, threshold_scores[1])]
    )
    sets = {"t": truth, "p": pred}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )


def test_matching_midog_counts_as_the_challenge_scorer(monkeypatch):
    _rules_differ(monkeypatch)
    optimal = json.loads(_run("--pred", "p", "--truth", "t", "--radius-px", "5", "--json").stdout)
    midog = _run("--pred", "p", "--truth", "t", "--radius-px", "5", "--matching", "midog",
                 "--json", "--sweep")  # fmt: skip
    assert midog.exit_code == 0, midog.output
    out = json.loads(midog.stdout)
    assert (optimal["tp"], optimal["fp"], optimal["fn"]) == (2, 0, 0)
    assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 1)
    assert out["matching"] == "midog" and out["sweep"]["matching"] == "midog"
    # sweep at 0.9 keeps P0 only: 1 TP either way; at 0.8 the MIDOG rule stays at 1 TP
    rows = {r["threshold"]: (r["tp"], r["fp"], r["fn"]) for r in out["sweep"]["rows"]}
    assert rows == {0.8: (1, 1, 1), 0.9: (1, 0, 1)}
    assert out["froc"]["matching"] == "midog"
    text = _run("--pred", "p", "--truth", "t", "--radius-px", "5", "--matching", "midog")
    assert "matching midog" in text.stdout


def test_unknown_matching_rule_is_refused(files):
    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-px", "5", "--matching", "greedy")
    assert result.exit_code == 2


# ---------------------------------------------------------------------------------------------
# AP and FROC


def test_ap_and_froc_shown_when_predictions_are_scored(files):
    from mitokit.metrics import average_precision, froc, midog2025_froc_auc

    pred, truth = files
    result = _run("--pred", pred, "--truth", truth, "--radius-px", "10", "--json")
    out = json.loads(result.stdout)
    assert out["ap"] == pytest.approx(average_precision(PRED, TRUTH, radius_px=10))
    assert out["froc"]["score"] == pytest.approx(froc(PRED, TRUTH, radius_px=10).score)
    assert out["midog2025_froc_auc"] == pytest.approx(midog2025_froc_auc(PRED, TRUTH, radius_px=10))
    assert out["ranking_skipped"] is None
    # ranked 0.9 hit, 0.8 hit, 0.7 FA, 0.6 hit, 0.3 FA, 0.2 FA over 4 truths
    assert out["ap"] == pytest.approx((51 * 1.0 + 25 * 0.75 + 25 * 0.0) / 101)
    text = _run("--pred", pred, "--truth", truth, "--radius-px", "10")
    assert f"AP {out['ap']:.3f}" in text.stdout
    assert f"FROC {out['froc']['score']:.3f} = mean sensitivity at FP/image 1/8:" in text.stdout
    assert "MIDOG 2025 FROC AUC" in text.stdout


def test_ap_and_froc_need_a_score_on_every_prediction(monkeypatch):
    pred = AnnotationSet([*PRED.annotations[:2], PRED.annotations[2].with_(score=None)], {})
    sets = {"t": TRUTH, "p": pred}
    monkeypatch.setattr(
        annotations_module, "read_annotations", lambda path, format=None, **kw: sets[path]
    )
    result = _run("--pred", "p", "--truth", "t", "--radius-px", "10", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ap"] is None and out["froc"] is None
    assert out["ranking_skipped"] == "AP and FROC not computed: 1 of 3 predictions have no score"
    assert out["ranking_skipped"] in _notes(result)
    # without any score there is nothing to rank and nothing to say
    sets["p"] = AnnotationSet([a.with_(score=None) for a in PRED.annotations], {})
    result = _run("--pred", "p", "--truth", "t", "--radius-px", "10")
    assert result.exit_code == 0, result.output
    assert "AP" not in result.stdout and _notes(result) == []

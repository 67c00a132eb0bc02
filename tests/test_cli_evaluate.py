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
        annotations_module, "read_annotations", lambda path, format=None: sets[path]
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
        annotations_module, "read_annotations", lambda path, format=None: sets[path]
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

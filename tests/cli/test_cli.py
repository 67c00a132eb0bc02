"""The command-line entry points and the labels commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mitokit import __version__
from mitokit.cli import cli
from mitokit.io.annotations import (
    Annotation,
    AnnotationSet,
    ImageInfo,
    Vote,
    read_annotations,
    write_annotations,
)


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "mitokit", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "mitokit", "--help"], capture_output=True, text=True, check=True
    )
    for group in ("slide", "labels", "evaluate"):
        assert group in out.stdout


@pytest.fixture
def voted_csv(tmp_path):
    anns = [
        Annotation("1", "a.png", point=(10, 10), votes=(Vote("A", 1), Vote("B", 1))),
        Annotation("2", "a.png", point=(20, 20), votes=(Vote("A", 0), Vote("B", 0))),
        Annotation(
            "3",
            "b.png",
            box=(5, 5, 25, 25),
            label="non_mitosis",
            votes=(Vote("A", 1), Vote("B", 0)),
        ),
    ]
    images = {k: ImageInfo(k, width=100, height=100) for k in ("a.png", "b.png", "c.png")}
    path = tmp_path / "labels.csv"
    write_annotations(AnnotationSet(anns, images, ["A", "B"]), path)
    return path


def test_labels_summary_json(voted_csv, tmp_path):
    fig = tmp_path / "dist.png"
    res = CliRunner().invoke(
        cli, ["labels", "summary", str(voted_csv), "--json", "--figure", str(fig)]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["classes"] == {"mitosis": 2, "non_mitosis": 1}
    assert s["raters"] == 2
    assert s["votes_per_object"] == {"2": 3}
    assert s["score_histogram"]["counts"][0] == 1 and s["score_histogram"]["counts"][-1] == 1
    assert s["agreement"]["fleiss_kappa"] == pytest.approx(1 / 3)
    assert fig.stat().st_size > 1000


def test_labels_convert_to_geojson_and_back(voted_csv, tmp_path):
    out = tmp_path / "out.geojson"
    res = CliRunner().invoke(cli, ["labels", "convert", str(voted_csv), str(out)])
    assert res.exit_code == 0, res.output
    back = read_annotations(out)
    assert sorted(a.label for a in back) == ["mitosis", "mitosis", "non_mitosis"]
    one = tmp_path / "one.geojson"
    res = CliRunner().invoke(
        cli, ["labels", "convert", str(voted_csv), str(one), "--image", "b.png"]
    )
    assert res.exit_code == 0, res.output
    assert [a.id for a in read_annotations(one)] == ["3"]


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x89PNG\r\n\x1a\n garbage", "format"),
        (b'{"images": [], "annotations": [{"id": 1}]}', ""),
        (b"x,y,confidence\nnan,3,0.5\n", ""),
    ],
)
def test_bad_label_files_give_one_line_and_exit_2(tmp_path, content, problem):
    bad = tmp_path / "bad_mitosis.csv"
    bad.write_bytes(content)
    res = CliRunner().invoke(cli, ["labels", "summary", str(bad)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and problem in lines[0]
    assert "Traceback" not in res.output


def test_convert_leaves_no_half_written_output(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1}], "annotations": [{"image_id": 1}]}')
    out = tmp_path / "out.geojson"
    res = CliRunner().invoke(cli, ["labels", "convert", str(bad), str(out)])
    assert res.exit_code == 2
    assert list(tmp_path.iterdir()) == [bad]


def test_labels_summary_real_amibr(shared_data):
    res = CliRunner().invoke(
        cli, ["labels", "summary", str(shared_data / "amibr/AMI-BR.csv"), "--json"]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["objects"] == 3720
    assert s["vote_target"] == "atypical"
    assert s["unanimous"]["negative"] == 2496
    assert s["raters"] == 3 and s["votes_per_object"] == {"3": 3720}
    assert s["agreement"]["fleiss_objects"] == 3720


def test_labels_summary_real_mitos_atypia(shared_data):
    res = CliRunner().invoke(
        cli, ["labels", "summary", str(shared_data / "mitos_atypia14/labels_all"), "--json"]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["images"] == 1200
    assert s["classes"] == {"mitosis": 749, "non_mitosis": 2884}
    assert s["scored_objects"] == 749 + 2884  # confidences are the raters' agreement

"""The format readers on the real label data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import sqlite3

import pytest

from mitokit.io.formats import detect_format, read, write


def labels(aset) -> dict[str, int]:
    return dict(collections.Counter(a.label for a in aset))


def test_mitos_atypia14_all_labels(shared_data):
    folder = shared_data / "mitos_atypia14" / "labels_all"
    s = read(folder)
    assert s.format == "mitos_atypia14"
    assert labels(s) == {"mitosis": 749, "non_mitosis": 2884}
    assert len(s.images) == 1200
    assert len({a.image for a in s if a.label == "mitosis"}) == 392
    assert all(a.agreement is not None and 0 <= a.agreement <= 1 for a in s)


def test_mitos_atypia14_frames(shared_data):
    folder = shared_data / "mitos_atypia14" / "frames"
    s = read(folder)
    assert labels(s) == {"mitosis": 12, "non_mitosis": 30}
    assert len(s.images) == 6
    for info in s.images.values():
        assert info.file_name == f"{info.id}.png"
        assert (info.width, info.height) == (1539, 1376)
    one = read(folder / "A03_00Aa_mitosis.csv")
    assert len(one) == 1 and one.annotations[0].agreement == pytest.approx(0.8)


def test_midog_coco(shared_data):
    path = shared_data / "midog21" / "MIDOG.json"
    assert detect_format(path) == "coco"
    s = read(path)
    assert labels(s) == {"mitosis": 1721, "non_mitosis": 2714}
    assert len(s.images) == 200
    # MIDOG's boxes are [x1, y1, x2, y2] of 50 x 50 px
    # (48 of them cross their image's border: clipped, their published centre kept as the point)
    whole = [a for a in s if a.point is None]
    assert {(a.box[2] - a.box[0], a.box[3] - a.box[1]) for a in whole} == {(50.0, 50.0)}
    assert s.adjustments == {"clipped_boxes": 48} and len(s) - len(whole) == 48
    for a in s:
        if a.point is not None:
            info = s.images[a.image]
            x1, y1, x2, y2 = a.box
            assert 0 <= x1 < x2 <= info.width and 0 <= y1 < y2 <= info.height
            assert (x2 - x1, y2 - y1) != (50.0, 50.0)
            assert max(abs(a.point[0] - (x1 + x2) / 2), abs(a.point[1] - (y1 + y2) / 2)) > 0
    raw = json.loads(path.read_text())
    first = raw["annotations"][0]
    assert s.annotations[0].box == tuple(float(v) for v in first["bbox"])


def sqlite_counts(path):
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        n_ann = con.execute("SELECT COUNT(*) FROM Annotations").fetchone()[0]
        n_slides = con.execute("SELECT COUNT(*) FROM Slides").fetchone()[0]
        persons = [r[0] for r in con.execute("SELECT name FROM Persons ORDER BY uid")]
        by_class = dict(
            con.execute(
                "SELECT c.name, COUNT(*) FROM Annotations a JOIN Classes c"
                " ON c.uid = a.agreedClass GROUP BY c.name"
            ).fetchall()
        )
        n_labels = con.execute("SELECT COUNT(*) FROM Annotations_label").fetchone()[0]
    return n_ann, n_slides, persons, by_class, n_labels


@pytest.mark.parametrize(
    "name, classes, n_ann, n_slides",
    [("MITOS2012.sqlite", {"mitosis"}, 226, 35), ("TUPAC.sqlite", {"mitosis"}, 1552, 656)],
)
def test_sliderunner_databases(shared_data, name, classes, n_ann, n_slides):
    path = shared_data / "sliderunner" / name
    assert detect_format(path) == "sliderunner"
    s = read(path)
    want_ann, want_slides, persons, by_class, n_labels = sqlite_counts(path)
    assert (len(s), len(s.images)) == (want_ann, want_slides) == (n_ann, n_slides)
    assert s.raters == persons and len(s.raters) == 1
    from mitokit.io.annotations import canonical_class

    assert labels(s) == {canonical_class(k): v for k, v in by_class.items()}
    assert set(labels(s)) == classes
    assert sum(len(a.votes) for a in s) == n_labels
    assert len(set(s.images)) == n_slides  # repeated file names got distinct ids


def test_mitos2012_classes(shared_data):
    path = shared_data / "sliderunner" / "MITOS2012.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM Classes ORDER BY uid")]
    assert names == ["Mitosis", "Nonmitosis"]


def test_amibr(shared_data):
    path = shared_data / "amibr" / "AMI-BR.csv"
    assert detect_format(path) == "amibr"
    s = read(path)
    assert len(s) == 3720 and s.vote_target == "atypical"
    assert sum(all(v.value == 0.0 for v in a.votes) for a in s) == 2496
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    majority = sum(r["majority_atypical"] == "True" for r in rows)
    assert sum(a.extra["majority_atypical"] for a in s) == majority
    split = read(shared_data / "amibr" / "amibr_train_split.csv")
    assert len(split) == 2894 and {a.id for a in split} <= {a.id for a in s}


def test_midog_geojson_round_trip(shared_data, tmp_path):
    s = read(shared_data / "midog21" / "MIDOG.json")
    out = tmp_path / "midog.geojson"
    write(s, out)
    back = read(out)
    assert labels(back) == labels(s)
    assert len(back.images) == 200
    assert back.annotations == s.annotations
    csv_out = tmp_path / "midog.csv"
    write(s, csv_out)
    assert read(csv_out).annotations == s.annotations

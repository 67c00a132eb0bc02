"""Annotation formats on small hand-written files: readers, writers, detection, bad input."""

from __future__ import annotations

import json
import sqlite3
import struct
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mitokit.errors import MitokitError
from mitokit.io.annotations import (
    Annotation,
    AnnotationSet,
    ImageInfo,
    Vote,
    read_annotations,
    write_annotations,
)
from mitokit.io.formats import detect_format, read, write, write_geojson_per_image
from mitokit.io.formats.coco import guess_bbox_format
from mitokit.io.formats.geojson import image_file_stem

# ----------------------------------------------------------------------------------- helpers


def put(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fake_png(path: Path, width: int, height: int) -> Path:
    """A file with a valid PNG signature and IHDR (enough for the size probe)."""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02\x00\x00\x00"
    )
    return path


def same_content(a: AnnotationSet, b: AnnotationSet) -> bool:
    return (
        a.annotations == b.annotations
        and a.images == b.images
        and a.raters == b.raters
        and a.vote_target == b.vote_target
    )


def raises_naming(path: Path, *words: str):
    """pytest.raises for a MitokitError whose message names ``path`` and contains ``words``."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(MitokitError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            assert str(path) in message, message
            assert "\n" not in message
            for word in words:
                assert word.lower() in message.lower(), message
            return handled

    return _Check()


def rich_set() -> AnnotationSet:
    """A set using every field: points, boxes, both, votes with repeats, extras, odd names."""
    anns = [
        Annotation(
            "a1",
            "img1",
            point=(10.0, 20.5),
            label="mitosis",
            votes=(Vote("r1", 1.0), Vote("r1", 0.5), Vote("r2", 0.0)),
            agreement=0.75,
        ),
        Annotation("a2", "img1", box=(1.0, 2.0, 51.0, 52.0), label="non_mitosis", score=0.125),
        Annotation(
            "7",
            "img2",
            point=(30.0, 40.0),
            box=(5.0, 15.0, 55.0, 65.0),
            label="tumor cell",
            score=0.9,
            extra={"phase": "metaphase", "n": 3},
        ),
        Annotation(
            "a,4",
            "img/3.tif",
            point=(0.1 + 0.2, 1e-7),
            label="mitosis",
            votes=(Vote("dr; x:y", 1.0), Vote("50%", 0.0)),
        ),
    ]
    images = {
        "img1": ImageInfo("img1", "img1.png", 100, 80, 0.25),
        "img2": ImageInfo("img2", None, 200, 100),
        "img/3.tif": ImageInfo("img/3.tif", "3.tif"),
        "empty": ImageInfo("empty", "empty.png", 10, 10),
    }
    return AnnotationSet(
        anns, images, ["r1", "r2", "dr; x:y", "50%", "r0"], "mem", None, "atypical"
    )


# ------------------------------------------------------------------------------ MITOS-ATYPIA


def test_mitos_file_with_trailing_spaces_and_no_final_newline(tmp_path):
    f = put(tmp_path / "A03_00Aa_mitosis.csv", "1094,1223,0.8 \n476,394,0.65 ")
    s = read(f)
    assert s.format == "mitos_atypia14" and s.source == str(f)
    assert [a.point for a in s] == [(1094.0, 1223.0), (476.0, 394.0)]
    assert [a.agreement for a in s] == [0.8, 0.65]
    assert {a.label for a in s} == {"mitosis"}
    assert list(s.images) == ["A03_00Aa"]
    assert s.raters == []


def test_mitos_not_mitosis_and_empty_file(tmp_path):
    f = put(tmp_path / "F1_not_mitosis.csv", "5,6,0.0\r\n\r\n7,8,0.2\r\n")
    s = read(f)
    assert [a.label for a in s] == ["non_mitosis", "non_mitosis"]
    assert [a.id for a in s] == ["F1_not_mitosis_1", "F1_not_mitosis_3"]
    empty = put(tmp_path / "F2_mitosis.csv", "")
    e = read(empty)
    assert len(e) == 0 and list(e.images) == ["F2"]


def test_mitos_folder_lists_every_frame_and_png(tmp_path):
    put(tmp_path / "A_mitosis.csv", "10,20,1.0\n")
    put(tmp_path / "A_not_mitosis.csv", "30,40,0.2 \n50,60,0.0")
    put(tmp_path / "B_mitosis.csv", "")  # only an empty file: still an image
    put(tmp_path / "C_not_mitosis.csv", "1,2,0.0\n")
    put(tmp_path / "notes.txt", "ignored")
    fake_png(tmp_path / "A.png", 100, 90)
    s = read(tmp_path)
    assert s.format == "mitos_atypia14"
    assert list(s.images) == ["A", "B", "C"]
    assert s.images["A"] == ImageInfo("A", "A.png", 100, 90)
    assert s.images["B"].file_name is None
    assert len(s) == 4
    assert sum(a.label == "mitosis" for a in s) == 1
    assert detect_format(tmp_path) == "mitos_atypia14"


def test_mitos_point_outside_png_is_an_error(tmp_path):
    put(tmp_path / "A_mitosis.csv", "140,20,1.0\n")  # 40 px out: more than half a box
    fake_png(tmp_path / "A.png", 100, 90)
    with raises_naming(tmp_path, "outside"):
        read(tmp_path)


@pytest.mark.parametrize(
    "content, words",
    [
        ("10,abc,0.5\n", ["line 1", "not a number"]),
        ("1,2,0.5\n3,nan,0.5\n", ["line 2", "not finite"]),
        ("1,2,1.5\n", ["outside [0, 1]"]),
        ("1,2,3,4\n", ["line 1", "fields"]),
        ("-30,2,0.5\n", ["outside", "more than 25 px"]),
    ],
)
def test_mitos_bad_lines(tmp_path, content, words):
    f = put(tmp_path / "X_mitosis.csv", content)
    with raises_naming(f, *words):
        read(f)


def test_mitos_wrong_name_and_empty_folder(tmp_path):
    f = put(tmp_path / "points.csv", "1,2,0.5\n")
    with raises_naming(f, "_mitosis.csv"):
        read(f, format="mitos_atypia14")
    (tmp_path / "sub").mkdir()
    with raises_naming(tmp_path / "sub", "unknown annotation format"):
        read(tmp_path / "sub")


# ------------------------------------------------------------------------------ centroid CSV


def test_centroid_xy_default_and_row_col_swap(tmp_path):
    f = put(tmp_path / "01.csv", "100,200\n300,400\n")
    assert detect_format(f) == "centroid_csv"
    xy = read(f)
    assert [a.point for a in xy] == [(100.0, 200.0), (300.0, 400.0)]
    assert list(xy.images) == ["01"] and [a.id for a in xy] == ["01_1", "01_2"]
    rc = read(f, columns=("row", "col"), image="01/01.tif", label="Mitotic figure")
    assert [a.point for a in rc] == [(200.0, 100.0), (400.0, 300.0)]
    assert {a.image for a in rc} == {"01/01.tif"} and {a.label for a in rc} == {"mitosis"}


def test_centroid_header_decides_order_and_score(tmp_path):
    f = put(tmp_path / "pred.csv", "row,col,score\n10,20,0.9\n30,40,0.1\n")
    s = read(f)
    assert [a.point for a in s] == [(20.0, 10.0), (40.0, 30.0)]
    assert [a.score for a in s] == [0.9, 0.1]
    g = put(tmp_path / "g.csv", "# comment\n5 6 0.5\n")
    assert read(g, third="agreement").annotations[0].agreement == 0.5


def test_centroid_errors(tmp_path):
    f = put(tmp_path / "p.csv", "1,2\n3,x\n")
    with raises_naming(f, "line 2", "not a number"):
        read(f)
    g = put(tmp_path / "q.csv", "1,2\n3,inf\n")
    with raises_naming(g, "not finite"):
        read(g)
    with raises_naming(g, "columns"):
        read(g, format="centroid_csv", columns=("a", "b"))


# -------------------------------------------------------------------------------- CSV table


def test_table_csv_round_trip_exact(tmp_path):
    original = rich_set()
    out = tmp_path / "t.csv"
    write(original, out)
    assert detect_format(out) == "csv"
    back = read(out)
    assert back.format == "csv"
    assert same_content(back, original)
    assert back.annotations[2].extra == {"phase": "metaphase", "n": 3}
    # pandas reads the table with comment="#"
    df = pd.read_csv(out, comment="#")
    assert list(df.columns[:12]) == [
        "id", "image", "x", "y", "x1", "y1", "x2", "y2", "label", "agreement", "score", "votes",
    ]  # fmt: skip
    assert len(df) == 4


def test_table_csv_without_preamble_and_votes(tmp_path):
    f = put(
        tmp_path / "t.csv",
        "id,image,x,y,x1,y1,x2,y2,label,agreement,score,votes\n"
        "1,s1,5,6,,,,,Mitotic figure,,,r1:1;r1:0.5;r2:0\n"
        "2,s2,,,1,2,3,4,imposter,0.5,0.25,\n",
    )
    s = read(f)
    assert s.annotations[0].votes == (Vote("r1", 1.0), Vote("r1", 0.5), Vote("r2", 0.0))
    assert [a.label for a in s] == ["mitosis", "non_mitosis"]
    assert s.annotations[1].box == (1.0, 2.0, 3.0, 4.0) and s.annotations[1].point is None
    assert list(s.images) == ["s1", "s2"]


@pytest.mark.parametrize(
    "row, words",
    [
        ("1,s,5,x,,,,,mitosis,,,", ["line 2", "not a number"]),
        ("1,s,5,6,,,,,mitosis,,,r1:2", ["outside [0, 1]"]),
        ("1,s,5,6,1,2,,,mitosis,,,", ["line 2", "x2"]),
        ("1,s,,,3,2,1,4,mitosis,,,", ["x2 < x1"]),
        ("1,s,5,6,,,,,mitosis,,nan,", ["score", "not finite"]),
        ("1,s,5,6,,,,,mitosis", ["fields"]),
        ("1,s,,,,,,,mitosis,,,", ["neither a point nor a box"]),
    ],
)
def test_table_csv_bad_rows(tmp_path, row, words):
    f = put(tmp_path / "t.csv", "id,image,x,y,x1,y1,x2,y2,label,agreement,score,votes\n" + row)
    with raises_naming(f, *words):
        read(f)


def test_table_csv_missing_column(tmp_path):
    f = put(tmp_path / "t.csv", "# mitokit: {}\nid,image,x,y\n1,s,1,2\n")
    with raises_naming(f, "lacks column"):
        read(f)


# -------------------------------------------------------------------------------------- COCO


def coco_doc(bboxes, *, info=None, labels=None):
    anns = []
    for k, b in enumerate(bboxes):
        a = {"id": k + 1, "image_id": 1 + k % 2, "category_id": 1 + k % 2, "bbox": b}
        if labels is not None:
            a["labels"] = labels
        anns.append(a)
    doc = {
        "images": [
            {"id": 1, "file_name": "001.tiff", "width": 1000, "height": 800},
            {"id": 2, "file_name": "002.tiff", "width": 1000, "height": 800},
            {"id": 3, "file_name": "003.tiff", "width": 1000, "height": 800},
        ],
        "categories": [
            {"id": 1, "name": "mitotic figure"},
            {"id": 2, "name": "not mitotic figure"},
        ],
        "annotations": anns,
    }
    if info is not None:
        doc["info"] = info
    return doc


def test_midog_xyxy_versus_coco_xywh(tmp_path):
    boxes = [[100, 200, 150, 250], [300, 100, 350, 150]]
    midog = put(
        tmp_path / "midog.json",
        json.dumps(
            coco_doc(
                boxes, info={"description": "MItosis Domain Generalization Challenge (MIDOG) 2021"}
            )
        ),
    )
    coco = put(tmp_path / "coco.json", json.dumps(coco_doc(boxes)))
    m, c = read(midog), read(coco)
    assert m.format == c.format == "coco"
    assert m.annotations[0].box == (100.0, 200.0, 150.0, 250.0)
    assert c.annotations[0].box == (100.0, 200.0, 250.0, 450.0)
    assert [a.label for a in m] == ["mitosis", "non_mitosis"]
    assert list(m.images) == ["001.tiff", "002.tiff", "003.tiff"]  # 003 has no objects
    assert m.images["001.tiff"] == ImageInfo("001.tiff", "001.tiff", 1000, 800)
    assert read(coco, bbox_format="xyxy").annotations[0].box == (100.0, 200.0, 150.0, 250.0)


def test_bbox_format_guess_rules():
    fixed = [(10, 10, 60, 60), (200, 30, 250, 80), (400, 500, 450, 550)]
    assert guess_bbox_format(None, fixed) == "xyxy"  # same corners span, varying x2
    assert guess_bbox_format(None, [(10, 10, 50, 50), (200, 30, 50, 50)]) == "xywh"
    assert guess_bbox_format({"bbox_format": "xywh"}, fixed) == "xywh"
    assert guess_bbox_format(None, [(900, 10, 950, 60)], [(1000, 1000)]) == "xyxy"
    assert guess_bbox_format({"description": "MIDOG 2022"}, [(1, 1, 2, 2)]) == "xyxy"
    assert guess_bbox_format(None, [(500, 10, 40, 60)]) == "xywh"


def test_coco_rater_labels_become_votes(tmp_path):
    doc = coco_doc([[1, 1, 10, 10]], labels=[1, 2, {"rater": "ann", "category_id": 1}])
    f = put(tmp_path / "c.json", json.dumps(doc))
    s = read(f)
    assert s.annotations[0].votes == (
        Vote("rater1", 1.0), Vote("rater2", 0.0), Vote("ann", 1.0),
    )  # fmt: skip
    assert s.raters == ["rater1", "rater2", "ann"]


def test_coco_round_trip_and_xyxy_writer(tmp_path):
    original = rich_set()
    for fmt in ("xywh", "xyxy"):
        out = tmp_path / f"c_{fmt}.json"
        write(original, out, bbox_format=fmt, point_box_size=20)
        assert detect_format(out) == "coco"
        back = read(out)
        assert same_content(back, original), fmt
    doc = json.loads((tmp_path / "c_xywh.json").read_text())
    point_only = doc["annotations"][0]
    assert point_only["bbox"] == [0, 10.5, 20, 20] and point_only["synthetic_bbox"] is True
    assert {c["name"]: c["id"] for c in doc["categories"]} == {
        "mitosis": 1, "non_mitosis": 2, "tumor cell": 3,
    }  # fmt: skip


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.pop("annotations"), ["without 'annotations'"]),
        (lambda d: d["annotations"][0].pop("bbox"), ["no bbox"]),
        (lambda d: d["annotations"][0].update(category_id=9), ["unknown category_id"]),
        (lambda d: d["annotations"][0].update(image_id=9), ["unknown image_id"]),
        (lambda d: d["annotations"][0].update(bbox=[1, "a", 2, 3]), ["not a number"]),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), ["4 numbers"]),
        (lambda d: d["images"][0].update(width="wide"), ["width"]),
        (
            lambda d: d["annotations"][0].update(votes=[{"rater": "a", "value": 2}]),
            ["outside [0, 1]"],
        ),
        (lambda d: d["annotations"][0].update(bbox=[5000, 1, 5050, 50]), ["wholly outside"]),
    ],
)
def test_coco_bad_input(tmp_path, mutate, words):
    doc = coco_doc([[1, 1, 10, 10], [20, 20, 30, 30]])
    mutate(doc)
    f = put(tmp_path / "c.json", json.dumps(doc))
    with raises_naming(f, *words):
        read(f, format="coco")


def test_coco_x2_below_x1_in_xyxy(tmp_path):
    doc = coco_doc([[50, 10, 20, 60]], info={"description": "MIDOG"})
    f = put(tmp_path / "c.json", json.dumps(doc))
    with raises_naming(f, "x2 < x1"):
        read(f)


def test_invalid_json(tmp_path):
    f = put(tmp_path / "c.json", '{"images": [], "annotations": [')
    with raises_naming(f, "invalid JSON"):
        read(f)
    g = put(tmp_path / "d.json", '{"a": 1}')
    with raises_naming(g, "unknown annotation format"):
        read(g)
    with raises_naming(g, "without 'images'"):
        read(g, format="coco")


# ------------------------------------------------------------------------------- SlideRunner


def make_sliderunner(path: Path, *, deleted_column: bool = True) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE Slides (uid INTEGER PRIMARY KEY, filename TEXT, width INTEGER,
                             height INTEGER, directory TEXT);
        CREATE TABLE Classes (uid INTEGER PRIMARY KEY, name TEXT, color TEXT);
        CREATE TABLE Persons (uid INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE Annotations_label (uid INTEGER PRIMARY KEY, person INTEGER, class INTEGER,
                                        annoId INTEGER);
        CREATE TABLE Annotations_coordinates (uid INTEGER PRIMARY KEY, coordinateX INTEGER,
                                              coordinateY INTEGER, slide INTEGER,
                                              annoId INTEGER, orderIdx INTEGER);
        """
    )
    deleted = ", deleted INTEGER DEFAULT 0" if deleted_column else ""
    con.execute(
        f"CREATE TABLE Annotations (uid INTEGER PRIMARY KEY, slide INTEGER, type INTEGER,"
        f" agreedClass INTEGER{deleted})"
    )
    con.executemany("INSERT INTO Slides VALUES (?,?,?,?,?)", [
        (1, "a.svs", 1000, 800, "d1"), (2, "01.tif", None, None, "01"),
        (3, "01.tif", None, None, "02"),
    ])  # fmt: skip
    con.executemany(
        "INSERT INTO Classes VALUES (?,?,?)",
        [(1, "Mitotic figure", "#ff0000"), (2, "Mitotic figure lookalike", "#0000ff")],
    )
    con.executemany("INSERT INTO Persons VALUES (?,?)", [(1, "alice"), (2, "bob"), (3, "carol")])
    anns = [(1, 1, 1, 1), (2, 1, 2, 2), (3, 2, 3, 1), (4, 3, 5, 1), (5, 1, 1, 1), (6, 1, 4, None)]
    for uid, slide, kind, agreed in anns:
        if deleted_column:
            con.execute(
                "INSERT INTO Annotations VALUES (?,?,?,?,?)",
                (uid, slide, kind, agreed, 1 if uid == 5 else 0),
            )
        else:
            con.execute("INSERT INTO Annotations VALUES (?,?,?,?)", (uid, slide, kind, agreed))
    coords = [
        (1, [(100, 200)]),
        (2, [(60, 70), (10, 20)]),  # rectangle drawn right-to-left
        (3, [(0, 0), (40, 0), (40, 20), (0, 20)]),
        (4, [(10, 10), (30, 30)]),
        (5, [(1, 1)]),
        (6, [(500, 400)]),
    ]
    k = 0
    for anno, pts in coords:
        for order, (x, y) in enumerate(pts):
            k += 1
            con.execute(
                "INSERT INTO Annotations_coordinates VALUES (?,?,?,?,?,?)",
                (k, x, y, 1, anno, order),
            )
    labels = [(1, 1, 1, 1), (2, 2, 2, 1), (3, 1, 2, 2), (4, 1, 1, 6), (5, 2, 1, 6)]
    con.executemany("INSERT INTO Annotations_label VALUES (?,?,?,?)", labels)
    con.commit()
    con.close()
    return path


def test_sliderunner_two_persons_disagreeing(tmp_path):
    db = make_sliderunner(tmp_path / "db.sqlite")
    assert detect_format(db) == "sliderunner"
    s = read(db)
    assert s.format == "sliderunner"
    assert s.raters == ["alice", "bob", "carol"]
    assert list(s.images) == ["a.svs", "01/01.tif", "02/01.tif"]
    assert s.images["a.svs"] == ImageInfo("a.svs", "a.svs", 1000, 800)
    by_id = {a.id: a for a in s}
    assert set(by_id) == {"1", "2", "3", "4", "6"}  # 5 is deleted
    spot = by_id["1"]
    assert spot.point == (100.0, 200.0) and spot.box is None and spot.label == "mitosis"
    assert spot.votes == (Vote("alice", 1.0), Vote("bob", 0.0))
    assert by_id["2"].box == (10.0, 20.0, 60.0, 70.0) and by_id["2"].label == "non_mitosis"
    assert by_id["3"].box == (0.0, 0.0, 40.0, 20.0) and by_id["3"].point == (20.0, 10.0)
    assert by_id["3"].image == "01/01.tif"
    assert by_id["4"].point == (20.0, 20.0) and by_id["4"].box == (10.0, 10.0, 30.0, 30.0)
    # no agreedClass: the two raters' labels both say mitosis
    assert by_id["6"].label == "mitosis" and len(by_id["6"].votes) == 2


def test_sliderunner_without_deleted_column(tmp_path):
    s = read(make_sliderunner(tmp_path / "db.sqlite", deleted_column=False))
    assert len(s) == 6


def test_sliderunner_missing_table_and_truncated(tmp_path):
    db = make_sliderunner(tmp_path / "db.sqlite")
    con = sqlite3.connect(db)
    con.execute("DROP TABLE Classes")
    con.commit()
    con.close()
    with raises_naming(db, "Classes"):
        read(db)
    full = make_sliderunner(tmp_path / "full.sqlite")
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(full.read_bytes()[:3000])
    with raises_naming(cut, "sqlite"):
        read(cut)
    fake = put(tmp_path / "fake.sqlite", "not a database")
    with raises_naming(fake, "not an SQLite database"):
        read(fake, format="sliderunner")


def test_sliderunner_missing_column_and_unknown_class(tmp_path):
    db = make_sliderunner(tmp_path / "db.sqlite")
    con = sqlite3.connect(db)
    con.execute("UPDATE Annotations SET agreedClass = 7 WHERE uid = 1")
    con.commit()
    con.close()
    with raises_naming(db, "agreedClass"):
        read(db)
    db2 = tmp_path / "db2.sqlite"
    con = sqlite3.connect(db2)
    for table in (
        "Slides (uid, filename)",
        "Classes (uid, name)",
        "Annotations (uid, slide, type)",
        "Annotations_coordinates (annoId, coordinateX, coordinateY)",
    ):
        con.execute(f"CREATE TABLE {table}")
    con.commit()
    con.close()
    with raises_naming(db2, "Annotations", "agreedClass"):
        read(db2)


# ----------------------------------------------------------------------------------- GeoJSON


def test_qupath_export_is_read(tmp_path):
    features = [
        {
            "type": "Feature",
            "id": "0b6a3c54-9d43-4e63-8c4d-6a2c1d0d9f01",
            "geometry": {"type": "MultiPoint", "coordinates": [[10, 20], [30, 40]]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Mitosis", "color": [255, 0, 0]},
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[0, 0], [10, 0], [12, 8], [0, 10], [0, 0]]],
            },
            "properties": {
                "objectType": "detection",
                "classification": {"name": "Imposter"},
                "measurements": [{"name": "score", "value": 0.25}, {"name": "Area", "value": 100}],
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [5, 6]},
            "properties": {"measurements": {"score": 0.5, "agreement": 1}},
        },
    ]
    f = put(tmp_path / "slide1.geojson", json.dumps(features))
    assert detect_format(f) == "geojson"
    s = read(f)
    assert [a.point for a in s][:2] == [(10.0, 20.0), (30.0, 40.0)]
    assert s.annotations[0].id.endswith("_1") and s.annotations[0].label == "mitosis"
    poly = s.annotations[2]
    assert poly.box == (0.0, 0.0, 12.0, 10.0) and poly.label == "non_mitosis"
    assert poly.score == 0.25 and poly.extra["measurements"] == {"Area": 100}
    assert s.annotations[3].label == "mitosis" and s.annotations[3].agreement == 1.0
    assert list(s.images) == ["slide1"]
    assert {a.image for a in read(f, image="slide1.svs")} == {"slide1.svs"}


def test_geojson_round_trip_and_qupath_conventions(tmp_path):
    original = rich_set()
    out = tmp_path / "o.geojson"
    write(original, out)
    back = read(out)
    assert same_content(back, original)
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection"
    ids = [f["id"] for f in doc["features"]]
    assert all(str(uuid.UUID(i)) == i for i in ids) and len(set(ids)) == len(ids)
    write(original, tmp_path / "again.geojson")
    assert [
        f["id"] for f in json.loads((tmp_path / "again.geojson").read_text())["features"]
    ] == ids  # deterministic
    point, box = doc["features"][0], doc["features"][1]
    assert point["geometry"] == {"type": "Point", "coordinates": [10, 20.5]}
    assert point["properties"]["objectType"] == "annotation"
    assert point["properties"]["classification"] == {"name": "mitosis", "color": [255, 0, 0]}
    assert point["properties"]["measurements"]["agreement"] == 0.75
    ring = box["geometry"]["coordinates"][0]
    assert box["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
    assert box["properties"]["objectType"] == "detection"  # it has a score
    assert box["properties"]["measurements"] == {"score": 0.125}
    write(original, tmp_path / "ann.geojson", object_type="annotation")
    doc2 = json.loads((tmp_path / "ann.geojson").read_text())
    assert {f["properties"]["objectType"] for f in doc2["features"]} == {"annotation"}


def test_geojson_one_file_per_image(tmp_path):
    original = rich_set()
    files = write_geojson_per_image(original, tmp_path / "per")
    assert set(files) == {"img1", "img2", "img/3.tif", "empty"}
    assert files["img/3.tif"].name == "img_3.geojson"
    one = read(files["img1"])
    assert [a.id for a in one] == ["a1", "a2"] and list(one.images) == ["img1"]
    assert len(read(files["empty"])) == 0
    write(original, tmp_path / "img2.geojson", image="img2")
    assert [a.id for a in read(tmp_path / "img2.geojson")] == ["7"]
    with raises_naming(tmp_path / "x.geojson", "no image"):
        write(original, tmp_path / "x.geojson", image="nope")
    assert image_file_stem("01/25.tif") == "01_25" and image_file_stem("a.b.svs") == "a.b"


@pytest.mark.parametrize(
    "geometry, words",
    [
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, ["unsupported geometry"]),
        ({"type": "Point", "coordinates": [float("nan"), 1]}, ["not finite"]),
        ({"type": "Point", "coordinates": ["a", 1]}, ["not a number"]),
        ({"type": "Point", "coordinates": [-26, 1]}, ["outside the image"]),
        ({"type": "Polygon", "coordinates": [[1, 2]]}, ["[x, y]"]),
        (None, ["no geometry"]),
    ],
)
def test_geojson_bad_geometry(tmp_path, geometry, words):
    doc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": geometry, "properties": {}}],
    }
    f = put(tmp_path / "g.geojson", json.dumps(doc))
    with raises_naming(f, *words):
        read(f)


# ------------------------------------------------------------------------------------- AMi-Br

AMIBR_HEADER = (
    ",slide,dataset,uid,x,y,expert1_label,expert2_label,expert1_atypical,"
    "expert2_atypical,expert3_atypical,majority_atypical\n"
)


def test_amibr_votes_and_extra(tmp_path):
    f = put(
        tmp_path / "a.csv",
        AMIBR_HEADER
        + "0,002.tiff,MIDOG21,6,4422,216,NMF prometaphase,NMF metaphase,False,False,False,"
        "False\n1,01_stitched1.tif,TUPAC16,4,9478,794,NMF anaphase-telophase,"
        "AMF bipolar assymetric,False,True,True,True\n",
    )
    assert detect_format(f) == "amibr"
    s = read(f)
    assert s.vote_target == "atypical" and s.raters == ["expert1", "expert2", "expert3"]
    a, b = s.annotations
    assert a.id == "MIDOG21_6" and a.image == "002.tiff" and a.point == (4422.0, 216.0)
    assert a.label == "mitosis" and [v.value for v in a.votes] == [0.0, 0.0, 0.0]
    assert b.votes == (Vote("expert1", 0.0), Vote("expert2", 1.0), Vote("expert3", 1.0))
    assert b.extra == {
        "dataset": "TUPAC16", "uid": 4, "expert1_label": "NMF anaphase-telophase",
        "expert2_label": "AMF bipolar assymetric", "majority_atypical": True,
        "patch": "TUPAC16_4.png",
    }  # fmt: skip
    assert list(s.images) == ["002.tiff", "01_stitched1.tif"]


def test_amibr_bad_boolean_and_missing_column(tmp_path):
    f = put(tmp_path / "a.csv", AMIBR_HEADER + "0,s,M,1,1,2,a,b,maybe,False,False,False\n")
    with raises_naming(f, "line 2", "expert1_atypical"):
        read(f)
    g = put(tmp_path / "b.csv", "slide,expert1_atypical\ns,True\n")
    with raises_naming(g, "lacks"):
        read(g)


# --------------------------------------------------------------------------------- detection


def test_detection_and_unknown_formats(tmp_path):
    assert detect_format(put(tmp_path / "Z_not_mitosis.csv", "1,2,0.5\n")) == "mitos_atypia14"
    assert detect_format(put(tmp_path / "pts.csv", "1 2\n")) == "centroid_csv"
    assert detect_format(put(tmp_path / "e.csv", "")) == "centroid_csv"
    assert (
        detect_format(put(tmp_path / "fc.json", '{"type": "FeatureCollection", "features": []}'))
        == "geojson"
    )
    assert detect_format(put(tmp_path / "l.json", "[]")) == "geojson"
    for name, content in [("u.csv", "name,value\na,b\n"), ("u.json", "[1, 2]")]:
        f = put(tmp_path / name, content)
        with raises_naming(f, "unknown annotation format"):
            read(f)
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    with raises_naming(binary, "unknown annotation format"):
        detect_format(binary)


def test_missing_file_unknown_format_and_options(tmp_path):
    missing = tmp_path / "nope.csv"
    with raises_naming(missing, "no such file"):
        read(missing)
    f = put(tmp_path / "p.csv", "1,2\n")
    with raises_naming(f, "unknown annotation format 'bogus'"):
        read(f, format="bogus")
    with raises_naming(f, "option", "frobnicate"):
        read(f, frobnicate=1)
    s = read(f)
    with raises_naming(tmp_path / "o.txt", "extension"):
        write(s, tmp_path / "o.txt")
    with raises_naming(tmp_path / "o.csv", "cannot be written"):
        write(s, tmp_path / "o.csv", format="sliderunner")
    with raises_naming(tmp_path / "o.csv", "option"):
        write(s, tmp_path / "o.csv", bbox_format="xyxy")


def test_public_wrappers_and_atomic_write(tmp_path):
    original = rich_set()
    out = tmp_path / "sub" / "w.csv"
    write_annotations(original, out)
    assert same_content(read_annotations(out), original)
    assert [p.name for p in out.parent.iterdir()] == ["w.csv"]  # no temporary left behind
    same = read_annotations(out, format="table")
    assert same.format == "csv"

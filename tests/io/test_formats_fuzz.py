"""Property tests: malformed input of any kind raises MitokitError and nothing else.

Each reader gets random bytes, random text, mutated valid files, JSON of random structure, CSVs
of random fields and truncated SQLite databases. A reader may accept the input (returning an
AnnotationSet) or reject it, but only with :class:`MitokitError` naming the file.
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from _samples import sliderunner_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.io.formats import BORDER_TOLERANCE_PX, read, write

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_DIR = Path(tempfile.mkdtemp(prefix="mitokit-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)

NAMES = {
    "mitos_atypia14": "F_mitosis.csv",
    "centroid_csv": "points.csv",
    "csv": "table.csv",
    "coco": "coco.json",
    "sliderunner": "db.sqlite",
    "geojson": "objects.geojson",
    "amibr": "amibr.csv",
}


def check(data: bytes, name: str, fmt: str | None) -> None:
    """Read ``data`` as ``fmt`` (or detected); only MitokitError naming the file may escape."""
    path = _DIR / name
    path.write_bytes(data)
    try:
        result = read(path, format=fmt)
    except MitokitError as err:
        assert str(path) in str(err)
        assert "\n" not in str(err)
        return
    assert isinstance(result, AnnotationSet)
    assert_intact(result)


def assert_intact(aset: AnnotationSet) -> None:
    """What an accepted set promises: unique ids, finite numbers, ordered boxes inside known
    images (after clipping), centres at most half a box outside, votes in [0, 1]."""
    ids = [a.id for a in aset]
    assert len(ids) == len(set(ids))
    for a in aset:
        x, y = a.center
        assert math.isfinite(x) and math.isfinite(y)
        info = aset.images.get(a.image)
        w = math.inf if info is None or info.width is None else info.width
        h = math.inf if info is None or info.height is None else info.height
        assert max(-x, -y, x - w, y - h) <= BORDER_TOLERANCE_PX
        if a.box is not None:
            x1, y1, x2, y2 = a.box
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert all(0.0 <= v.value <= 1.0 for v in a.votes)
        assert a.agreement is None or 0.0 <= a.agreement <= 1.0


def sample_set() -> AnnotationSet:
    anns = [
        Annotation(
            "1",
            "a.tif",
            point=(10.0, 20.0),
            votes=(Vote("r1", 1.0), Vote("r2", 0.5)),
            agreement=0.5,
        ),
        Annotation("2", "a.tif", box=(1.0, 2.0, 51.0, 52.0), label="non_mitosis", score=0.8),
        Annotation("x", "b.tif", point=(3.0, 4.0), box=(0.0, 0.0, 8.0, 8.0), extra={"k": 1}),
    ]
    return AnnotationSet(
        anns,
        {"a.tif": ImageInfo("a.tif", "a.tif", 100, 100), "b.tif": ImageInfo("b.tif")},
        ["r1", "r2"],
    )


def valid_files() -> dict[str, bytes]:
    """One valid file per format, to mutate."""
    out: dict[str, bytes] = {}
    s = sample_set()
    for fmt, ext in (("csv", "csv"), ("coco", "json"), ("geojson", "geojson")):
        path = _DIR / f"valid.{ext}"
        write(s, path, format=fmt)
        out[fmt] = path.read_bytes()
    out["mitos_atypia14"] = b"1094,1223,0.8 \n476,394,0.65"
    out["centroid_csv"] = b"row,col,score\n10,20,0.9\n30,40,0.1\n"
    out["amibr"] = (
        b",slide,dataset,uid,x,y,expert1_label,expert2_label,expert1_atypical,expert2_atypical,"
        b"expert3_atypical,majority_atypical\n0,002.tiff,MIDOG21,6,4422,216,NMF a,NMF b,False,"
        b"True,False,False\n"
    )
    out["sliderunner"] = sliderunner_bytes(_DIR / "valid.sqlite")
    return out


VALID = valid_files()
FORMATS = sorted(NAMES)


def test_valid_files_read():
    for fmt, data in VALID.items():
        path = _DIR / NAMES[fmt]
        path.write_bytes(data)
        assert len(read(path, format=fmt)) > 0, fmt
        assert len(read(path)) > 0, fmt


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(fmt, data):
    check(data, NAMES[fmt], fmt)
    check(data, NAMES[fmt], None)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(text=st.text(max_size=300))
def test_random_text(fmt, text):
    check(text.encode("utf-8"), NAMES[fmt], fmt)


@st.composite
def mutated(draw, fmt: str) -> bytes:
    data = bytearray(VALID[fmt])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b",",
                        b"\n",
                        b'"',
                        b"{",
                        b"]",
                        b"-1",
                        b"nan",
                        b"1e999",
                        b"\x00",
                        b"null",
                        b"true",
                        b"\xff",
                        b"[1,2]",
                        b"{}",
                        b";",
                        b":",
                    ]
                )
            )
        else:
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_mutated_valid_files(fmt, data):
    blob = data.draw(mutated(fmt))
    check(blob, NAMES[fmt], fmt)
    check(blob, NAMES[fmt], None)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "Feature",
            "FeatureCollection",
            "Point",
            "Polygon",
            "MultiPoint",
            "mitotic figure",
            "MIDOG",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "features",
                    "geometry",
                    "coordinates",
                    "properties",
                    "images",
                    "annotations",
                    "categories",
                    "bbox",
                    "id",
                    "image_id",
                    "category_id",
                    "name",
                    "file_name",
                    "width",
                    "height",
                    "classification",
                    "measurements",
                    "votes",
                    "labels",
                    "rater",
                    "value",
                    "point",
                    "info",
                    "mitokit",
                    "raters",
                    "score",
                    "agreement",
                    "extra",
                    "metadata",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("fmt", ["coco", "geojson"])
@FUZZ
@given(value=JSON_VALUES)
def test_random_json_structure(fmt, value):
    data = json.dumps(value).encode("utf-8")
    check(data, NAMES[fmt], fmt)
    check(data, NAMES[fmt], None)


@st.composite
def coco_like(draw) -> dict:
    num = st.one_of(
        st.integers(-5, 3000), st.floats(allow_nan=True), st.text(max_size=3), st.none()
    )
    images = draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 3), "file_name": st.text(max_size=4)},
                optional={"width": num, "height": num},
            ),
            max_size=3,
        )
    )
    anns = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(0, 5),
                    "image_id": st.integers(0, 3),
                    "category_id": st.integers(0, 3),
                    "bbox": st.lists(num, min_size=3, max_size=5),
                },
                optional={
                    "labels": st.lists(st.integers(0, 3) | st.text(max_size=3), max_size=3),
                    "point": st.lists(num, max_size=3),
                    "synthetic_bbox": st.booleans(),
                    "score": num,
                    "votes": st.lists(
                        st.fixed_dictionaries({"rater": st.text(max_size=3), "value": num}),
                        max_size=2,
                    ),
                },
            ),
            max_size=5,
        )
    )
    cats = [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "not mitotic figure"}]
    return {"images": images, "annotations": anns, "categories": cats}


@FUZZ
@given(doc=coco_like())
def test_coco_like_documents(doc):
    check(json.dumps(doc).encode("utf-8"), "c.json", None)


CSV_FIELD = st.one_of(
    st.integers(-10, 10**6).map(str),
    st.floats().map(repr),
    st.text(max_size=6),
    st.sampled_from(["", "nan", "inf", "-1", "True", "False", "r1:1;r2:0", "r1:2", "1e999"]),
)


@pytest.mark.parametrize("fmt", ["mitos_atypia14", "centroid_csv", "csv", "amibr"])
@FUZZ
@given(rows=st.lists(st.lists(CSV_FIELD, min_size=1, max_size=13), max_size=6))
def test_random_csv_fields(fmt, rows):
    headers = {
        "csv": "id,image,x,y,x1,y1,x2,y2,label,agreement,score,votes\n",
        "amibr": VALID["amibr"].decode().splitlines()[0] + "\n",
    }
    body = "\n".join(",".join(r) for r in rows)
    check((headers.get(fmt, "") + body).encode("utf-8"), NAMES[fmt], fmt)


@FUZZ
@given(
    cut=st.integers(0, len(VALID["sliderunner"])),
    flips=st.lists(
        st.tuples(st.integers(0, len(VALID["sliderunner"]) - 1), st.integers(0, 255)), max_size=8
    ),
)
def test_truncated_and_corrupted_sqlite(cut, flips):
    data = bytearray(VALID["sliderunner"])
    for pos, byte in flips:
        data[pos] = byte
    check(bytes(data[:cut]), "db.sqlite", "sliderunner")
    check(bytes(data), "db.sqlite", None)


def test_sqlite_with_wrong_value_types():
    path = _DIR / "types.sqlite"
    path.write_bytes(VALID["sliderunner"])
    con = sqlite3.connect(path)
    con.execute("UPDATE Annotations_coordinates SET coordinateX = 'abc' WHERE uid = 1")
    con.commit()
    con.close()
    with pytest.raises(MitokitError, match="coordinateX"):
        read(path)
    path.write_bytes(VALID["sliderunner"])
    con = sqlite3.connect(path)
    con.execute("UPDATE Annotations SET slide = 99 WHERE uid = 1")
    con.commit()
    con.close()
    with pytest.raises(MitokitError, match="unknown slide"):
        read(path)

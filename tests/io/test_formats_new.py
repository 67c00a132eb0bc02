"""Grand-Challenge points, ASAP XML, ImageScope XML and class-folder patch data sets.

Hand-written files checked object by object, mm <-> px by hand, detection, every malformed case
a MitokitError, property tests (random bytes / JSON / XML give a set or a MitokitError, nothing
else), and the class-folder layout through `mitokit train`, `predict patches` and `evaluate
patches`.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import xml.etree.ElementTree as ET  # noqa: N817
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mitokit.cli import cli
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, read_annotations
from mitokit.io.formats import detect_format, read, write

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_DIR = Path(tempfile.mkdtemp(prefix="mitokit-newfmt-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def put(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path, *words: str):
    """pytest.raises for a one-line MitokitError naming ``path`` and containing ``words``."""
    return _Fails(path, words)


class _Fails:
    def __init__(self, path: Path, words: tuple[str, ...]):
        self.path, self.words = path, words

    def __enter__(self):
        self._ctx = pytest.raises(MitokitError)
        self.info = self._ctx.__enter__()
        return self.info

    def __exit__(self, *exc):
        handled = self._ctx.__exit__(*exc)
        msg = str(self.info.value)
        assert msg.startswith(str(self.path)), msg
        assert "\n" not in msg
        for w in self.words:
            assert w in msg, (w, msg)
        return handled


# ------------------------------------------------------------------- Grand-Challenge points

MIDOG = {
    "type": "Multiple points",
    "points": [
        {"name": "mitotic figure", "point": [0.1, 0.05, 0], "probability": 0.92},
        {"name": "non-mitotic figure", "point": [0.2, 0.3, 0], "probability": 0.1},
        {"point": [0.01, 0.02], "type": "Point"},  # no name, no probability, 2-D, extra key
    ],
    "version": {"major": 1, "minor": 0},
}


def test_gc_points_mm_to_pixels_by_hand(tmp_path):
    path = put(tmp_path / "007.json", json.dumps(MIDOG))
    assert detect_format(path) == "gc_points"
    got = read(path, mpp=0.25)
    assert got.format == "gc_points" and got.images == {"007": ImageInfo("007", mpp=0.25)}
    a, b, c = got.annotations
    assert a.point == pytest.approx((400.0, 200.0))  # 0.1 mm * 1000 / 0.25 um/px
    assert (a.id, a.image, a.label, a.score) == ("007_1", "007", "mitosis", 0.92)
    assert b.point == pytest.approx((800.0, 1200.0)) and b.label == "non_mitosis"
    assert c.point == pytest.approx((40.0, 80.0))
    assert (c.label, c.score) == ("mitosis", None)
    renamed = read(path, mpp="0.5", image="007.tiff", default_label="imposter")
    assert renamed.annotations[0].point == pytest.approx((200.0, 100.0))
    assert {x.image for x in renamed} == {"007.tiff"}
    assert renamed.annotations[2].label == "non_mitosis"


def test_gc_points_without_version_and_case_of_type(tmp_path):
    data = {"type": "MULTIPLE POINTS", "points": [{"point": [0, 0, 0]}]}
    path = put(tmp_path / "p.json", json.dumps(data))
    assert detect_format(path) == "gc_points"
    assert len(read(path, mpp=1)) == 1
    empty = put(tmp_path / "e.json", json.dumps({"type": "Multiple points", "points": []}))
    got = read(empty, mpp=0.25)
    assert len(got) == 0 and list(got.images) == ["e"]


def test_gc_points_need_an_mpp(tmp_path):
    path = put(tmp_path / "007.json", json.dumps(MIDOG))
    with fails(path, "mpp", "millimetres"):
        read(path)
    with fails(path, "mpp"):
        read(path, format="gc", mpp=-1)
    with fails(path, "mpp"):
        read(path, format="gc", mpp="abc")
    # A hint reaches only the readers that take it.
    assert len(read(path, hints={"mpp": 0.25})) == 3
    coco = tmp_path / "c.json"
    write(AnnotationSet([Annotation("1", "a", point=(1.0, 2.0))]), coco, format="coco")
    assert len(read(coco, hints={"mpp": 0.25})) == 1
    assert len(read(path, hints={"mpp": 1.0}, mpp=0.25)) == 3  # an explicit option wins
    assert read(path, hints={"mpp": 1.0}, mpp=0.25).annotations[0].point[0] == 400.0


def test_gc_points_round_trip(tmp_path):
    anns = [
        Annotation("1", "img", point=(400.0, 200.0), score=0.92),
        Annotation("2", "img", point=(12.345, 678.9), label="non_mitosis", score=0.125),
        Annotation("3", "img", box=(10.0, 20.0, 30.0, 60.0)),  # written at its centre
        Annotation("4", "img", point=(3.0, 4.0), label="atypical"),
    ]
    aset = AnnotationSet(anns, {"img": ImageInfo("img", mpp=0.2462)})
    out = tmp_path / "img.json"
    write(aset, out, format="grand-challenge")
    doc = json.loads(out.read_text())
    assert doc["type"] == "Multiple points" and doc["version"] == {"major": 1, "minor": 0}
    assert [p["name"] for p in doc["points"]] == [
        "mitotic figure",
        "non-mitotic figure",
        "mitotic figure",
        "atypical",
    ]
    assert doc["points"][0]["point"] == pytest.approx([400 * 0.2462 / 1000, 200 * 0.2462 / 1000, 0])
    assert "probability" not in doc["points"][2]
    back = read(out, mpp=0.2462)
    assert len(back) == 4
    for want, got in zip(anns, back.annotations, strict=True):
        assert got.point == pytest.approx(want.center, rel=1e-12, abs=1e-9)
        assert (got.label, got.score) == (want.label, want.score)


def test_gc_points_writer_needs_one_image_and_an_mpp(tmp_path):
    two = AnnotationSet(
        [Annotation("1", "a", point=(1.0, 1.0)), Annotation("2", "b", point=(2.0, 2.0))],
        {"a": ImageInfo("a", mpp=0.25), "b": ImageInfo("b", mpp=0.25)},
    )
    out = tmp_path / "out.json"
    with fails(out, "one image", "'a'", "'b'"):
        write(two, out, format="gc_points")
    write(two, out, format="gc_points", image="b")
    assert read(out, mpp=0.25).annotations[0].point == pytest.approx((2.0, 2.0))
    bare = AnnotationSet([Annotation("1", "a", point=(1.0, 1.0))])
    with fails(out, "mpp"):
        write(bare, out, format="gc_points")
    write(bare, out, format="gc_points", mpp=0.5)  # an explicit mpp (as --mpp) also overrides
    assert json.loads(out.read_text())["points"][0]["point"] == [0.0005, 0.0005, 0]
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ('{"type": "Multiple points", "points": {"a": 1}}', ["'points' must be a list"]),
        ('{"type": "Multiple points"}', ["'points' must be a list"]),
        ('[{"type": "Multiple points"}]', ["Multiple points"]),
        ('{"type": "Multiple points", "points": [3]}', ["point #1", "not an object"]),
        ('{"type": "Multiple points", "points": [{"name": "x"}]}', ["point #1", "'point'"]),
        ('{"type": "Multiple points", "points": [{"point": [1]}]}', ["point #1"]),
        ('{"type": "Multiple points", "points": [{"point": [1, 2, 3, 4]}]}', ["point #1"]),
        ('{"type": "Multiple points", "points": [{"point": "1,2"}]}', ["point #1"]),
        ('{"type": "Multiple points", "points": [{"point": [NaN, 1, 0]}]}', ["point #1 x"]),
        (
            '{"type": "Multiple points", "points": [{"point": [0, 0]}, {"point": [1, Infinity]}]}',
            ["point #2 y", "not finite"],
        ),
        ('{"type": "Multiple points", "points": [{"point": [1, 2, NaN]}]}', ["point #1 z"]),
        ('{"type": "Multiple points", "points": [{"point": ["1", 2]}]}', ["point #1 x"]),
        ('{"type": "Multiple points", "points": [{"point": [true, 2]}]}', ["point #1 x"]),
        ('{"type": "Multiple points", "points": [{"point": [1e308, 2]}]}', ["point #1"]),
        ('{"type": "Multiple points", "points": [{"point": [-1, 2]}]}', ["bad_1"]),
        (
            '{"type": "Multiple points", "points": [{"point": [1, 2], "probability": NaN}]}',
            ["point #1 probability"],
        ),
        (
            '{"type": "Multiple points", "points": [{"point": [1, 2], "probability": "high"}]}',
            ["point #1 probability"],
        ),
        ('{"type": "Multiple points", "points": [{"point": [1, 2], "name": {}}]}', ["point #1"]),
        ('{"type": "Multiple points", "points": [', ["invalid JSON"]),
    ],
)
def test_gc_points_malformed(tmp_path, doc, words):
    path = put(tmp_path / "bad.json", doc)
    with fails(path, *words):
        read(path, format="gc_points", mpp=0.25)


def test_gc_points_json_that_is_not_gc_is_not_sniffed_as_it(tmp_path):
    path = put(tmp_path / "x.json", json.dumps({"type": "Multiple points", "points": 3}))
    with fails(path, "unknown annotation format"):
        detect_format(path)


# ------------------------------------------------------------------------------- ASAP XML

ASAP = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="A1" Type="Polygon" PartOfGroup="mitotic figure" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="1" X="20" Y="0"/>
        <Coordinate Order="0" X="0" Y="0"/>
        <Coordinate Order="2" X="10,5" Y="15"/>
      </Coordinates>
    </Annotation>
    <Annotation Name="A2" Type="Dot" PartOfGroup="None" Color="#F4FA58">
      <Coordinates><Coordinate Order="0" X="7.5" Y="8.25"/></Coordinates>
    </Annotation>
    <Annotation Name="ruler" Type="Measurement" PartOfGroup="None" Color="#000000">
      <Coordinates>
        <Coordinate Order="0" X="1" Y="1"/><Coordinate Order="1" X="90" Y="1"/>
      </Coordinates>
    </Annotation>
    <Annotation Name="set" Type="PointSet" PartOfGroup="imposter" Color="#0000ff">
      <Coordinates>
        <Coordinate Order="0" X="100" Y="200"/><Coordinate Order="1" X="300" Y="400"/>
      </Coordinates>
    </Annotation>
    <Annotation Name="A1" Type="Rectangle" PartOfGroup="Atypical" Color="#ff0000">
      <Coordinates>
        <Coordinate Order="0" X="50" Y="60"/><Coordinate Order="1" X="70" Y="60"/>
        <Coordinate Order="2" X="70" Y="90"/><Coordinate Order="3" X="50" Y="90"/>
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="mitotic figure" PartOfGroup="None" Color="#ff0000"><Attributes/></Group>
    <Group Name="imposter" PartOfGroup="None" Color="#0000ff"><Attributes/></Group>
  </AnnotationGroups>
</ASAP_Annotations>
"""


def test_asap_xml_object_by_object(tmp_path):
    path = put(tmp_path / "slide_07.xml", ASAP)
    assert detect_format(path) == "asap_xml"
    got = read(path)
    assert got.format == "asap_xml" and list(got.images) == ["slide_07"]
    rows = [(a.id, a.point, a.box, a.label) for a in got]
    assert rows == [
        ("A1", None, (0.0, 0.0, 20.0, 15.0), "mitosis"),  # Order sorted, decimal comma read
        ("A2", (7.5, 8.25), None, "mitosis"),  # PartOfGroup None -> default label
        ("set_1", (100.0, 200.0), None, "non_mitosis"),
        ("set_2", (300.0, 400.0), None, "non_mitosis"),
        ("A1#5", None, (50.0, 60.0, 70.0, 90.0), "Atypical"),  # a repeated name
    ]
    assert got.annotations[0].extra == {"type": "Polygon"}
    named = read(path, format="asap", image="slide_07.tif", default_label="imposter")
    assert {a.image for a in named} == {"slide_07.tif"}
    assert named.annotations[1].label == "non_mitosis"


def test_asap_xml_without_annotations_is_an_empty_image(tmp_path):
    path = put(tmp_path / "e.xml", "<ASAP_Annotations><Annotations/></ASAP_Annotations>")
    got = read(path)
    assert len(got) == 0 and list(got.images) == ["e"]


def _asap(coords: str, kind: str = "Polygon") -> str:
    return (
        f'<ASAP_Annotations><Annotations><Annotation Name="n" Type="{kind}" PartOfGroup="None">'
        f"<Coordinates>{coords}</Coordinates></Annotation></Annotations></ASAP_Annotations>"
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_asap('<Coordinate Order="0" Y="1"/>'), ["annotation #1", "coordinate #1", "no X"]),
        (_asap('<Coordinate Order="0" X="1" Y="nan"/>'), ["coordinate #1 Y", "not finite"]),
        (_asap('<Coordinate Order="0" X="1" Y="inf"/>'), ["not finite"]),
        (_asap('<Coordinate Order="0" X="abc" Y="1"/>'), ["coordinate #1 X", "not a number"]),
        (_asap('<Coordinate Order="x" X="1" Y="1"/>'), ["Order"]),
        (_asap(""), ["annotation #1", "no coordinates"]),
        (
            _asap('<Coordinate Order="0" X="1" Y="1"/><Coordinate Order="1" X="2" Y="2"/>', "Dot"),
            ["Dot needs one coordinate"],
        ),
        (_asap('<Coordinate Order="0" X="-500" Y="1"/>', "Dot"), ["annotation n"]),
        ("<ASAP_Annotations><Annotations>", ["invalid XML", "line 1"]),
        ("<Other/>", ["not an ASAP XML file"]),
        (
            '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            "<ASAP_Annotations>&e;</ASAP_Annotations>",
            ["invalid XML"],
        ),
    ],
)
def test_asap_xml_malformed(tmp_path, text, words):
    path = put(tmp_path / "bad.xml", text)
    with fails(path, *words):
        read(path, format="asap_xml")


def test_xml_entity_expansion_is_refused(tmp_path):
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {n} "{("&" + p + ";") * 10}">' for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    text = f'<?xml version="1.0"?><!DOCTYPE r [{entities}]><ASAP_Annotations>&h;</ASAP_Annotations>'
    path = put(tmp_path / "bomb.xml", text)
    with fails(path, "invalid XML"):
        read(path, format="asap_xml")
    with fails(path):
        read(path)


# ------------------------------------------------------------------------- ImageScope XML

IMAGESCOPE = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.252000">
  <Annotation Id="1" Name="Mitosis" ReadOnly="0" LineColor="65280" Visible="1">
    <Attributes><Attribute Name="Description" Id="0" Value=""/></Attributes>
    <Regions>
      <RegionAttributeHeaders/>
      <Region Id="1" Type="0" Zoom="0.5" Text="" NegativeROA="0">
        <Attributes/><Vertices><Vertex X="100.5" Y="200.25" Z="0"/></Vertices>
      </Region>
      <Region Id="2" Type="1" Text="imposter" NegativeROA="0">
        <Vertices>
          <Vertex X="10" Y="20" Z="0"/><Vertex X="40" Y="20" Z="0"/>
          <Vertex X="40" Y="50" Z="0"/><Vertex X="10" Y="50" Z="0"/>
        </Vertices>
      </Region>
      <Region Id="3" Type="2" Text="">
        <Vertices><Vertex X="300" Y="310"/><Vertex X="260" Y="280"/></Vertices>
      </Region>
      <Region Id="4" Type="0" NegativeROA="1">
        <Vertices><Vertex X="1" Y="1"/><Vertex X="2" Y="1"/><Vertex X="2" Y="2"/></Vertices>
      </Region>
    </Regions>
    <Plots/>
  </Annotation>
  <Annotation Id="2" Name="" LineColor="255">
    <Regions>
      <Region Id="1" Type="0" Text=""><Vertices><Vertex X="5" Y="6"/></Vertices></Region>
    </Regions>
  </Annotation>
</Annotations>
"""


def test_imagescope_xml_object_by_object(tmp_path):
    path = put(tmp_path / "TCGA-01.xml", IMAGESCOPE)
    assert detect_format(path) == "imagescope_xml"
    got = read(path)
    assert got.format == "imagescope_xml"
    assert got.images == {"TCGA-01": ImageInfo("TCGA-01", mpp=0.252)}
    rows = [(a.id, a.point, a.box, a.label) for a in got]
    assert rows == [
        ("1_1", (100.5, 200.25), None, "mitosis"),  # one vertex: a point; class: layer name
        ("1_2", None, (10.0, 20.0, 40.0, 50.0), "non_mitosis"),  # region text first
        ("1_3", None, (260.0, 280.0, 300.0, 310.0), "mitosis"),  # ellipse: its two corners
        ("2_1", (5.0, 6.0), None, "mitosis"),  # no text, no name: the default label
    ]
    assert got.annotations[1].extra == {"region_type": "1", "text": "imposter"}
    other = read(path, format="aperio", image="TCGA-01.svs", default_label="imposter")
    assert other.annotations[-1].label == "non_mitosis"
    assert set(other.images) == {"TCGA-01.svs"}


@pytest.mark.parametrize(("value", "mpp"), [("0", None), ("", None), ("0.5", 0.5), ("0,5", 0.5)])
def test_imagescope_mpp(tmp_path, value, mpp):
    path = put(tmp_path / "m.xml", f'<Annotations MicronsPerPixel="{value}"/>')
    assert detect_format(path) == "imagescope_xml"
    assert read(path).images["m"].mpp == mpp


def _region(vertices: str) -> str:
    return (
        '<Annotations><Annotation Id="1" Name="m"><Regions><Region Id="7">'
        f"<Vertices>{vertices}</Vertices></Region></Regions></Annotation></Annotations>"
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_region('<Vertex X="1"/>'), ["annotation '1' region '7' vertex #1", "no Y"]),
        (_region('<Vertex X="1" Y="-inf"/>'), ["vertex #1 Y", "not finite"]),
        (_region('<Vertex X="1" Y="2"/><Vertex X="NaN" Y="2"/>'), ["vertex #2 X"]),
        (_region('<Vertex X="1e999" Y="2"/>'), ["vertex #1 X"]),
        (_region(""), ["region '7'", "no vertices"]),
        ('<Annotations MicronsPerPixel="-0.25"/>', ["MicronsPerPixel", "negative"]),
        ('<Annotations MicronsPerPixel="abc"/>', ["MicronsPerPixel", "not a number"]),
        ("<Annotations><Annotation></Annotations>", ["invalid XML", "line 1"]),
        ("<Regions/>", ["not an ImageScope XML file"]),
    ],
)
def test_imagescope_xml_malformed(tmp_path, text, words):
    path = put(tmp_path / "bad.xml", text)
    with fails(path, *words):
        read(path, format="imagescope_xml")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<html><body/></html>", ["unknown annotation format", "<html>"]),
        ("<Annotations><Annotation><Coordinates/></Annotation></Annotations>", ["unknown"]),
        ("<ASAP_Annotations><Annotations>", ["invalid XML"]),
        ("<not xml", ["invalid XML"]),
    ],
)
def test_xml_sniffing_refuses_what_it_cannot_place(tmp_path, text, words):
    path = put(tmp_path / "x.xml", text)
    with fails(path, *words):
        read(path)


# ------------------------------------------------------------------ CLI: convert, evaluate


def test_labels_convert_to_and_from_gc_points(tmp_path):
    src = put(tmp_path / "s.xml", IMAGESCOPE)
    out = tmp_path / "s.json"
    res = CliRunner().invoke(
        cli, ["labels", "convert", str(src), str(out), "--out-format", "gc_points"]
    )
    assert res.exit_code == 0, res.output  # the file's own mpp
    doc = json.loads(out.read_text())
    assert doc["points"][0]["point"] == pytest.approx([100.5 * 0.252e-3, 200.25 * 0.252e-3, 0])
    back = tmp_path / "back.geojson"
    res = CliRunner().invoke(cli, ["labels", "convert", str(out), str(back)])
    assert res.exit_code == 2 and "mpp" in res.output and res.output[-1] == "\n"
    res = CliRunner().invoke(cli, ["labels", "convert", str(out), str(back), "--mpp", "0.252"])
    assert res.exit_code == 0, res.output
    assert read(back).annotations[0].point == pytest.approx((100.5, 200.25))


def test_evaluate_points_with_gc_files(tmp_path):
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    truth = put(
        tmp_path / "truth" / "007.json",
        json.dumps({"type": "Multiple points", "points": [{"point": [0.1, 0.1, 0]}]}),
    )
    pred = put(
        tmp_path / "pred" / "007.json",
        json.dumps(
            {
                "type": "Multiple points",
                "points": [
                    {"name": "mitotic figure", "point": [0.1005, 0.1, 0], "probability": 0.9},
                    {"name": "mitotic figure", "point": [0.3, 0.3, 0], "probability": 0.2},
                ],
            }
        ),
    )
    args = ["evaluate", "points", "--pred", str(pred), "--truth", str(truth), "--json"]
    res = CliRunner().invoke(cli, [*args, "--mpp", "0.25"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["tp"], out["fp"], out["fn"]) == (1, 1, 0)  # 0.5 um apart: within 7.5 um
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "mpp" in res.output


# --------------------------------------------------------------------- class-folder patches


def _png(path: Path, value: int, size: int = 16, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(value, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def _image_folder(root: Path, classes: dict[str, int], n: int = 4) -> Path:
    for k, (name, value) in enumerate(classes.items()):
        for i in range(n):
            _png(root / name / f"{name.lower()}_{i}.png", value, seed=10 * k + i)
    return root


def test_imagefolder_with_a_mitosis_folder(tmp_path):
    root = _image_folder(tmp_path / "ds", {"Mitosis": 60, "Imposter": 180}, n=2)
    _png(root / "Mitosis" / "deeper" / "x.png", 60)  # nested: still its top-level class
    (root / "Mitosis" / "notes.txt").write_text("not an image")
    _png(root / ".cache" / "y.png", 0)  # hidden folders are no class
    _png(root / "Imposter" / ".hidden.png", 0)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "Imposter" / "z.jpg")
    assert detect_format(root) == "imagefolder"
    got = read_annotations(root)
    assert got.format == "imagefolder" and got.vote_target == "mitosis"
    rows = [(a.id, a.image, a.label, a.box) for a in got]
    assert rows == [
        ("Imposter/imposter_0.png", "Imposter/imposter_0.png", "non_mitosis", (0, 0, 16, 16)),
        ("Imposter/imposter_1.png", "Imposter/imposter_1.png", "non_mitosis", (0, 0, 16, 16)),
        ("Imposter/z.jpg", "Imposter/z.jpg", "non_mitosis", (0, 0, 12, 10)),
        ("Mitosis/deeper/x.png", "Mitosis/deeper/x.png", "mitosis", (0, 0, 16, 16)),
        ("Mitosis/mitosis_0.png", "Mitosis/mitosis_0.png", "mitosis", (0, 0, 16, 16)),
        ("Mitosis/mitosis_1.png", "Mitosis/mitosis_1.png", "mitosis", (0, 0, 16, 16)),
    ]
    assert got.annotations[2].point == (6.0, 5.0)
    assert got.images["Imposter/z.jpg"] == ImageInfo("Imposter/z.jpg", "Imposter/z.jpg", 12, 10)


def test_imagefolder_positive_class_rule(tmp_path):
    root = _image_folder(tmp_path / "amibr", {"Atypical": 60, "Normal": 180}, n=1)
    with fails(root, "Atypical/", "Normal/", "positive"):
        read_annotations(root)
    got = read_annotations(root, positive="atypical")
    assert got.vote_target == "Atypical"
    assert [a.label for a in got] == ["Atypical", "Normal"]
    with fails(root, "'Mitosis'", "Atypical/, Normal/"):
        read_annotations(root, positive="Mitosis")
    csv_file = tmp_path / "labels.csv"
    write(AnnotationSet([Annotation("1", "a.png", point=(1.0, 1.0))]), csv_file)
    with fails(csv_file, "positive"):
        read_annotations(csv_file, positive="Atypical")


def test_imagefolder_refusals(tmp_path):
    one = _image_folder(tmp_path / "one", {"Mitosis": 60}, n=1)
    with fails(one, "unknown annotation format"):
        detect_format(one)
    with fails(one, "two or more"):
        read_annotations(one, format="imagefolder")
    loose = _image_folder(tmp_path / "loose", {"Mitosis": 60, "Normal": 180}, n=1)
    _png(loose / "stray.png", 0)
    with fails(loose, "belong to no class", "stray.png"):
        read_annotations(loose, format="imagefolder")
    broken = _image_folder(tmp_path / "broken", {"Mitosis": 60, "Normal": 180}, n=1)
    (broken / "Normal" / "bad.jpg").write_bytes(b"not a jpeg")
    with fails(broken / "Normal" / "bad.jpg", "cannot read the image"):
        read_annotations(broken)
    afile = put(tmp_path / "f.png", "x")
    with fails(afile, "folder"):
        read_annotations(afile, format="imagefolder")


def test_imagefolder_train_predict_evaluate(tmp_path):
    root = _image_folder(tmp_path / "patches", {"Atypical": 50, "Normal": 200}, n=6)
    cfg = {
        "task": "patch_classifier",
        "model": {"arch": "resnet18", "input_size": 32},
        "data": {
            "labels": str(root),
            "positive": "Atypical",
            "folds": 0,
            "batch_size": 4,
            "augment": False,
        },
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "out": str(tmp_path / "run")},
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(cfg_path), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "run"
    res = runner.invoke(cli, ["predict", "patches", "--model", str(model), str(root), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert len(rows) == 12
    assert rows[0]["id"] == "Atypical/atypical_0.png"
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    args = ["evaluate", "patches", "--model", str(model), "--labels", str(root), "--json"]
    res = runner.invoke(cli, args)  # the positive class the model was trained with
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["n"], out["n_positive"], out["positive"]) == (12, 6, "Atypical")
    res = runner.invoke(cli, [*args, "--positive", "Normal"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["positive"] == "Normal"
    cfg["data"].pop("positive")
    cfg["train"]["out"] = str(tmp_path / "run2")
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(cli, ["train", str(cfg_path), "--no-progress"])
    assert res.exit_code == 2 and "Atypical/, Normal/" in res.output


# ------------------------------------------------------------------------- property tests

READ_AS = {
    "gc_points": ("p.json", {"mpp": 0.25}),
    "asap_xml": ("a.xml", {}),
    "imagescope_xml": ("s.xml", {}),
}


def check(data: bytes, fmt: str | None, name: str = "f.bin") -> None:
    """Read ``data``; it must give a set or a one-line MitokitError naming the file."""
    if fmt is not None:
        name, options = READ_AS[fmt]
    path = _DIR / name
    path.write_bytes(data)
    try:
        result = read(path, format=fmt, **options) if fmt else read(path, hints={"mpp": 0.25})
    except MitokitError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err)
        return
    assert isinstance(result, AnnotationSet)


VALID = {
    "gc_points": json.dumps(MIDOG).encode(),
    "asap_xml": ASAP.encode(),
    "imagescope_xml": IMAGESCOPE.encode(),
}


def test_valid_examples_read():
    for fmt, data in VALID.items():
        path = _DIR / READ_AS[fmt][0]
        path.write_bytes(data)
        assert len(read(path, **READ_AS[fmt][1])) > 0


@pytest.mark.parametrize("fmt", sorted(READ_AS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(fmt, data):
    check(data, fmt)
    check(data, None, READ_AS[fmt][0])


@pytest.mark.parametrize("fmt", sorted(READ_AS))
@FUZZ
@given(data=st.data())
def test_mutated_examples(fmt, data):
    blob = bytearray(VALID[fmt])
    for _ in range(data.draw(st.integers(1, 6))):
        if not blob:
            break
        pos = data.draw(st.integers(0, len(blob) - 1))
        piece = data.draw(
            st.sampled_from(
                [b"<", b">", b'"', b"/", b"&", b"nan", b"-1", b"1e999", b",", b"\x00", b"\xff"]
                + [b"]", b"{", b"null", b'="x"', b"<Vertex/>", b"<Coordinate/>", b"inf"]
            )
        )
        if data.draw(st.booleans()):
            blob[pos:pos] = piece
        else:
            del blob[pos : pos + data.draw(st.integers(1, 30))]
    check(bytes(blob), fmt)
    check(bytes(blob), None, READ_AS[fmt][0])


GC_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["Multiple points", "Point", "mitotic figure", "non-mitotic figure"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "points", "point", "name", "probability", "version"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@FUZZ
@given(value=GC_JSON)
def test_random_json(value):
    data = json.dumps(value).encode()
    check(data, "gc_points")
    check(data, None, "p.json")


@FUZZ
@given(
    points=st.lists(
        st.fixed_dictionaries(
            {"point": st.lists(st.floats() | st.integers(-(10**6), 10**6), max_size=4)},
            optional={"name": st.text(max_size=5), "probability": st.floats() | st.none()},
        ),
        max_size=4,
    )
)
def test_gc_like_documents(points):
    check(json.dumps({"type": "Multiple points", "points": points}).encode(), "gc_points")


XML_TAGS = [
    "ASAP_Annotations",
    "Annotations",
    "Annotation",
    "Coordinates",
    "Coordinate",
    "AnnotationGroups",
    "Group",
    "Regions",
    "Region",
    "Vertices",
    "Vertex",
    "Attributes",
]
XML_ATTRS = st.dictionaries(
    st.sampled_from(
        ["X", "Y", "Z", "Order", "Type", "PartOfGroup", "Name", "Text", "Id", "MicronsPerPixel"]
        + ["NegativeROA"]
    ),
    st.one_of(
        st.integers(-5, 10**6).map(str),
        st.floats().map(repr),
        st.text(max_size=5),
        st.sampled_from(["nan", "inf", "1,5", "", "Dot", "PointSet", "Polygon", "None", "1"]),
    ),
    max_size=4,
)


@st.composite
def xml_tree(draw, depth: int = 0) -> ET.Element:
    elem = ET.Element(draw(st.sampled_from(XML_TAGS)), draw(XML_ATTRS))
    if depth < 4:
        for child in draw(st.lists(xml_tree(depth + 1), max_size=3)):
            elem.append(child)
    return elem


@pytest.mark.parametrize("fmt", ["asap_xml", "imagescope_xml"])
@FUZZ
@given(tree=xml_tree(), root=st.sampled_from(["ASAP_Annotations", "Annotations", "Other"]))
def test_random_xml(fmt, tree, root):
    top = ET.Element(root)
    top.append(tree)
    data = ET.tostring(top)
    check(data, fmt)
    check(data, None, READ_AS[fmt][0])

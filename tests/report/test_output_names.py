"""Files named after image ids stay inside their folder and never share a name.

Through ``evaluate points --overlay`` (one PNG per image) and ``write_geojson_per_image`` (one
GeoJSON per image), with ids a label file may hold: ``..``, ``../x``, ``a/b``, a NUL, a newline,
very long ids and ids that differ only in case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from mitokit.cli import cli
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations
from mitokit.io.formats import read, write_geojson_per_image

HOSTILE_IDS = [
    "..",
    "...",
    ".",
    "../x.png",
    "../../etc/passwd",
    "a/b.png",
    "a_b.png",
    "A_B.png",
    "a\nb.png",
    "x" * 200 + ".png",
    ".hidden.png",
    "/abs/c.png",
    "con.png",
]


def _set(ids) -> AnnotationSet:
    anns = [Annotation(f"t{k}", i, point=(10.0, 12.0)) for k, i in enumerate(ids)]
    return AnnotationSet(anns, {i: ImageInfo(i) for i in ids})


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_geojson_per_image_with_hostile_ids(tmp_path):
    ids = [*HOSTILE_IDS, "nul\x00id", "Slide", "slide", "SLIDE"]
    folder = tmp_path / "per"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    written = write_geojson_per_image(_set(ids), folder)
    assert set(written) == set(ids)
    paths = list(written.values())
    assert len({p.name.casefold() for p in paths}) == len(ids)  # distinct, even ignoring case
    for image_id, path in written.items():
        assert path.parent == folder and path.is_file()
        assert not path.name.startswith(".") and len(path.name.encode()) < 200
        back = read(path)
        assert [a.image for a in back] == [image_id]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["notes.txt", *(p.name for p in paths)]
    )
    assert _listing(tmp_path) == sorted(["per", *(f"per/{p.name}" for p in folder.iterdir())])


def test_overlays_with_hostile_ids(tmp_path, monkeypatch):
    ids = [i for i in HOSTILE_IDS if not i.startswith("/") and "etc" not in i]
    base = tmp_path / "t"
    base.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ids relative to the working folder find nothing there
    png = np.full((32, 32, 3), 200, np.uint8)
    # Where find_image looks for each id (beside the truth file).
    homes = {
        "..": base / "...png",
        "...": base / "...",
        ".": base / ".png",
        "../x.png": tmp_path / "x.png",
        "a/b.png": base / "a" / "b.png",
    }
    for image_id in ids:
        home = homes.get(image_id, base / image_id)
        home.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(png).save(home, format="PNG")
    truth = base / "truth.csv"
    write_annotations(_set(ids), truth, format="csv")
    out = tmp_path / "ov"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    args = ["evaluate", "points", "--pred", str(truth), "--truth", str(truth)]
    result = CliRunner().invoke(cli, [*args, "--radius-px", "5", "--overlay", str(out), "--json"])
    assert result.exit_code == 0, result.output
    overlays = [Path(p) for p in json.loads(result.stdout)["overlays"]]
    assert len(overlays) == len(ids)
    assert len({p.name.casefold() for p in overlays}) == len(ids)
    for p in overlays:
        assert p.parent == out and p.is_file() and p.name.endswith("_overlay.png")
        assert not p.name.startswith(".")
    assert (out / "notes.txt").read_text() == "mine"
    after = _listing(tmp_path)
    assert sorted(set(after) - set(before)) == sorted(f"ov/{p.name}" for p in overlays)

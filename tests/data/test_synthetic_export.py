"""Synthetic datasets on disk: every label kind readable, manifest complete, bytes reproducible."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from mitokit.data.synthetic.export import write_patch_dataset, write_tile_dataset
from mitokit.data.synthetic.labelling import RaterPanel
from mitokit.data.synthetic.scene import sample_cells
from mitokit.io.annotations import read_annotations


def _tree_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _cells(seed, size=400):
    return sample_cells((0, 0, size, size), rng=np.random.default_rng(seed))


def _images(n, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_patch_dataset_labels_and_manifest(tmp_path):
    cells = _cells(0).subset(slice(0, 12))
    panel = RaterPanel(n_raters=2, repeat_fraction=0.5)
    manifest = write_patch_dataset(tmp_path, _images(12, 32, 1), cells, seed=3, panel=panel)
    labels = read_annotations(tmp_path / "labels.csv")
    assert len(labels) == 12 and len(list((tmp_path / "images").glob("*.png"))) == 12
    assert labels.raters == ["pathologist1", "pathologist2"]
    assert all(a.point == (16.0, 16.0) for a in labels)
    assert all(len({v.rater for v in a.votes}) == 2 for a in labels)
    assert any(len(a.votes) > 2 for a in labels)  # repeated ratings survive the round trip
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["seed"] == 3 and on_disk["generator"]["version"]
    assert [o["m"] for o in on_disk["objects"]] == [round(float(m), 4) for m in cells.m]
    assert on_disk["parameters"]["panel"]["n_raters"] == 2


def test_tile_dataset_every_label_kind_and_same_bytes(tmp_path):
    tiles = [(_images(1, 400, s)[0], _cells(s)) for s in (1, 2)]
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        out.mkdir()
        write_tile_dataset(out, tiles, seed=5)
    assert _tree_digest(a) == _tree_digest(b)
    c = tmp_path / "c"
    c.mkdir()
    write_tile_dataset(c, tiles, seed=6)
    assert _tree_digest(c) != _tree_digest(a)

    n_cells = sum(len(t[1]) for t in tiles)
    assert len(read_annotations(a / "pathologists.csv")) == n_cells
    geo, coco = read_annotations(a / "consensus.geojson"), read_annotations(a / "consensus.json")
    assert len(geo) == len(coco) == n_cells
    assert sorted(a_.label for a_ in geo) == sorted(a_.label for a_ in coco)
    crowd = read_annotations(a / "crowd.json")
    assert all(x.box is not None and 0 < x.agreement <= 1 for x in crowd)
    centroids = read_annotations(a / "centroids.csv")
    assert {x.label for x in centroids} <= {"mitosis"}
    rows = (a / "image_labels.csv").read_text().splitlines()
    assert rows[0] == "image,label" and len(rows) == 3
    manifest = json.loads((a / "manifest.json").read_text())
    assert len(manifest["objects"]) == n_cells

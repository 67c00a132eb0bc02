"""Held-out generated slides and a saved model's point scores over them (slide engine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mitokit.engines.task import get_task
from mitokit.errors import MitokitError
from mitokit.experiments.heldout_slides import (
    SLIDE_SEED,
    slide_cells,
    slide_columns,
    slide_point_scores,
    slide_truth,
    write_heldout_slides,
)
from mitokit.io import open_slide
from mitokit.models.io import save_model
from mitokit.models.wss import WEAK_LOCALISER


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    return write_heldout_slides(root, n=2, size=768, seed=1)


def _consensus_mitoses(path) -> int:
    doc = json.loads((path.parent / "consensus.json").read_text())
    image = next(im["id"] for im in doc["images"] if im["file_name"] == path.name)
    mitosis = {c["id"] for c in doc["categories"] if c["name"] == "mitosis"}
    return sum(a["image_id"] == image and a["category_id"] in mitosis for a in doc["annotations"])


def test_heldout_slides_are_seeded_readable_and_labelled(slides, tmp_path):
    assert [p.parent.name for p in slides] == ["slide_00", "slide_01"]
    manifest = json.loads((slides[1].parent / "manifest.json").read_text())
    assert manifest["seed"] == SLIDE_SEED + 1000 + 1
    with open_slide(slides[0]) as s:
        assert s.dimensions == (768, 768) and s.mpp == pytest.approx(0.25)
    truth = [slide_truth(p) for p in slides]
    assert [len(t) for t in truth] == [_consensus_mitoses(p) for p in slides]
    assert sum(len(t) for t in truth) > 0
    assert all(((t >= 0) & (t <= 768)).all() for t in truth)
    # the same seed gives the same slide
    again = write_heldout_slides(tmp_path, n=1, size=768, seed=1)
    assert again[0].read_bytes() == slides[0].read_bytes()
    with pytest.raises(MitokitError, match="at least 256"):
        write_heldout_slides(tmp_path / "x", n=1, size=100)
    assert write_heldout_slides(tmp_path / "none", n=0) == []
    assert not (tmp_path / "none").exists()
    with pytest.raises(MitokitError, match="must be >= 0"):
        write_heldout_slides(tmp_path / "x", n=-1)


def _saved_localiser(tmp_path, threshold: float):
    torch.manual_seed(0)
    task = get_task(WEAK_LOCALISER)
    model = task.build_model({})
    with torch.no_grad():
        model.threshold.fill_(threshold)
    return save_model(
        model,
        tmp_path / f"m{threshold}",
        task=WEAK_LOCALISER,
        model_cfg=dict(task.model_defaults),
        extra={"data": {"mpp": 0.25, "input_size": 256}},
    )


def test_slide_scores_count_every_consensus_mitosis_once(slides, tmp_path):
    n_truth = sum(_consensus_mitoses(p) for p in slides)
    # a localiser whose map never reaches its threshold: every mitosis missed
    none = slide_point_scores(_saved_localiser(tmp_path, 1.0), slides)
    assert none["threshold"] == 1.0 == none["slide_pass_threshold"]
    assert (none["tp"], none["fp"], none["fn"]) == (0, 0, n_truth)
    assert none["n_truth"] == n_truth and none["n_slides"] == 2 and none["f1"] == 0
    # the latent truth: every generated cell with m > 0.5, read from the manifests
    objects = [json.loads((p.parent / "manifest.json").read_text())["objects"] for p in slides]
    assert [len(slide_cells(p)) for p in slides] == [len(o) for o in objects]
    n_latent = sum(o["m"] > 0.5 for objs in objects for o in objs)
    assert none["latent"]["n_truth"] == n_latent and none["latent"]["f1"] == 0
    # an observer who knows every m agrees with the raters' consensus, though not perfectly
    assert 0.6 < none["ceiling"]["f1"] <= none["ceiling"]["best_f1"] <= 1.0
    # an explicit threshold is the map threshold: at 0 each tile's map is one component
    low = slide_point_scores(_saved_localiser(tmp_path, 1.0), slides, threshold=0.0)
    assert low["threshold"] == 0.0 and low["tp"] + low["fp"] > 0
    assert low["tp"] + low["fn"] == n_truth
    for key in ("tp", "fp", "fn"):
        assert sum(s[key] for s in low["per_slide"]) == low[key]
    p, r = low["tp"] / (low["tp"] + low["fp"]), low["tp"] / n_truth
    assert low["f1"] == pytest.approx(0 if p + r == 0 else 2 * p * r / (p + r))
    assert np.isfinite(low["best_f1"]) and low["best_f1"] >= low["f1"]
    cols = slide_columns(low)
    assert cols["slide_f1"] == low["f1"] and cols["slide_truth"] == n_truth
    assert slide_columns(None) == {}

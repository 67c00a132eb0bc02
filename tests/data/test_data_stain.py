"""Macenko normalisation (torchstain wrapped) and HED jitter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mitokit.data import HEDJitter, MacenkoNormalizer, hed_jitter, read_rgb
from mitokit.data.stain import hed_to_rgb, rgb_to_hed
from mitokit.errors import MitokitError

# a stain change: more haematoxylin, less eosin, a touch of DAB-axis shift
SHIFT = (np.array([1.3, 0.7, 1.0]), np.array([0.0, 0.02, 0.0]))


@pytest.fixture(scope="module")
def crop(shared_data) -> np.ndarray:
    return read_rgb(shared_data / "he_tile" / "target_image.png")[:256, :256]


def _synthetic_he(seed: int = 0, size: int = 96) -> np.ndarray:
    """An H&E-looking image built in HED space (no real data needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    h = 0.03 + 0.05 * (np.sin(9 * xx) * np.cos(7 * yy) > 0.3) + rng.uniform(0, 0.01, (size, size))
    e = 0.02 + 0.02 * np.cos(5 * xx + 3 * yy) ** 2 + rng.uniform(0, 0.01, (size, size))
    hed = np.stack([h, e, np.zeros_like(h)], axis=-1)
    return np.rint(hed_to_rgb(hed) * 255).astype(np.uint8)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


def test_normalising_a_shifted_copy_brings_it_back(crop):
    shifted = hed_jitter(crop, *SHIFT)
    before = _mad(shifted, crop)
    assert before > 10
    norm = MacenkoNormalizer().fit(crop)
    after = _mad(norm.transform(shifted), crop)
    assert after < 0.5 * before
    assert norm(shifted).shape == crop.shape


def test_normalising_synthetic_he():
    img = _synthetic_he()
    shifted = hed_jitter(img, *SHIFT)
    norm = MacenkoNormalizer().fit(img)
    assert _mad(norm.transform(shifted), img) < 0.5 * _mad(shifted, img)


def test_save_and_load_as_json(tmp_path):
    img = _synthetic_he(1)
    norm = MacenkoNormalizer(beta=0.1).fit(img)
    path = tmp_path / "ref" / "macenko.json"
    norm.save(path)
    data = json.loads(path.read_text())
    assert data["method"] == "macenko" and np.array(data["stain_matrix"]).shape == (3, 2)
    loaded = MacenkoNormalizer.load(path)
    assert loaded.beta == 0.1
    other = _synthetic_he(2)
    assert np.array_equal(loaded.transform(other), norm.transform(other))


def test_load_errors(tmp_path):
    with pytest.raises(MitokitError, match="file not found"):
        MacenkoNormalizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MitokitError, match="bad.json: not valid JSON"):
        MacenkoNormalizer.load(bad)
    bad.write_text(json.dumps({"method": "macenko", "stain_matrix": [[1, 2]]}))
    with pytest.raises(MitokitError, match="lacks the field 'max_concentrations'"):
        MacenkoNormalizer.load(bad)
    bad.write_text(
        json.dumps({"method": "macenko", "stain_matrix": [[1, 2]], "max_concentrations": [1, 1]})
    )
    with pytest.raises(MitokitError, match="3x2"):
        MacenkoNormalizer.load(bad)
    with pytest.raises(MitokitError, match="not a Macenko"):
        MacenkoNormalizer.from_dict({"method": "reinhard"})


def test_too_little_tissue_is_a_clear_error():
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    with pytest.raises(MitokitError, match=r"^blank\.png: too little tissue"):
        MacenkoNormalizer().fit(white, name="blank.png")
    norm = MacenkoNormalizer().fit(_synthetic_he())
    with pytest.raises(MitokitError, match="too little tissue"):
        norm.transform(white)
    with pytest.raises(MitokitError, match="no reference"):
        MacenkoNormalizer().transform(_synthetic_he())
    with pytest.raises(MitokitError, match="uint8"):
        norm.transform(_synthetic_he().astype(np.float32))


def test_hed_round_trip_is_exact(crop):
    rgb = crop / 255.0
    assert np.abs(hed_to_rgb(rgb_to_hed(rgb)) - np.maximum(rgb, 1e-6)).max() < 1e-9


def test_jitter_identity_change_and_determinism(crop):
    assert np.abs(HEDJitter(0.0, 0.0, seed=0)(crop).astype(int) - crop).max() <= 1
    a = HEDJitter(0.05, 0.05, seed=11)
    b = HEDJitter(0.05, 0.05, seed=11)
    first = a(crop)
    assert _mad(first, crop) > 1
    assert np.array_equal(first, b(crop))
    assert not np.array_equal(a(crop), first)  # the next draw differs
    assert not np.array_equal(HEDJitter(0.05, 0.05, seed=12)(crop), first)
    a.reseed(11)
    assert np.array_equal(a(crop), first)


def test_jitter_on_tensors():
    img = _synthetic_he()
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    same = HEDJitter(0, 0, seed=0)(t)
    assert same.shape == t.shape and same.dtype == torch.float32
    assert torch.allclose(same, t, atol=1e-5)
    moved = HEDJitter(0.1, 0.02, seed=0)(t)
    assert (moved - t).abs().mean() > 1e-3
    with pytest.raises(MitokitError, match="float tensor"):
        HEDJitter(seed=0)(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(MitokitError, match="sigma"):
        HEDJitter(-0.1)

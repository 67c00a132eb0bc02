"""Tissue masks: nearly-all-tissue tile, one blob on white, all white, exact fractions."""

from __future__ import annotations

import numpy as np
import pytest

from mitokit.data import ArraySlide, read_rgb, require_tissue, tissue_fraction, tissue_mask
from mitokit.data.tissue import TissueMask
from mitokit.errors import MitokitError


def _disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


@pytest.fixture(scope="module")
def he_tile(shared_data) -> np.ndarray:
    return read_rgb(shared_data / "he_tile" / "target_image.png")


def test_real_tile_is_nearly_all_tissue(he_tile):
    for method in ("saturation", "od", "both"):
        assert tissue_mask(he_tile, method=method).fraction > 0.8


def test_one_blob_of_real_tissue_on_white(he_tile):
    disk = _disk(1000, 1000, 500, 450, 300)
    img = np.full_like(he_tile, 255)
    img[disk] = he_tile[disk]
    mask = tissue_mask(img)
    assert mask.downsample == (1.0, 1.0)
    assert abs(mask.fraction - disk.mean()) < 0.03
    assert (mask.mask != disk).mean() < 0.03
    assert mask.fraction_in((400, 350, 600, 550)) > 0.97  # inside the blob
    assert mask.fraction_in((0, 0, 100, 100)) == 0.0  # a white corner


def test_synthetic_blob_and_thumbnail_scale():
    rng = np.random.default_rng(1)
    h, w = 600, 1200
    disk = _disk(h, w, 400, 300, 200)
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    img[disk] = np.stack(
        [
            rng.integers(150, 220, disk.sum()),
            rng.integers(50, 130, disk.sum()),
            rng.integers(130, 200, disk.sum()),
        ],
        axis=-1,
    )
    mask = tissue_mask(img, thumbnail_size=300)
    assert mask.mask.shape == (150, 300)
    assert mask.downsample == (4.0, 4.0)
    assert abs(mask.fraction - disk.mean()) < 0.02


def test_all_white_gives_an_empty_mask():
    white = np.full((200, 300, 3), 255, dtype=np.uint8)
    mask = tissue_mask(ArraySlide(white))
    assert mask.empty and mask.fraction == 0.0
    with pytest.raises(MitokitError, match=r"^no tissue found in blank\.png$"):
        require_tissue(mask, "blank.png")
    tissue = TissueMask(np.ones((2, 2), dtype=bool), (1.0, 1.0))
    assert require_tissue(tissue) is tissue


def test_tissue_fraction_by_hand():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True  # left half is tissue; one mask pixel = 10 level-0 pixels
    assert tissue_fraction(mask, (0, 0, 20, 40), 10) == pytest.approx(1.0)
    assert tissue_fraction(mask, (10, 0, 30, 40), 10) == pytest.approx(0.5)
    assert tissue_fraction(mask, (15, 0, 25, 40), 10) == pytest.approx(0.5)  # cuts pixels
    assert tissue_fraction(mask, (-40, 0, 40, 40), 10) == pytest.approx(0.25)  # half outside
    assert tissue_fraction(mask, (100, 100, 200, 200), 10) == 0.0
    assert tissue_fraction(mask, (5, 5, 5, 5), 10) == 0.0
    assert tissue_fraction(mask, (0, 0, 20, 80), (10, 20)) == pytest.approx(1.0)


def test_bad_settings():
    img = np.full((50, 50, 3), 255, dtype=np.uint8)
    with pytest.raises(MitokitError, match="unknown tissue method"):
        tissue_mask(img, method="magic")
    with pytest.raises(MitokitError, match="smooth_px"):
        tissue_mask(img, smooth_px=-1)
    with pytest.raises(MitokitError, match="x2 < x1"):
        tissue_fraction(np.ones((2, 2), bool), (5, 0, 1, 1))
    with pytest.raises(MitokitError, match="uint8"):
        tissue_mask(img.astype(np.float32))

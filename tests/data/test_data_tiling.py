"""Tile grids, edge policies, Tile records and tissue-filtered slide tiling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitokit.data import ArraySlide, Tile, as_tiles, tile_boxes, tile_grid, tiles_for_slide
from mitokit.errors import MitokitError


def _coverage(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    cover = np.zeros((h, w), dtype=np.int64)
    for x1, y1, x2, y2 in boxes.tolist():
        cover[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)] += 1
    return cover


def test_sub_tiles_of_a_1000_px_tile_are_7_by_7():
    boxes = tile_grid((1000, 1000), tile=250, stride=125, origin=(2000, 3000))
    assert boxes.shape == (49, 4)
    assert boxes.dtype == np.int64
    assert boxes[0].tolist() == [2000, 3000, 2250, 3250]
    assert boxes[-1].tolist() == [2750, 3750, 3000, 4000]
    assert boxes[1].tolist() == [2125, 3000, 2375, 3250]  # row-major: x moves first
    assert set(np.unique(boxes[:, 0] - 2000).tolist()) == {0, 125, 250, 375, 500, 625, 750}
    assert (boxes[:, 2] - boxes[:, 0] == 250).all()


def test_drop_pad_and_shift_edges():
    drop = tile_grid((1000, 500), tile=300)
    assert sorted(set(drop[:, 0].tolist())) == [0, 300, 600]
    assert sorted(set(drop[:, 1].tolist())) == [0]
    assert len(drop) == 3 and drop[:, 2].max() == 900

    pad = tile_grid((1000, 500), tile=300, include_partial="pad")
    assert sorted(set(pad[:, 0].tolist())) == [0, 300, 600, 900]
    assert sorted(set(pad[:, 1].tolist())) == [0, 300]
    assert pad[:, 2].max() == 1200  # sticks out, read padded
    assert np.array_equal(pad, tile_grid((1000, 500), tile=300, include_partial=True))

    shift = tile_grid((1000, 500), tile=300, include_partial="shift")
    assert sorted(set(shift[:, 0].tolist())) == [0, 300, 600, 700]
    assert sorted(set(shift[:, 1].tolist())) == [0, 200]
    assert shift[:, 2].max() == 1000 and shift[:, 3].max() == 500
    assert (_coverage(shift, 1000, 500) >= 1).all()


def test_tile_larger_than_image():
    assert tile_grid((100, 80), tile=128).shape == (0, 4)
    assert tile_grid((100, 80), tile=128, include_partial="shift").tolist() == [[0, 0, 128, 128]]
    assert tile_grid((0, 80), tile=16, include_partial="pad").shape == (0, 4)


def test_rectangular_tiles_and_strides():
    boxes = tile_grid((100, 60), tile=(50, 20), stride=(25, 20))
    assert len(boxes) == 3 * 3
    assert ((boxes[:, 2] - boxes[:, 0]) == 50).all() and ((boxes[:, 3] - boxes[:, 1]) == 20).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tile": 0}, "tile must be positive"),
        ({"tile": 10, "stride": 0}, "stride must be positive"),
        ({"tile": 10, "stride": -5}, "stride must be positive"),
        ({"tile": 10.5}, "whole numbers"),
        ({"tile": 10, "include_partial": "wrap"}, "unknown edge policy"),
    ],
)
def test_bad_grid_settings(kwargs, message):
    with pytest.raises(MitokitError, match=message):
        tile_grid((100, 100), **kwargs)


def test_negative_size_is_an_error():
    with pytest.raises(MitokitError, match="size"):
        tile_grid((-1, 100), tile=10)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    tile=st.integers(1, 120),
    stride_frac=st.floats(0.1, 1.0),
)
def test_shift_covers_exactly_with_full_tiles(w, h, tile, stride_frac):
    stride = max(1, int(tile * stride_frac))
    boxes = tile_grid((w, h), tile=tile, stride=stride, include_partial="shift")
    assert (_coverage(boxes, w, h) >= 1).all()
    if w >= tile and h >= tile:
        assert boxes[:, :2].min() >= 0
        assert boxes[:, 2].max() == w and boxes[:, 3].max() == h
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)  # no duplicates
    drop = tile_grid((w, h), tile=tile, stride=stride)
    assert (drop[:, 2] <= w).all() and (drop[:, 3] <= h).all()


def _half_tissue(w: int = 400, h: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    tissue = np.stack(
        [
            rng.integers(150, 210, (h, w // 2)),
            rng.integers(60, 120, (h, w // 2)),
            rng.integers(140, 200, (h, w // 2)),
        ],
        axis=-1,
    )
    img[:, w // 2 :] = tissue.astype(np.uint8)
    return img


def test_tiles_for_slide_skips_background():
    img = _half_tissue()
    tiles = list(tiles_for_slide(img, tile=100, image="s1"))
    assert len(tiles) == 4  # the right half: 2 x 2 tiles
    assert all(t.x >= 200 for t in tiles)
    assert all(t.tissue > 0.9 and t.image == "s1" for t in tiles)
    t = tiles[0]
    assert t.box == (200, 0, 300, 100)
    assert np.array_equal(t.read(img), img[0:100, 200:300])
    everything = list(tiles_for_slide(img, tile=100, min_tissue=0.0))
    assert len(everything) == 8
    assert min(t.tissue for t in everything) == 0.0


def test_tiles_for_slide_at_level_1():
    img = _half_tissue()
    slide = ArraySlide(img, downsamples=(1, 2))
    tiles = list(tiles_for_slide(slide, tile=50, level=1))
    assert len(tiles) == 4
    assert tiles[0].box == (200, 0, 300, 100)
    assert tiles[0].read(slide).shape == (50, 50, 3)


def test_no_tissue():
    white = np.full((300, 300, 3), 255, dtype=np.uint8)
    assert list(tiles_for_slide(white, tile=100)) == []
    slide = ArraySlide(white, name="blank.png")
    with pytest.raises(MitokitError, match="no tissue found in blank.png"):
        tiles_for_slide(slide, tile=100, require_tissue=True)  # raised at the call
    with pytest.raises(MitokitError, match="min_tissue"):
        tiles_for_slide(white, tile=100, min_tissue=1.5)


def test_as_tiles():
    tiles = as_tiles([("a", [0, 0, 10, 20]), Tile(5, 5, 10, 10, image="b")])
    assert tiles[0] == Tile(0, 0, 10, 20, image="a")
    assert tile_boxes(tiles).tolist() == [[0, 0, 10, 20], [5, 5, 15, 15]]
    with pytest.raises(MitokitError, match="no image id"):
        as_tiles([Tile(0, 0, 10, 10)])
    with pytest.raises(MitokitError, match="empty or invalid"):
        as_tiles([("a", [0, 0, 0, 10])])
    with pytest.raises(MitokitError, match="tile 0 must be"):
        as_tiles([("a", [0, 0, 10])])

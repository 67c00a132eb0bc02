"""Synthetic patches, tiles and whole slides: shapes, truth, determinism, files that open."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mitokit.data.synthetic.cells import APOPTOTIC, MITOTIC, NORMAL, CellTable
from mitokit.data.synthetic.generate import (
    SyntheticSlide,
    generate_patches,
    generate_tiles,
    write_synthetic_slide,
)
from mitokit.data.synthetic.montage import synthetic_montage
from mitokit.data.synthetic.render import render_region
from mitokit.data.synthetic.scene import SceneParams, TissueField, sample_cells
from mitokit.errors import MitokitError
from mitokit.io.slides import open_slide


def test_patches_have_their_centre_cell_as_truth():
    batch = generate_patches(12, seed=3)
    assert batch.images.shape == (12, 64, 64, 3) and batch.images.dtype == np.uint8
    assert len(batch.cells) == 12 and len(batch.stains) == 12
    np.testing.assert_array_equal(batch.cells.x, 32.0)
    np.testing.assert_array_equal(batch.cells.y, 32.0)
    np.testing.assert_array_equal(batch.cells.id, np.arange(12))
    assert ((batch.cells.m >= 0) & (batch.cells.m <= 1)).all()


def test_patches_follow_proportions_and_seed():
    batch = generate_patches(6, seed=1, size=48, proportions={"mitotic": 1.0})
    assert (batch.cells.kind == MITOTIC).all() and (batch.cells.phase > 0).all()
    assert batch.images.shape[1:] == (48, 48, 3)
    again = generate_patches(6, seed=1, size=48, proportions={"mitotic": 1.0})
    np.testing.assert_array_equal(batch.images, again.images)
    other = generate_patches(6, seed=2, size=48, proportions={"mitotic": 1.0})
    assert not np.array_equal(batch.images, other.images)
    # patch i depends only on (seed, i)
    np.testing.assert_array_equal(
        generate_patches(3, seed=1, size=48, proportions={"mitotic": 1.0}).images, batch.images[:3]
    )
    mixed = generate_patches(40, seed=0, proportions={"normal": 1, "apoptotic": 1})
    assert set(np.unique(mixed.cells.kind)) == {NORMAL, APOPTOTIC}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"proportions": {"mitosis": 1.0}}, "unknown cell kinds"),
        ({"proportions": {"normal": 0}}, "not all 0"),
        ({"size": 4}, "size"),
    ],
)
def test_patches_reject_bad_arguments(kwargs, match):
    with pytest.raises(MitokitError, match=match):
        generate_patches(2, seed=0, **kwargs)


def test_tiles_carry_points_and_boxes():
    tiles = list(generate_tiles(2, seed=4, size=256))
    assert len(tiles) == 2
    for t in tiles:
        assert t.image.shape == (256, 256, 3)
        assert ((t.cells.x >= 0) & (t.cells.x < 256) & (t.cells.y >= 0) & (t.cells.y < 256)).all()
        assert t.points.shape == (len(t.cells), 2)
        assert t.boxes.shape == (len(t.cells), 4)
        assert (
            (t.boxes[:, 2] >= t.boxes[:, 0]).all() and t.boxes.min() >= 0 and t.boxes.max() <= 256
        )
    assert len(tiles[0].cells) > 10
    np.testing.assert_array_equal(next(generate_tiles(1, seed=4, size=256)).image, tiles[0].image)


def test_sample_cells_density_kinds_and_reproducibility():
    p = SceneParams()
    box = (0, 0, 2000, 2000)
    a = sample_cells(box, params=p, rng=np.random.default_rng(0), id_offset=100)
    b = sample_cells(box, params=p, rng=np.random.default_rng(0), id_offset=100)
    for name in ("x", "y", "kind", "m", "seed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.id, np.arange(100, 100 + len(a)))
    assert ((a.x >= 0) & (a.x < 2000) & (a.y >= 0) & (a.y < 2000)).all()
    density = len(a) / (2000 * 2000 * (p.mpp * 1e-3) ** 2)
    assert 0.6 * p.nest_density_per_mm2 < density < 1.2 * p.nest_density_per_mm2
    mit = a.kind == MITOTIC
    assert mit.sum() > 0 and a.m[mit].mean() > 0.6 and a.m[a.kind == NORMAL].mean() < 0.2
    # a tissue field with stroma lowers the density and adds elongated fibroblasts
    c = sample_cells(box, params=p, rng=np.random.default_rng(0), tissue=TissueField(1, p))
    assert len(c) < len(a) and (c.elongation > 2).any()


def test_slide_reads_match_render_region_and_are_order_free():
    slide = SyntheticSlide((1500, 1300), seed=2, block_size=512)
    box = (700, 400, 1000, 650)
    direct = render_region(
        slide.cells,
        box,
        stain=slide.stain,
        seed=slide.seed,
        params=slide.params,
        tissue=slide.tissue,
    )
    np.testing.assert_array_equal(slide.read(700, 400, 300, 250), direct)
    # another instance (any read order) gives the same truth and pixels
    again = SyntheticSlide((1500, 1300), seed=2, block_size=512)
    assert again.read(0, 0, 64, 64).shape == (64, 64, 3)
    np.testing.assert_array_equal(again.read(700, 400, 300, 250), direct)
    np.testing.assert_array_equal(again.cells.x, slide.cells.x)
    np.testing.assert_array_equal(slide.cells.id, np.arange(len(slide.cells)))


def test_small_slide_opens_at_every_level_and_matches_the_renderer(tmp_path):
    path = tmp_path / "synthetic.tif"
    cells = write_synthetic_slide(
        path, size=(3000, 2500), seed=5, tile_size=256, compression="deflate"
    )
    assert isinstance(cells, CellTable) and len(cells) > 100
    with open_slide(path) as s:
        assert s.dimensions == (3000, 2500)
        assert s.mpp == pytest.approx(0.25)
        assert s.level_count >= 4
        for level, (w, h) in enumerate(s.level_dimensions):
            region = s.read_region((0, 0), level, (min(w, 200), min(h, 200)))
            assert region.shape == (min(h, 200), min(w, 200), 3)
        ref = SyntheticSlide((3000, 2500), seed=5)
        box = (1100, 900, 1500, 1300)
        got = s.read_region((1100, 900), 0, (400, 400))
        want = render_region(
            ref.cells, box, stain=ref.stain, seed=5, params=ref.params, tissue=ref.tissue
        )
        assert np.abs(got.astype(int) - want).max() <= 1
        np.testing.assert_array_equal(ref.cells.x, cells.x)
        # no seams at tile borders: the jump across a border is like the jump between any columns
        level0 = s.read_region((768, 0), 0, (1024, 2500)).astype(float)  # borders at 1024 ...
        steps = np.abs(np.diff(level0, axis=1)).mean(axis=(0, 2))
        border = steps[[255, 511, 767]].mean()
        assert border < 1.3 * np.median(steps) + 0.5


def test_slide_bytes_depend_only_on_the_seed(tmp_path):
    kw = {"size": (700, 600), "tile_size": 256}
    write_synthetic_slide(tmp_path / "a.tif", seed=8, **kw)
    write_synthetic_slide(tmp_path / "b.tif", seed=8, **kw)
    write_synthetic_slide(tmp_path / "c.tif", seed=9, **kw)
    a, b, c = ((tmp_path / f"{n}.tif").read_bytes() for n in "abc")
    assert a == b
    assert a != c


def test_slide_has_tissue_islands_on_glass():
    slide = SyntheticSlide((20000, 20000), seed=3)
    xs = np.arange(0, 20000, 100) + 50.0
    tissue = slide.tissue.tissue(xs, xs)
    assert 0.55 < (tissue > 0.5).mean() < 0.85
    glass = slide.read(0, 0, 64, 64).reshape(-1, 3).mean(0)  # a corner: glass
    assert glass.min() > 220
    t = slide.tissue.tissue_points(slide.cells.x, slide.cells.y)
    assert t.mean() > 0.95  # cells lie on tissue


def test_slide_rejects_bad_arguments(tmp_path):
    with pytest.raises(MitokitError, match="size"):
        SyntheticSlide((5, 5), seed=0)
    with pytest.raises(MitokitError, match="mpp"):
        write_synthetic_slide(tmp_path / "x.tif", size=(100, 100), seed=0, mpp=0)
    assert not (tmp_path / "x.tif").exists()


def test_montage_writes_a_small_png(tmp_path):
    real = tmp_path / "real"
    for sub in ("normal", "atypical"):
        (real / sub).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((128, 128, 3), 60 * i, np.uint8)).save(real / sub / f"{i}.png")
    out = synthetic_montage(tmp_path / "m.png", n_per_row=3, seed=0, real_dir=real)
    with Image.open(out) as im:
        assert im.size[0] > 300 and im.size[1] > 600
    assert out.stat().st_size < 400_000

"""The tifffile segment cache and the choice of region reader (mitokit.io.slides.reader)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mitokit.io.slides.tiff_backend as tiff_backend
from mitokit.errors import MitokitError
from mitokit.io.slides import open_slide
from mitokit.io.slides.reader import region_reader
from mitokit.io.slides.tiff_backend import _SegmentCache, _TiffSlide
from mitokit.io.tiffwrite import write_pyramidal_tiff

W, H = 1700, 1300  # level 3: 213 x 163, a downsample that is not a whole number


def _texture(seed: int = 0) -> np.ndarray:
    """Smooth colour with noise: JPEG tiles whose borders matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.int16)
    noise = rng.integers(-40, 40, size=(H, W, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def jpeg_slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "slide.tif"
    return write_pyramidal_tiff(path, _texture(), mpp=0.25, tile_size=128, compression="jpeg")


def test_cache_drops_the_least_recently_used_within_its_budget():
    cache = _SegmentCache(1000)
    arrays = {k: np.full(200, k, np.uint8) for k in range(6)}
    for k in range(5):
        cache.put((0, 0, k), arrays[k])
    assert cache.bytes == 1000
    assert cache.get((0, 0, 0)) is arrays[0]  # now the most recent
    cache.put((0, 0, 5), arrays[5])
    assert cache.bytes == 1000
    assert cache.get((0, 0, 1)) is None  # the least recent went
    assert all(cache.get((0, 0, k)) is arrays[k] for k in (0, 2, 3, 4, 5))
    cache.put((0, 0, 9), np.zeros(251, np.uint8))  # over a quarter of the budget: not kept
    assert cache.get((0, 0, 9)) is None and cache.bytes == 1000
    cache.clear()
    assert cache.bytes == 0 and cache.get((0, 0, 0)) is None
    empty = _SegmentCache(0)
    empty.put((0, 0, 0), np.zeros(1, np.uint8))
    assert empty.get((0, 0, 0)) is None


def test_cached_reads_equal_uncached_and_openslide_reads(jpeg_slide, monkeypatch):
    cached = _TiffSlide(jpeg_slide, mpp=None)
    small = _TiffSlide(jpeg_slide, mpp=None)
    small._cache.max_bytes = 200_000  # four 128-pixel RGB tiles: segments come and go
    monkeypatch.setattr(tiff_backend, "SEGMENT_CACHE_BYTES", 0)
    uncached = _TiffSlide(jpeg_slide, mpp=None)
    reference = open_slide(jpeg_slide)
    assert reference.backend == "openslide"
    rng = np.random.default_rng(0)
    whole_levels = [i for i, d in enumerate(cached.level_downsamples) if d == int(d)]
    assert whole_levels == [0, 1, 2]
    hits = 0
    with cached, small, uncached, reference:
        for _ in range(300):
            level = int(rng.integers(0, cached.level_count))
            lw, lh = cached.level_dimensions[level]
            w, h = (int(v) for v in rng.integers(1, 300, size=2))
            ds = cached.level_downsamples[level]
            x = int(rng.integers(-100, lw + 50) * ds)  # some regions cross the edge
            y = int(rng.integers(-100, lh + 50) * ds)
            a = cached.read_region((x, y), level, (w, h))
            np.testing.assert_array_equal(a, uncached.read_region((x, y), level, (w, h)))
            np.testing.assert_array_equal(a, small.read_region((x, y), level, (w, h)))
            assert small._cache.bytes <= 200_000
            if level in whole_levels:
                np.testing.assert_array_equal(a, reference.read_region((x, y), level, (w, h)))
                hits += 1
        assert cached._cache.bytes > 0 and uncached._cache.bytes == 0
        assert cached._cache.bytes <= cached._cache.max_bytes == 32 * 2**20
    assert hits > 100


def _probes(slide, level, n=4, seed=1):
    rng = np.random.default_rng(seed)
    lw, lh = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    return [
        (int(rng.integers(0, lw - 64) * ds) + 1, int(rng.integers(0, lh - 64) * ds))
        for _ in range(n)
    ]


def test_tifffile_is_chosen_where_its_pixels_equal_openslide(jpeg_slide):
    with open_slide(jpeg_slide) as slide:
        probes = _probes(slide, 0)
        fractional = _probes(slide, 3)
        assert slide.level_downsamples[3] != int(slide.level_downsamples[3])
    opener, backend = region_reader(jpeg_slide, mpp=None, level=0, size=(64, 64), probes=probes)
    assert backend == "tifffile"
    with opener() as handle, open_slide(jpeg_slide) as reference:
        assert handle.backend == "tifffile"
        for x, y in probes:
            np.testing.assert_array_equal(
                handle.read_region((x, y), 0, (64, 64)), reference.read_region((x, y), 0, (64, 64))
            )
    # asked not to, at a level OpenSlide samples at fractional places, or with nothing to compare
    for kwargs in (
        {"level": 0, "probes": probes, "reader": "slide"},
        {"level": 3, "probes": fractional},
        {"level": 0, "probes": []},
    ):
        opener, backend = region_reader(jpeg_slide, mpp=None, size=(64, 64), **kwargs)
        assert backend == "openslide"
        with opener() as handle:
            assert handle.backend == "openslide"
    with pytest.raises(ValueError, match="reader must be one of"):
        region_reader(jpeg_slide, mpp=None, level=0, size=(8, 8), probes=probes, reader="x")


def test_other_files_keep_open_slides_backend(tmp_path):
    png = tmp_path / "tile.png"
    Image.fromarray(_texture()[:200, :300]).save(png)
    opener, backend = region_reader(png, mpp=0.25, level=0, size=(32, 32), probes=[(0, 0)])
    assert backend == "pillow"
    with opener() as handle:
        assert handle.mpp == 0.25
    with pytest.raises(MitokitError, match="no such file"):
        region_reader(tmp_path / "gone.tif", mpp=None, level=0, size=(8, 8), probes=[(0, 0)])


@pytest.mark.parametrize("compression", ["webp", "jpeg2000"])
def test_tiffs_with_codecs_openslide_lacks_open_through_tifffile(tmp_path, compression):
    import tifffile

    image = _texture()[:600, :700]
    path = tmp_path / f"{compression}.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(
            image,
            tile=(256, 256),
            compression=compression,
            compressionargs={"level": 100} if compression == "webp" else {"level": 95},
            resolution=(40000, 40000),
            resolutionunit="CENTIMETER",
        )
    import openslide

    with pytest.raises(openslide.OpenSlideError, match="Unsupported TIFF compression"):
        openslide.OpenSlide(str(path))
    with open_slide(path) as slide:
        assert slide.backend == "tifffile" and slide.mpp == pytest.approx(0.25)
        region = slide.read_region((100, 50), 0, (300, 200)).astype(int)
    assert np.abs(region - image[50:250, 100:400]).mean() < 4
    _, backend = region_reader(path, mpp=None, level=0, size=(64, 64), probes=[(0, 0)])
    assert backend == "tifffile"


def test_any_tifffile_trouble_keeps_openslide(jpeg_slide, tmp_path, monkeypatch):
    import mitokit.io.slides as slides

    def broken(*args, **kwargs):
        raise RuntimeError("an unexpected tifffile failure")

    import tifffile

    webp = tmp_path / "webp.tif"
    tifffile.imwrite(webp, _texture()[:300, :300], tile=(256, 256), compression="webp")
    monkeypatch.setattr(tiff_backend, "_TiffSlide", broken)
    monkeypatch.setattr(slides, "_TiffSlide", broken)
    _, backend = region_reader(jpeg_slide, mpp=None, level=0, size=(64, 64), probes=[(5, 5)])
    assert backend == "openslide"
    # a TIFF OpenSlide recognises but cannot open: its message, not tifffile's trouble
    with pytest.raises(MitokitError, match=r"webp\.tif: OpenSlide cannot open it: Unsupported"):
        open_slide(webp)


def test_a_known_backend_is_not_opened_again(tmp_path, monkeypatch):
    import mitokit.io.slides as slides

    png = tmp_path / "big.png"
    Image.fromarray(_texture()[:400, :500]).save(png)
    opened = []
    real = slides._PillowSlide

    def counting(*args, **kwargs):  # Pillow decodes the whole image at each open
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(slides, "_PillowSlide", counting)
    opener, backend = region_reader(
        png, mpp=0.25, level=0, size=(32, 32), probes=[(0, 0)], backend="pillow"
    )
    assert backend == "pillow" and opened == []
    with opener():
        pass
    assert len(opened) == 1
    _, backend = region_reader(png, mpp=0.25, level=0, size=(32, 32), probes=[(0, 0)])
    assert backend == "pillow" and len(opened) == 2  # unknown: opened once to find out

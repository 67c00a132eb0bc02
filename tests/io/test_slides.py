"""Slide reading (mitokit.io.slides) and pyramidal TIFF writing (mitokit.io.tiffwrite)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitokit.errors import MitokitError
from mitokit.io.slides import Slide, open_slide, to_rgb8
from mitokit.io.tiffwrite import TileSource, write_pyramidal_tiff

W, H = 2000, 1500


def _smooth(width: int = W, height: int = H) -> np.ndarray:
    """A smooth gradient with flat coloured squares: exact for lossless, fair for JPEG."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack(
        [xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) * 255 // (width + height)],
        axis=-1,
    ).astype(np.uint8)
    image[100:300, 200:500] = (200, 30, 40)
    image[900:1200, 1500:1900] = (40, 60, 210)
    return image


def _halved(image: np.ndarray) -> np.ndarray:
    """2 x 2 mean of an even-sized image."""
    t = image.astype(np.float64)
    return (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]) / 4


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return _smooth()


@pytest.fixture(scope="module")
def deflate_tiff(tmp_path_factory, source):
    path = tmp_path_factory.mktemp("pyr") / "slide.tif"
    write_pyramidal_tiff(path, source, mpp=0.25, compression="deflate")
    return path


# -- the writer, read back -------------------------------------------------------------------


def test_written_pyramid_opens_with_levels_and_mpp(deflate_tiff):
    with open_slide(deflate_tiff) as slide:
        assert isinstance(slide, Slide)
        assert slide.backend == "openslide"
        assert slide.vendor == "generic-tiff"
        assert slide.dimensions == (W, H)
        assert slide.level_count == 4  # 2000 -> 1000 -> 500 -> 250 (fits a 256 tile)
        assert slide.level_dimensions[1] == (1000, 750)
        for k, downsample in enumerate(slide.level_downsamples):
            assert downsample == pytest.approx(2**k, rel=0.01)
        assert abs(slide.mpp - 0.25) < 1e-6
        assert slide.mpp_source == "file"
        assert slide.properties["openslide.vendor"] == "generic-tiff"


def test_level0_regions_equal_the_source(deflate_tiff, source):
    with open_slide(deflate_tiff) as slide:
        for x, y, w, h in [(0, 0, 64, 48), (250, 130, 300, 400), (1700, 1300, 300, 200)]:
            np.testing.assert_array_equal(
                slide.read_region((x, y), 0, (w, h)), source[y : y + h, x : x + w]
            )


def test_level1_is_the_source_halved(deflate_tiff, source):
    with open_slide(deflate_tiff) as slide:
        level1 = slide.read_region((0, 0), 1, (1000, 750)).astype(np.float64)
    assert level1.shape == (750, 1000, 3)
    assert np.abs(level1 - _halved(source)).max() <= 1


def test_region_partly_outside_is_white(deflate_tiff, source):
    with open_slide(deflate_tiff) as slide:
        region = slide.read_region((W - 50, H - 30), 0, (100, 80))
        assert region.shape == (80, 100, 3) and region.dtype == np.uint8
        np.testing.assert_array_equal(region[:30, :50], source[H - 30 :, W - 50 :])
        assert (region[30:] == 255).all() and (region[:, 50:] == 255).all()
        assert (slide.read_region((-500, -500), 0, (20, 10)) == 255).all()


def test_thumbnail_keeps_the_aspect(deflate_tiff):
    with open_slide(deflate_tiff) as slide:
        thumb = slide.get_thumbnail((400, 400))
    assert thumb.shape == (300, 400, 3) and thumb.dtype == np.uint8
    # the red square at x 200..500, y 100..300 of level 0 is at 40..100, 20..60 here
    assert tuple(thumb[40, 70]) == pytest.approx((200, 30, 40), abs=2)


def test_best_level_for_downsample(deflate_tiff):
    with open_slide(deflate_tiff) as slide:
        assert slide.get_best_level_for_downsample(1) == 0
        assert slide.get_best_level_for_downsample(1.9) == 0
        assert slide.get_best_level_for_downsample(2) == 1
        assert slide.get_best_level_for_downsample(5) == 2
        assert slide.get_best_level_for_downsample(1000) == 3
        with pytest.raises(MitokitError):
            slide.get_best_level_for_downsample(0)


def test_jpeg_pyramid_is_close_to_the_source(tmp_path, source):
    path = write_pyramidal_tiff(tmp_path / "j.tif", source, mpp=0.5, compression="jpeg")
    with open_slide(path) as slide:
        assert slide.level_count > 1
        assert slide.mpp == pytest.approx(0.5, abs=1e-6)
        region = slide.read_region((0, 0), 0, (W, H)).astype(np.int16)
    assert np.abs(region - source).mean() < 3


def test_tifffile_reads_the_writer_output_the_same(tmp_path, source):
    path = write_pyramidal_tiff(
        tmp_path / "w.tif", source, mpp=0.25, compression="none", tile_size=128
    )
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [lv.shape[:2] for lv in levels][:2] == [(H, W), (750, 1000)]
        np.testing.assert_array_equal(levels[0].asarray(), source)


def test_tile_source_is_read_tile_by_tile(tmp_path, source):
    calls = []

    def read(x, y, w, h):
        calls.append((w, h))
        return source[y : y + h, x : x + w]

    path = write_pyramidal_tiff(
        tmp_path / "s.tif", TileSource((W, H), read), mpp=0.25, compression="deflate", levels=2
    )
    assert max(w for w, _ in calls) <= 256 and max(h for _, h in calls) <= 256
    with open_slide(path) as slide:
        assert slide.level_count == 2
        np.testing.assert_array_equal(
            slide.read_region((300, 200), 0, (500, 400)), source[200:600, 300:800]
        )


def test_writer_can_copy_a_slide(tmp_path, deflate_tiff, source):
    with open_slide(deflate_tiff) as slide:
        path = write_pyramidal_tiff(tmp_path / "copy.tif", slide, mpp=0.3, compression="none")
    with open_slide(path) as copy:
        assert copy.mpp == pytest.approx(0.3, abs=1e-6)
        np.testing.assert_array_equal(copy.read_region((0, 0), 0, (W, H)), source)


def test_writer_leaves_nothing_when_the_source_fails(tmp_path, source):
    def read(x, y, w, h):
        if y > 500:
            raise RuntimeError("source broke")
        return source[y : y + h, x : x + w]

    with pytest.raises(RuntimeError):
        write_pyramidal_tiff(tmp_path / "bad.tif", TileSource((W, H), read), mpp=0.25)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mpp": 0},
        {"mpp": float("nan")},
        {"mpp": 0.25, "tile_size": 100},
        {"mpp": 0.25, "compression": "lzw"},
        {"mpp": 0.25, "quality": 0},
        {"mpp": 0.25, "levels": 0},
    ],
)
def test_writer_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(MitokitError):
        write_pyramidal_tiff(tmp_path / "x.tif", np.zeros((64, 64, 3), np.uint8), **kwargs)
    assert not (tmp_path / "x.tif").exists()


def test_writer_rejects_wrong_tiles(tmp_path):
    source = TileSource((300, 300), lambda x, y, w, h: np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(MitokitError, match="tile source gave"):
        write_pyramidal_tiff(tmp_path / "x.tif", source, mpp=0.25)


# -- tifffile backend ------------------------------------------------------------------------


def test_ome_tiff_pyramid_through_tifffile(tmp_path, source):
    path = tmp_path / "p.ome.tif"
    options = {"tile": (128, 128), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        meta = {"axes": "YXS", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm"}
        tw.write(source, subifds=1, metadata=meta, **options)
        tw.write(source[::2, ::2], subfiletype=1, **options)
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.vendor == "ome-tiff"
        assert slide.level_dimensions == ((W, H), (1000, 750))
        assert slide.mpp == pytest.approx(0.25, abs=1e-9)
        # regions across tile boundaries, at both levels
        np.testing.assert_array_equal(
            slide.read_region((100, 120), 0, (300, 260)), source[120:380, 100:400]
        )
        np.testing.assert_array_equal(
            slide.read_region((202, 404), 1, (150, 100)), source[::2, ::2][202:302, 101:251]
        )


def test_plain_tiff_without_resolution_needs_mpp(tmp_path, source):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, source, photometric="rgb")
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.mpp_or_none is None
        assert slide.mpp_source is None
        with pytest.raises(MitokitError, match=r"plain\.tif.*mpp"):
            _ = slide.mpp
        np.testing.assert_array_equal(slide.read_region((7, 9), 0, (30, 20)), source[9:29, 7:37])
        corner = slide.read_region((W - 10, -5), 0, (20, 15))
        np.testing.assert_array_equal(corner[5:, :10], source[:10, W - 10 :])
        assert (corner[:5] == 255).all() and (corner[:, 10:] == 255).all()
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5 and slide.mpp_source == "argument"


def test_given_mpp_overrides_the_file(deflate_tiff):
    with open_slide(deflate_tiff, mpp=0.123) as slide:
        assert slide.mpp == 0.123


@pytest.mark.parametrize("bad", [0, -0.25, float("nan"), float("inf"), "abc"])
def test_bad_mpp_argument(deflate_tiff, bad):
    with pytest.raises(MitokitError, match="mpp"):
        open_slide(deflate_tiff, mpp=bad)


def test_tiff_resolution_in_inches_and_implausible_dpi(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image, resolution=(101600, 101600), resolutionunit=2)
    tifffile.imwrite(tmp_path / "b.tif", image, resolution=(72, 72), resolutionunit=2)
    with open_slide(tmp_path / "a.tif") as slide:
        assert slide.mpp == pytest.approx(0.25)
    with open_slide(tmp_path / "b.tif") as slide:
        assert slide.mpp_or_none is None  # 352 um/px is an editor default, not a microscope


def test_stripped_planar_grey_and_16bit_tiffs(tmp_path, source):
    tifffile.imwrite(
        tmp_path / "strips.tif", source, photometric="rgb", compression="zlib", rowsperstrip=64
    )
    planar = np.moveaxis(source, -1, 0).copy()
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    grey = source[..., 0]
    tifffile.imwrite(tmp_path / "grey.tif", grey, photometric="minisblack", tile=(64, 64))
    wide = source.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "wide.tif", wide, photometric="rgb", compression="zlib")
    box = (slice(500, 700), slice(900, 1250))
    for name, expected in [
        ("strips.tif", source),
        ("planar.tif", source),
        ("grey.tif", np.repeat(grey[..., None], 3, axis=2)),
        ("wide.tif", source),  # 16-bit scaled by 1/257
    ]:
        with open_slide(tmp_path / name) as slide:
            np.testing.assert_array_equal(
                slide.read_region((900, 500), 0, (350, 200)), expected[box], err_msg=name
            )


# -- Pillow backend --------------------------------------------------------------------------


def test_png_and_jpeg_through_pillow(tmp_path, source):
    Image.fromarray(source).save(tmp_path / "a.png", dpi=(101600, 101600))
    Image.fromarray(source).save(tmp_path / "b.jpg", quality=95, dpi=(72, 72))
    Image.fromarray(source).save(tmp_path / "c.bmp")
    with open_slide(tmp_path / "a.png") as slide:
        assert (slide.backend, slide.vendor) == ("pillow", "png")
        assert slide.dimensions == (W, H) and slide.level_count == 1
        assert slide.mpp == pytest.approx(0.25, abs=1e-6)
        np.testing.assert_array_equal(slide.read_region((5, 6), 0, (70, 80)), source[6:86, 5:75])
    with open_slide(tmp_path / "b.jpg") as slide:
        assert (slide.backend, slide.vendor) == ("pillow", "jpeg")
        assert slide.mpp_or_none is None  # 72 dpi is not trusted
        assert np.abs(slide.read_region((0, 0), 0, (W, H)).astype(int) - source).mean() < 3
    with open_slide(tmp_path / "c.bmp") as slide:
        assert slide.vendor == "bmp"
        np.testing.assert_array_equal(slide.read_region((0, 0), 0, (W, H)), source)


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    with open_slide(tmp_path / "t.png") as slide:
        region = slide.read_region((0, 0), 0, (10, 10))
    assert (region[:5] == (200, 0, 0)).all()
    assert (region[5:] == 255).all()


def test_pillow_pixel_limit_is_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "s.png")
    open_slide(tmp_path / "s.png").close()
    assert before == Image.MAX_IMAGE_PIXELS


# -- user errors -----------------------------------------------------------------------------


def test_truncated_png_fails_at_open_naming_the_file(tmp_path, source):
    Image.fromarray(source).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MitokitError, match=r"cut\.png"):
        open_slide(tmp_path / "cut.png")


def test_truncated_tiff_fails_at_open(tmp_path, deflate_tiff):
    data = deflate_tiff.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(MitokitError, match=r"cut\.tif"):
        open_slide(tmp_path / "cut.tif")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.svs", b"this is not a slide\n", "unknown or unsupported"),
        ("garbage.tif", b"II*\x00" + bytes(range(256)) * 8, "TIFF"),
        ("empty.png", b"", "empty"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MitokitError, match=message) as info:
        open_slide(tmp_path / name)
    assert name in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MitokitError, match="no such file"):
        open_slide(tmp_path / "absent.svs")
    with pytest.raises(MitokitError, match="directory"):
        open_slide(tmp_path)


def test_bad_reads(deflate_tiff):
    slide = open_slide(deflate_tiff)
    with pytest.raises(MitokitError, match="level 4 out of range"):
        slide.read_region((0, 0), 4, (10, 10))
    with pytest.raises(MitokitError, match="negative"):
        slide.read_region((0, 0), 0, (-1, 10))
    assert slide.read_region((0, 0), 0, (0, 5)).shape == (5, 0, 3)
    slide.close()
    with pytest.raises(MitokitError, match="closed"):
        slide.read_region((0, 0), 0, (10, 10))


def test_to_rgb8_conversions():
    grey = np.array([[0, 128]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(grey), [[[0, 0, 0], [128, 128, 128]]])
    assert to_rgb8(np.array([[65535, 257]], np.uint16))[0, :, 0].tolist() == [255, 1]
    grey_alpha = np.array([[[100, 0], [100, 255]]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(grey_alpha), [[[255] * 3, [100] * 3]])
    premultiplied = np.array([[[50, 50, 50, 128]]], np.uint8)
    assert to_rgb8(premultiplied, premultiplied=True)[0, 0].tolist() == [177, 177, 177]
    with pytest.raises(ValueError):
        to_rgb8(np.zeros((2, 2, 3), np.float32))


# -- real data -------------------------------------------------------------------------------


def test_real_frames_open_with_the_right_size(shared_data):
    frames = sorted((shared_data / "mitos_atypia14" / "frames").glob("*.png"))
    tile = shared_data / "he_tile" / "target_image.png"
    assert frames and tile.is_file()
    for path, size in [(frames[0], (1539, 1376)), (frames[-1], (1539, 1376)), (tile, (1000, 1000))]:
        with open_slide(path) as slide:
            assert slide.dimensions == size
            expected = np.asarray(Image.open(path).convert("RGB"))
            w, h = size
            np.testing.assert_array_equal(
                slide.read_region((w - 100, h - 80), 0, (100, 80)), expected[h - 80 :, w - 100 :]
            )
            with pytest.raises(MitokitError, match="mpp"):
                _ = slide.mpp
    with open_slide(frames[0], mpp=0.2456) as slide:
        assert math.isclose(slide.mpp, 0.2456)

"""Cell-centred patches: the centre pixel, padding, skipping, levels, annotations."""

from __future__ import annotations

import numpy as np
import pytest

from mitokit.data import ArraySlide, extract_patches, patches_from_annotations
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.types import NON_MITOSIS

MARK = np.array([1, 2, 3], dtype=np.uint8)


def _image(w: int = 80, h: int = 60, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(20, 240, (h, w, 3)).astype(np.uint8)
    return img


@pytest.mark.parametrize("size", [15, 16, 64])
def test_marked_pixel_lands_at_size_half(size):
    img = _image()
    img[21, 37] = MARK  # x = 37 (column), y = 21 (row)
    patches, kept = extract_patches(img, [(37, 21)], size=size)
    assert patches.shape == (1, size, size, 3) and patches.dtype == np.uint8
    assert kept.tolist() == [0]
    assert patches[0, size // 2, size // 2].tolist() == MARK.tolist()


def test_centres_round_to_the_nearest_pixel():
    img = _image()
    img[21, 37] = MARK
    for x, y in [(37.4, 20.6), (36.5, 21.49)]:
        patches, _ = extract_patches(img, [(x, y)], size=9)
        assert patches[0, 4, 4].tolist() == MARK.tolist()
    patches, _ = extract_patches(img, [(37.5, 21)], size=9)
    assert patches[0, 4, 3].tolist() == MARK.tolist()  # 37.5 rounds up to 38


def test_pad_is_white_outside():
    img = _image()
    patches, kept = extract_patches(img, [(0, 0), (79, 59)], size=8)
    assert kept.tolist() == [0, 1]
    p = patches[0]
    assert (p[:4, :] == 255).all() and (p[:, :4] == 255).all()
    assert np.array_equal(p[4:, 4:], img[0:4, 0:4])
    q = patches[1]
    assert np.array_equal(q[:5, :5], img[55:60, 75:80])
    assert (q[5:, :] == 255).all() and (q[:, 5:] == 255).all()


def test_pad_value():
    patches, _ = extract_patches(_image(), [(0, 0)], size=8, pad_value=0)
    assert (patches[0, :4] == 0).all() and (patches[0, :, :4] == 0).all()


class _MinimalSlide:
    """A duck-typed reader that pads white, as slide readers do."""

    def __init__(self, img: np.ndarray) -> None:
        self._inner = ArraySlide(img)
        self.dimensions = self._inner.dimensions

    def read_region(self, location, level, size):
        return self._inner.read_region(location, level, size)


def test_duck_typed_slide_and_pad_value():
    img = _image()
    patches, _ = extract_patches(_MinimalSlide(img), [(2, 30)], size=8, pad_value=7)
    assert (patches[0, :, :2] == 7).all()
    assert np.array_equal(patches[0, :, 2:], img[26:34, 0:6])


def test_skip_drops_border_and_outside_centres():
    img = _image()
    centres = [(40, 30), (2, 30), (40, 58), (500, 500), (-10, 5), (4, 4)]
    patches, kept = extract_patches(img, centres, size=8, border="skip")
    assert kept.tolist() == [0, 5]  # (4, 4) fits exactly: rows/cols 0..7
    assert np.array_equal(patches[1], img[0:8, 0:8])
    patches, kept = extract_patches(img, [(500, 500)], size=8, border="skip")
    assert patches.shape == (0, 8, 8, 3) and kept.shape == (0,)


def test_empty_centres():
    patches, kept = extract_patches(_image(), np.zeros((0, 2)), size=4)
    assert patches.shape == (0, 4, 4, 3) and kept.shape == (0,)


def test_level_1():
    img = _image()
    slide = ArraySlide(img, downsamples=(1, 2))
    level1 = slide.read_region((0, 0), 1, (40, 30))
    patches, _ = extract_patches(slide, [(40, 20)], size=6, level=1)
    assert np.array_equal(patches[0], level1[7:13, 17:23])  # centre (20, 10) at level 1


@pytest.mark.parametrize(
    "kwargs, centres, message",
    [
        ({"size": 0}, [(1, 1)], "patch size must be a positive integer"),
        ({"size": -3}, [(1, 1)], "patch size"),
        ({"border": "wrap"}, [(1, 1)], "unknown border policy"),
        ({"pad_value": 300}, [(1, 1)], "pad_value"),
        ({}, [(1, float("nan"))], "centre 0 is not finite"),
        ({}, [(1, 2, 3)], r"\(N, 2\)"),
        ({"level": 3}, [(1, 1)], "level 3 does not exist"),
    ],
)
def test_bad_input(kwargs, centres, message):
    with pytest.raises(MitokitError, match=message):
        extract_patches(_image(), centres, **kwargs)


def test_patches_from_annotations_keeps_order_and_filters():
    images = {"a": _image(seed=1), "b": _image(seed=2)}
    images["a"][10, 20] = MARK
    images["b"][30, 40] = MARK
    anns = AnnotationSet(
        [
            Annotation("1", "b", point=(40, 30)),
            Annotation("2", "a", box=(18, 8, 22, 12)),  # centre (20, 10)
            Annotation("3", "a", point=(20, 10), label=NON_MITOSIS),
            Annotation("4", "b", point=(1, 1)),
        ]
    )
    opened = []

    def open_image(image_id):
        opened.append(image_id)
        return images[image_id]

    patches, kept = patches_from_annotations(anns, open_image, size=5)
    assert [a.id for a in kept] == ["1", "2", "3", "4"]
    assert sorted(opened) == ["a", "b"]
    assert all(p[2, 2].tolist() == MARK.tolist() for p in patches[:3])

    patches, kept = patches_from_annotations(
        anns, images.__getitem__, size=5, border="skip", label="mitosis"
    )
    assert [a.id for a in kept] == ["1", "2"]
    assert patches.shape == (2, 5, 5, 3)
    empty, none = patches_from_annotations(AnnotationSet(), images.__getitem__, size=5)
    assert empty.shape == (0, 5, 5, 3) and none == []

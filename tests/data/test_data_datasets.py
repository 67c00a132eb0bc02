"""PatchDataset and TileDataset: tensors, targets, boxes, tile scores, empty tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mitokit.data import ArraySlide, PatchDataset, TileDataset, collate_detection
from mitokit.data.tiling import Tile
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.labels.coarsen import box_fraction_inside
from mitokit.types import NON_MITOSIS


def _patches(n: int = 6, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_patch_dataset_items():
    images = _patches()
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.linspace(0, 1, 6)
    ds = PatchDataset(images, {"label": labels, "score": scores})
    assert len(ds) == 6
    item = ds[3]
    assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], torch.from_numpy(images[3]).permute(2, 0, 1) / 255.0)
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    assert item["score"].dtype == torch.float32 and float(item["score"]) == pytest.approx(0.6)
    assert item["index"] == 3
    assert ds[-1]["index"] == 5
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["label"].tolist() == [0, 1, 0, 1]
    with pytest.raises(IndexError):
        ds[6]


def test_patch_dataset_transform_and_paths(tmp_path):
    images = _patches(2)
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(img).save(paths[-1])
    ds = PatchDataset(paths, {"label": [1, 0]}, transform=lambda a: 255 - a)
    expected = torch.from_numpy(255 - images[1]).permute(2, 0, 1) / 255.0
    assert torch.allclose(ds[1]["image"], expected)
    as_float = PatchDataset(images, transform=lambda a: a / 255.0)
    assert torch.allclose(as_float[0]["image"], PatchDataset(images)[0]["image"])


def test_patch_dataset_cache_reads_each_file_once(tmp_path):
    images = _patches()[:2]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(img).save(paths[-1])
    cached = PatchDataset(paths, cache=True, transform=lambda a: 255 - a)
    plain = PatchDataset(paths)
    first = cached[1]["image"].clone()
    assert torch.allclose(first, 1.0 - plain[1]["image"])
    # The file changes on disk: the cached dataset keeps the first read, the plain one follows.
    Image.fromarray(255 - images[1]).save(paths[1])
    assert torch.equal(cached[1]["image"], first)
    assert torch.allclose(plain[1]["image"], first)
    # A transform cannot change the kept patch in place.
    with pytest.raises(ValueError, match="read-only"):
        PatchDataset(paths, cache=True, transform=lambda a: a.__iadd__(1))[0]
    # Decoded once at construction: loader workers started later need no file at all.
    for path in paths:
        path.unlink()
    batch = next(iter(DataLoader(cached, batch_size=2, num_workers=2)))
    assert torch.equal(batch["image"][1], first)
    with pytest.raises(MitokitError, match="file not found"):
        PatchDataset(paths, cache=True)  # a missing file fails before any training


def test_patch_dataset_errors(tmp_path):
    with pytest.raises(MitokitError, match="uint8"):
        PatchDataset(_patches().astype(np.float32))
    with pytest.raises(MitokitError, match="has 2 values for 6 patches"):
        PatchDataset(_patches(), {"label": [0, 1]})
    with pytest.raises(MitokitError, match="reserved"):
        PatchDataset(_patches(), {"image": np.zeros(6)})
    with pytest.raises(MitokitError, match="file not found"):
        PatchDataset([tmp_path / "gone.png"])[0]


def test_box_fraction_inside_by_hand():
    boxes = np.array(
        [[80, 20, 120, 60], [10, 10, 30, 30], [200, 200, 210, 210], [50, 50, 50, 50]], float
    )
    r = box_fraction_inside(boxes, np.array([[0, 0, 100, 100]]))[0]
    assert r.tolist() == [0.5, 1.0, 0.0, 1.0]  # half in, all in, out, a point inside


@pytest.fixture
def scene():
    img = np.random.default_rng(1).integers(0, 256, (200, 200, 3)).astype(np.uint8)
    anns = AnnotationSet(
        [
            Annotation("A", "s", box=(80, 20, 120, 60), agreement=0.5),  # half in tile 0
            Annotation("B", "s", box=(10, 10, 30, 30), agreement=1.0),  # all in tile 0
            Annotation("P", "s", point=(150, 50)),  # no agreement -> weight 1
            Annotation("N", "s", point=(50, 150), label=NON_MITOSIS),  # not a box target
        ]
    )
    tiles = [("s", [0, 0, 100, 100]), ("s", [100, 0, 200, 100]), ("s", [0, 100, 100, 200])]
    return img, anns, tiles


def test_tile_dataset_boxes_weights_and_score(scene):
    img, anns, tiles = scene
    opened = []

    def open_image(image_id):
        opened.append(image_id)
        return img

    ds = TileDataset(tiles, open_image, anns, point_box_size=20)
    item = ds[0]
    assert item["image"].shape == (3, 100, 100)
    assert torch.allclose(item["image"], torch.from_numpy(img[:100, :100]).permute(2, 0, 1) / 255)
    assert item["boxes"].dtype == torch.float32
    assert item["boxes"].tolist() == [[80, 20, 100, 60], [10, 10, 30, 30]]
    assert item["labels"].tolist() == [1, 1] and item["labels"].dtype == torch.int64
    assert item["weights"].tolist() == [0.5, 1.0]
    assert float(item["tile_score"]) == pytest.approx(0.5 * 0.5 + 1.0 * 1.0)  # 1.25
    assert int(item["tile_label"]) == 1
    assert item["image_id"] == "s" and item["tile"].tolist() == [0, 0, 100, 100]

    right = ds[1]
    assert right["boxes"].tolist() == [[0, 20, 20, 60], [40, 40, 60, 60]]
    assert right["weights"].tolist() == [0.5, 1.0]
    assert float(right["tile_score"]) == pytest.approx(0.5 * 0.5 + 1.0)
    assert opened == ["s"]  # opened once, then kept


def test_empty_tile_gives_empty_tensors(scene):
    img, anns, tiles = scene
    item = TileDataset(tiles, lambda _: img, anns)[2]
    assert item["boxes"].shape == (0, 4) and item["boxes"].dtype == torch.float32
    assert item["labels"].shape == (0,) and item["labels"].dtype == torch.int64
    assert item["weights"].shape == (0,)
    assert float(item["tile_score"]) == 0.0 and int(item["tile_label"]) == 0
    none = TileDataset(tiles, lambda _: img, AnnotationSet())[0]
    assert none["boxes"].shape == (0, 4) and none["labels"].shape == (0,)


def test_tile_dataset_in_a_dataloader_and_colour_transform(scene):
    img, anns, tiles = scene
    ds = TileDataset(tiles, lambda _: img, anns, transform=lambda a: 255 - a)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert len(images) == 3 and [t["boxes"].shape[0] for t in targets] == [2, 2, 0]
    assert torch.allclose(images[2], torch.from_numpy(255 - img[100:, :100]).permute(2, 0, 1) / 255)


def test_tile_dataset_at_level_1_scales_boxes(scene):
    img, anns, _ = scene
    slide = ArraySlide(img, downsamples=(1, 2))
    tile = Tile(0, 0, 50, 50, level=1, image="s", downsample=2.0)
    item = TileDataset([tile], lambda _: slide, anns)[0]
    assert item["image"].shape == (3, 50, 50)
    assert item["boxes"].tolist() == [[40, 10, 50, 30], [5, 5, 15, 15]]
    assert item["tile"].tolist() == [0, 0, 100, 100]


def test_min_box_fraction_keeps_the_score(scene):
    img, anns, tiles = scene
    item = TileDataset(tiles, lambda _: img, anns, min_box_fraction=0.6)[0]
    assert item["boxes"].shape == (1, 4)
    assert float(item["tile_score"]) == pytest.approx(1.25)

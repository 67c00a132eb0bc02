"""Images with box labels, cut into tiles: what the tile models, detector and localiser read.

A label file (boxes, or points that get a square, with an agreement per object; any format
:func:`~mitokit.io.annotations.read_annotations` reads) or a synthetic tiles folder (``mitokit
synth tiles``, whose ``crowd.json`` is read: :func:`resolve_labels`), and its images: by default
``images/`` beside the label file, else its folder; an image is found as ``<images>/<file_name>``,
``<images>/<image id>`` or ``<images>/<basename of file_name>`` (:func:`read_tile_source`).
Images are cut into full sub-tiles (:func:`grid_tiles`), split into training and validation
images, never tiles (:func:`split_images`), and training tiles are drawn events-first
(:func:`event_tile_training_set`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet, read_annotations
from mitokit.models._common import WorkerDraws, check_fraction, check_int, merge_section
from mitokit.types import MITOSIS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TILES_FOLDER_LABELS = ("crowd.json", "consensus.json", "consensus.geojson")


@dataclass
class TileSource:
    """Images with box labels and agreements.

    Attributes:
        labels: The label file.
        annotations: Its objects.
        paths: Image id -> image file.
        sizes: Image id -> (width, height).
    """

    labels: Path
    annotations: AnnotationSet
    paths: dict[str, Path]
    sizes: dict[str, tuple[int, int]]

    @property
    def image_ids(self) -> list[str]:
        """Image ids, sorted."""
        return sorted(self.paths)


def resolve_labels(labels: str | os.PathLike) -> Path:
    """A label file, or the box-label file of a synthetic tiles folder (``crowd.json`` first).

    Raises:
        MitokitError: Missing file, or a folder without any of the known label files.
    """
    p = Path(labels)
    if p.is_dir():
        for name in TILES_FOLDER_LABELS:
            if (p / name).is_file():
                return p / name
        raise input_error(p, f"folder holds none of {', '.join(TILES_FOLDER_LABELS)}")
    if not p.is_file():
        raise input_error(p, "label file not found")
    return p


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def find_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files and folders (a folder: the images directly in it), in order.

    Raises:
        MitokitError: A missing path, or a folder without images.
    """
    files: list[Path] = []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise input_error(p, "folder holds no PNG, JPEG or TIFF image")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise input_error(p, "file not found")
    return files


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError) as exc:
        raise input_error(path, f"cannot read image ({exc})") from None


def read_tile_source(
    labels: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    annotations: AnnotationSet | None = None,
) -> TileSource:
    """Read box labels and find their images (see the module docstring for the layout).

    Raises:
        MitokitError: Unreadable labels, an image not found, or no image at all.
    """
    path = resolve_labels(labels)
    anns = read_annotations(path) if annotations is None else annotations
    if images is None:
        folder = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise input_error(folder, "image folder not found")
    ids = list(anns.images)
    for ann in anns:
        if ann.image not in anns.images and ann.image not in ids:
            ids.append(ann.image)
    paths: dict[str, Path] = {}
    sizes: dict[str, tuple[int, int]] = {}
    if not ids:
        for p in image_files(folder):
            paths[p.name] = p
    for image_id in ids:
        info = anns.images.get(image_id)
        names = [n for n in ((info.file_name if info else None), image_id) if n]
        names += [Path(n).name for n in names]
        found = next((folder / n for n in names if (folder / n).is_file()), None)
        if found is None:
            raise input_error(path, f"image {image_id!r} not found in {folder}")
        paths[image_id] = found
        if info is not None and info.width and info.height:
            sizes[image_id] = (int(info.width), int(info.height))
    if not paths:
        raise input_error(path, f"no images: the label file lists none and {folder} holds none")
    for image_id, p in paths.items():
        if image_id not in sizes:
            sizes[image_id] = image_size(p)
    return TileSource(path, anns, paths, sizes)


def grid_tiles(
    source: TileSource, image_ids: Sequence[str], *, tile_size: int, stride: int
) -> list[tuple[str, list[int]]]:
    """``(image_id, [x1, y1, x2, y2])`` sub-tiles of the images (full tiles only)."""
    from mitokit.data.tiling import tile_grid

    out: list[tuple[str, list[int]]] = []
    for image_id in image_ids:
        for box in tile_grid(source.sizes[image_id], tile=tile_size, stride=stride).tolist():
            out.append((image_id, box))
    return out


def event_tile_training_set(
    source: TileSource,
    train_ids: Sequence[str],
    opener: Any,
    common: Mapping[str, Any],
    *,
    tile_size: int,
    stride: int,
    cfg: Mapping[str, Any],
    ratio: float,
    epoch_length: int | None,
    seed: int,
) -> tuple[Any, Any, WorkerDraws]:
    """Training tiles and their event-then-tile sampler (tile models and the detector).

    ``common`` holds the :class:`~mitokit.data.datasets.TileDataset` settings
    (``point_box_size``, ``label``, ``default_agreement`` ...); colour jitter is added when
    ``cfg["augment"]``. Returns (the tile dataset, the sampler, the per-worker draws).

    Raises:
        MitokitError: No tile fits in the training images, or the sampler finds no event.
    """
    from mitokit.data.datasets import TileDataset
    from mitokit.data.sampling import EventTileSampler
    from mitokit.data.stain import HEDJitter

    train_tiles = grid_tiles(source, train_ids, tile_size=tile_size, stride=stride)
    if not train_tiles:
        raise input_error(source.labels, f"no {tile_size}-pixel tile fits in the training images")
    draws = WorkerDraws(seed)
    colour = (
        HEDJitter(cfg["hed_sigma"], cfg["hed_bias"], seed=draws.rng) if cfg["augment"] else None
    )
    train_base = TileDataset(train_tiles, opener, source.annotations, transform=colour, **common)
    try:
        sampler = EventTileSampler(
            train_base.tiles,
            source.annotations,
            negative_ratio=ratio,
            epoch_length=epoch_length,
            label=common.get("label", MITOSIS),
            point_box_size=common["point_box_size"],
            seed=seed,
        )
    except MitokitError as exc:
        raise input_error(source.labels, f"training images: {exc}") from None
    return train_base, sampler, draws


class _ImageOpener:
    """Picklable ``image id -> HxWx3 uint8 array`` reader (for DataLoader workers)."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = dict(paths)

    def __call__(self, image_id: str) -> np.ndarray:
        from mitokit.data.arrays import read_rgb

        return read_rgb(self.paths[image_id])


def split_images(
    image_ids: Sequence[str],
    *,
    val_fraction: float,
    val_images: Sequence[str] | None,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Training and validation images (sorted); no image is on both sides.

    Raises:
        MitokitError: Unknown ids in ``val_images``, or no training image left.
    """
    ids = sorted(image_ids)
    if val_images is not None:
        val = sorted({str(v) for v in val_images})
        unknown = [v for v in val if v not in ids]
        if unknown:
            raise MitokitError(f"data.val_images names unknown images: {', '.join(unknown[:5])}")
    elif val_fraction > 0 and len(ids) >= 2:
        k = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
        val = sorted(np.random.default_rng([seed, 3]).permutation(ids)[:k].tolist())
    else:
        val = []
    train = [i for i in ids if i not in set(val)]
    if not train:
        raise MitokitError("no training image left after the validation split")
    return train, val


@dataclass(frozen=True)
class EventTileSettings:
    """The checked numbers of a ``data`` section that tiles and splits images (see
    :func:`event_tile_settings`).

    Attributes:
        tile_size: Tile side, pixels.
        stride: Tile step, pixels.
        ratio: Negative tiles drawn per positive draw.
        split_seed: Seed of the validation split.
        n_max: Keep at most this many images (all when None).
        epoch_length: Draws per epoch (None: events x (1 + ratio)).
        val_fraction: Share of the images kept for validation.
    """

    tile_size: int
    stride: int
    ratio: int
    split_seed: int
    n_max: int | None
    epoch_length: int | None
    val_fraction: float


EVENT_TILE_DEFAULTS: Mapping[str, Any] = {
    "labels": None,
    "images": None,
    "tile_size": 250,
    "stride": 125,
    "default_agreement": 1.0,
    "negative_ratio": 0,
    "val_fraction": 0.2,
    "val_images": None,
    "split_seed": 0,
    "epoch_length": None,
    "augment": True,
    "hed_sigma": 0.05,
    "hed_bias": 0.01,
    "n_max": None,
}
"""The ``data`` keys, with their defaults, that :func:`event_tile_settings` and
:func:`split_event_tiles` read: a task's ``data_defaults`` start from these."""


def event_tile_section(
    defaults: Mapping[str, Any], given: Mapping[str, Any] | None, *, task: str, labels: str
) -> dict[str, Any]:
    """The ``data`` section ``given`` over ``defaults``; ``labels`` is required (the message
    says what they are, e.g. ``box labels with agreement``).

    Raises:
        MitokitError: An unknown key, or no ``labels``.
    """
    cfg = merge_section(defaults, given, section="data", task=task)
    if cfg["labels"] is None:
        raise MitokitError(f"data.labels is required ({labels})")
    return cfg


def event_tile_settings(cfg: Mapping[str, Any]) -> EventTileSettings:
    """``tile_size``, ``stride``, ``negative_ratio``, ``split_seed``, ``n_max``,
    ``epoch_length`` and ``val_fraction`` of a merged ``data`` section, checked in that order.

    Raises:
        MitokitError: The first bad setting.
    """
    return EventTileSettings(
        tile_size=check_int(cfg["tile_size"], "data.tile_size", minimum=16),
        stride=check_int(cfg["stride"], "data.stride", minimum=1),
        ratio=check_int(cfg["negative_ratio"], "data.negative_ratio", minimum=0),
        split_seed=check_int(cfg["split_seed"], "data.split_seed", minimum=0),
        n_max=check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True),
        epoch_length=check_int(
            cfg["epoch_length"], "data.epoch_length", minimum=1, allow_none=True
        ),
        val_fraction=check_fraction(cfg["val_fraction"], "data.val_fraction", high=0.9),
    )


class EventTileSplit(NamedTuple):
    """A tile source split by image: training tiles drawn events-first, validation tiles.

    Attributes:
        source: The images and their labels.
        train_ids: The training images.
        val_ids: The validation images.
        opener: Reads an image by id (shared by both sets).
        common: The :class:`~mitokit.data.datasets.TileDataset` settings of both sets.
        train_base: The training tiles (a ``TileDataset``, colour-jittered when ``augment``).
        sampler: Their :class:`~mitokit.data.sampling.EventTileSampler`.
        draws: The per-worker random draws of the training augmentation.
        val_tiles: Every tile of the validation images (level-0 boxes).
    """

    source: TileSource
    train_ids: list[str]
    val_ids: list[str]
    opener: _ImageOpener
    common: dict[str, Any]
    train_base: Any
    sampler: Any
    draws: WorkerDraws
    val_tiles: list

    def summary(self, settings: EventTileSettings) -> dict[str, Any]:
        """What a task's ``TaskData.info`` reports of the split (labels, images, tile counts)."""
        return {
            "labels": str(self.source.labels),
            "negative_ratio": settings.ratio,
            "tile_size": settings.tile_size,
            "stride": settings.stride,
            "train_images": self.train_ids,
            "val_images": self.val_ids,
            "n_train_tiles": len(self.train_base.tiles),
            "n_val_tiles": len(self.val_tiles),
            "n_events": int(self.sampler.n_events),
            "n_negative_tiles": int(len(self.sampler.negative_tiles)),
            "epoch_length": int(self.sampler.epoch_length),
        }


def split_event_tiles(
    cfg: Mapping[str, Any],
    settings: EventTileSettings,
    *,
    point_box_size: float,
    seed: int,
    **tile_settings: Any,
) -> EventTileSplit:
    """Read the labels and images of a ``data`` section, split them by image and cut tiles.

    ``settings`` are the checked numbers (:func:`event_tile_settings`). The first ``n_max``
    images (all when None) are split into training and validation images
    (:func:`~mitokit.models.tile_source.split_images`); the training tiles are drawn
    events-first with ``ratio`` negative tiles per positive draw
    (:func:`~mitokit.models.tile_source.event_tile_training_set`). ``cfg`` gives ``labels``,
    ``images``, ``val_images``, ``default_agreement`` and the augmentation keys;
    ``tile_settings`` are further ``TileDataset`` settings (e.g. ``min_box_fraction``).

    Raises:
        MitokitError: Missing labels or images, no tile in the training images, or no event
            (or, with negatives asked for, no negative tile) among the training tiles.
    """
    s = settings
    source = read_tile_source(cfg["labels"], images=cfg["images"])
    ids = source.image_ids[: s.n_max] if s.n_max else source.image_ids
    train_ids, val_ids = split_images(
        ids, val_fraction=s.val_fraction, val_images=cfg["val_images"], seed=s.split_seed
    )
    opener = _ImageOpener(source.paths)
    common = {
        "point_box_size": point_box_size,
        "label": MITOSIS,
        "default_agreement": float(cfg["default_agreement"]),
        **tile_settings,
    }
    train_base, sampler, draws = event_tile_training_set(
        source,
        train_ids,
        opener,
        common,
        tile_size=s.tile_size,
        stride=s.stride,
        cfg=cfg,
        ratio=s.ratio,
        epoch_length=s.epoch_length,
        seed=seed,
    )
    val_tiles = grid_tiles(source, val_ids, tile_size=s.tile_size, stride=s.stride)
    return EventTileSplit(
        source, train_ids, val_ids, opener, common, train_base, sampler, draws, val_tiles
    )


__all__ = [
    "EVENT_TILE_DEFAULTS",
    "IMAGE_SUFFIXES",
    "find_images",
    "TILES_FOLDER_LABELS",
    "EventTileSettings",
    "EventTileSplit",
    "TileSource",
    "event_tile_section",
    "event_tile_settings",
    "event_tile_training_set",
    "grid_tiles",
    "image_files",
    "image_size",
    "read_tile_source",
    "resolve_labels",
    "split_event_tiles",
    "split_images",
]

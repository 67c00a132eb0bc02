"""Tile-level formulations of the crowd-label study (third paper): BC, Reg and Reg-NS.

- ``tile_classifier`` (BC): binary classification of the tile label ``s_t > 0`` with BCE; one
  negative tile drawn per positive (``negative_ratio: 1``).
- ``tile_regressor`` (Reg / Reg-NS): regression of the tile score ``s_t = sum_i r_i a_i`` with
  MSE; ``negative_ratio: 0`` is Reg (positive tiles only), 1, 2, 4 or 10 is Reg-NS.

Both draw training tiles through :class:`~mitokit.data.sampling.EventTileSampler`: an event
uniformly, then a tile containing it, plus ``negative_ratio`` negative tiles (``s_t = 0``) per
positive draw. Both models are :func:`~mitokit.models.backbones.build_resnet` with one output;
the classifier's is a logit (score = sigmoid), the regressor's a value (score = the predicted
``s_t``, unbounded). Evaluation thresholds scores at 0.5 for TPR, FPR and balanced accuracy: a
probability for BC, a tile score for Reg (half an event of full agreement); the calibration error
is computed on scores clipped to [0, 1].

Data layout (``data`` section):

- ``labels``: boxes (or points, which get a square of ``point_box_size``) with an agreement per
  object, in any format :func:`~mitokit.io.annotations.read_annotations` reads (COCO with an
  ``agreement`` field, GeoJSON, mitokit CSV); or a synthetic tiles folder (``mitokit synth
  tiles``), whose ``crowd.json`` is read. Objects of class ``mitosis`` count; objects without an
  agreement count with ``default_agreement``.
- ``images``: folder of the image files (default: ``images/`` beside the label file, else its
  folder). An image is found as ``<images>/<file_name>``, ``<images>/<image id>`` or
  ``<images>/<basename of file_name>``. The images are those the label file lists (annotated or
  not), or every image in the folder when it lists none.
- each image is cut into sub-tiles of ``tile_size`` at ``stride`` (full tiles only:
  :func:`~mitokit.data.tiling.tile_grid` with the ``drop`` edge policy), by default 250 at 125
  (49 sub-tiles of a 1000-pixel image).
- train / validation split by image, never by tile: ``val_images`` (a list of image ids) or a
  share ``val_fraction`` of the images drawn with ``split_seed`` (at least one image each side
  when there are two or more; ``0`` for no validation). Validation uses every tile of the
  validation images.
- ``augment``: HED jitter (colour) and random flips / 90-degree rotations of training tiles
  (``s_t`` does not change under them), seeded from ``build_data``'s ``seed``.
- ``epoch_length``: draws per epoch (default: events x (1 + ratio)); ``n_max``: keep at most
  this many images (the first in sorted order), for quick runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import Dataset

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet, read_annotations
from mitokit.models._common import (
    WorkerDraws,
    binary_metrics,
    check_fraction,
    check_int,
    collect_outputs,
    merge_section,
    random_dihedral,
)
from mitokit.models.backbones import build_resnet
from mitokit.types import MITOSIS

TILE_CLASSIFIER = "tile_classifier"
TILE_REGRESSOR = "tile_regressor"
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


class TileScoreDataset(Dataset):
    """Tiles with their score and label only (no boxes), optionally flipped / rotated.

    Items: ``image`` (float ``CxHxW``), ``tile_score`` (float32), ``tile_label`` (int64),
    ``target`` (float32: the score for a regressor, the label for a classifier), ``image_id``,
    ``tile`` (int64 ``[4]``, level-0 box) and ``index``.

    Args:
        tiles: The :class:`~mitokit.data.datasets.TileDataset` read from.
        target: ``"tile_score"`` or ``"tile_label"``.
        flips: Random flips / 90-degree rotations (of square tiles).
        draws: The seeded generator of the flips (shared with the tiles' colour jitter, so
            both get a fresh stream in each DataLoader worker).
    """

    def __init__(
        self,
        tiles: Any,
        *,
        target: str,
        flips: bool = False,
        draws: WorkerDraws | None = None,
    ) -> None:
        if target not in ("tile_score", "tile_label"):
            raise MitokitError(f"target must be 'tile_score' or 'tile_label', got {target!r}")
        self.tiles = tiles
        self.target_key = target
        self.flips = bool(flips)
        self.draws = draws if draws is not None else WorkerDraws(0)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.draws.get()  # reseeds first in a new worker (shared with the colour jitter)
        item = self.tiles[index]
        image = item["image"]
        if self.flips and image.shape[-1] == image.shape[-2]:
            arr = random_dihedral(image.permute(1, 2, 0).numpy(), rng)
            image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        return {
            "image": image,
            "tile_score": item["tile_score"],
            "tile_label": item["tile_label"],
            "target": item[self.target_key].float(),
            "image_id": item["image_id"],
            "tile": item["tile"],
            "index": item["index"],
        }


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


class _TileTask:
    """Shared code of BC and Reg: data, loss and evaluation differ only in the target."""

    name: str
    output: str  # "logit" or "value"
    target: str  # "tile_label" or "tile_score"
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet18",
        "input_size": None,
        "weights": None,
        "dropout": 0.0,
    }
    data_defaults: Mapping[str, Any]

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """A ResNet with one output (a logit for BC, a tile score for Reg)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_resnet(
            cfg["arch"],
            out_features=1,
            weights=cfg["weights"],
            input_size=cfg["input_size"],
            dropout=cfg["dropout"],
            output=self.output,
        )

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Tiles of the training images drawn events-first; every tile of the validation images.

        Raises:
            MitokitError: Missing labels or images, bad settings, or no event (or, with
                negatives asked for, no negative tile) among the training tiles.
        """
        from mitokit.data.datasets import TileDataset

        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError("data.labels is required (box labels with agreement)")
        tile_size = check_int(cfg["tile_size"], "data.tile_size", minimum=16)
        stride = check_int(cfg["stride"], "data.stride", minimum=1)
        ratio = check_int(cfg["negative_ratio"], "data.negative_ratio", minimum=0)
        if self.target == "tile_label" and ratio == 0:
            raise MitokitError(f"task {self.name!r} needs data.negative_ratio >= 1 (BC uses 1)")
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        epoch_length = check_int(
            cfg["epoch_length"], "data.epoch_length", minimum=1, allow_none=True
        )
        val_fraction = check_fraction(cfg["val_fraction"], "data.val_fraction", high=0.9)
        point_box = float(cfg["point_box_size"])

        source = read_tile_source(cfg["labels"], images=cfg["images"])
        ids = source.image_ids[:n_max] if n_max else source.image_ids
        train_ids, val_ids = split_images(
            ids, val_fraction=val_fraction, val_images=cfg["val_images"], seed=split_seed
        )
        opener = _ImageOpener(source.paths)
        common = {
            "point_box_size": point_box,
            "label": MITOSIS,
            "default_agreement": float(cfg["default_agreement"]),
        }
        train_base, sampler, draws = event_tile_training_set(
            source,
            train_ids,
            opener,
            common,
            tile_size=tile_size,
            stride=stride,
            cfg=cfg,
            ratio=ratio,
            epoch_length=epoch_length,
            seed=seed,
        )
        train = TileScoreDataset(
            train_base, target=self.target, flips=bool(cfg["augment"]), draws=draws
        )
        val = None
        val_tiles = grid_tiles(source, val_ids, tile_size=tile_size, stride=stride)
        if val_tiles:
            val = TileScoreDataset(
                TileDataset(val_tiles, opener, source.annotations, **common), target=self.target
            )
        info = {
            "labels": str(source.labels),
            "negative_ratio": ratio,
            "tile_size": tile_size,
            "stride": stride,
            "train_images": train_ids,
            "val_images": val_ids,
            "n_train_tiles": len(train_base.tiles),
            "n_val_tiles": len(val_tiles),
            "n_events": int(sampler.n_events),
            "n_negative_tiles": int(len(sampler.negative_tiles)),
            "epoch_length": int(sampler.epoch_length),
        }
        return TaskData(train=train, val=val, train_sampler=sampler, info=info)

    def _loss_of(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output == "logit":
            return F.binary_cross_entropy_with_logits(out, target)
        return F.mse_loss(out, target)

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE (BC) or MSE (Reg) of one batch against its ``target``."""
        out = model(batch["image"].to(device))
        target = batch["target"].to(device).float()
        loss = self._loss_of(out, target)
        positive = float((batch["tile_label"] > 0).float().mean())
        return loss, {
            "bce" if self.output == "logit" else "mse": float(loss.detach()),
            "positive_share": positive,
        }

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Mean loss; tile AUC; TPR, FPR and balanced accuracy at 0.5; ECE of clipped scores."""
        collected = collect_outputs(model, loader, device=device, label_key="tile_label")
        if collected is None:
            return {"loss": math.nan, "auc": math.nan, "balanced_accuracy": math.nan}
        z, t, y = collected
        loss = float(self._loss_of(z, t))
        scores = torch.sigmoid(z) if self.output == "logit" else z
        figures = binary_metrics(y.numpy(), scores.numpy().astype(np.float64), threshold=0.5)
        out = {"loss": loss, **figures, "n": int(len(y))}
        if self.output == "value":
            out["mae"] = float((z - t).abs().mean())
        return out


_TILE_DATA_DEFAULTS: dict[str, Any] = {
    "labels": None,
    "images": None,
    "tile_size": 250,
    "stride": 125,
    "point_box_size": 50.0,
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


@register_task(TILE_CLASSIFIER)
class TileClassifierTask(_TileTask):
    """BC: tile label ``s_t > 0`` with BCE; one negative tile per positive by default."""

    name = TILE_CLASSIFIER
    output = "logit"
    target = "tile_label"
    data_defaults: Mapping[str, Any] = {**_TILE_DATA_DEFAULTS, "negative_ratio": 1}


@register_task(TILE_REGRESSOR)
class TileRegressorTask(_TileTask):
    """Reg (``negative_ratio: 0``) and Reg-NS (1, 2, 4, 10): tile score ``s_t`` with MSE."""

    name = TILE_REGRESSOR
    output = "value"
    target = "tile_score"
    data_defaults: Mapping[str, Any] = {**_TILE_DATA_DEFAULTS, "negative_ratio": 0}


__all__ = [
    "TILE_CLASSIFIER",
    "TILE_REGRESSOR",
    "TileClassifierTask",
    "TileRegressorTask",
    "TileScoreDataset",
    "TileSource",
    "grid_tiles",
    "image_files",
    "read_tile_source",
    "resolve_labels",
    "split_images",
]

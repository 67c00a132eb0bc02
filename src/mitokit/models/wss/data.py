"""The weak localiser's data: image-level label readers, the image dataset and its batches.

:func:`read_image_labels` reads an ``image,label`` CSV; :func:`read_weak_source` reads any of
the label sources of the ``data`` section (see :mod:`mitokit.models.wss`) into a
:class:`WeakSource`; :class:`WeakImageDataset` serves its images (random crops and augmentation
for training) and :func:`collate_images` batches them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitokit.errors import input_error
from mitokit.models._common import WorkerDraws, random_dihedral
from mitokit.types import MITOSIS

IMAGE_LABELS = "image_labels.csv"
TRUTH_POINTS = "centroids.csv"


def read_image_labels(path: str | Path) -> dict[str, int]:
    """An ``image,label`` CSV (label 0 or 1; ``#`` lines skipped) as ``{image: label}``.

    Raises:
        MitokitError: Missing file, no ``image`` / ``label`` column, a label that is not 0 or 1,
            a repeated image, or no rows (the message names the file and the line).
    """
    p = Path(path)
    if not p.is_file():
        raise input_error(p, "image-label file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise input_error(p, f"unreadable image-label file ({exc})") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    lines = [(i, ln) for i, ln in lines if not ln.lstrip().startswith("#")]
    if not lines:
        raise input_error(p, "empty image-label file")
    rows = list(csv.reader([ln for _, ln in lines]))
    header = [h.strip().lower() for h in rows[0]]
    if "image" not in header or "label" not in header:
        raise input_error(p, f"expected columns image,label, got {','.join(rows[0])!r}")
    ci, cl = header.index("image"), header.index("label")
    out: dict[str, int] = {}
    for (line, _), row in zip(lines[1:], rows[1:], strict=True):
        if len(row) <= max(ci, cl):
            raise input_error(p, f"line {line}: expected {len(header)} fields, got {len(row)}")
        image, raw = row[ci].strip(), row[cl].strip().lower()
        value = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}.get(raw)
        if value is None:
            raise input_error(p, f"line {line}: label must be 0 or 1, got {row[cl]!r}")
        if not image:
            raise input_error(p, f"line {line}: empty image name")
        if image in out:
            raise input_error(p, f"line {line}: image {image!r} is listed twice")
        out[image] = value
    if not out:
        raise input_error(p, "no images listed")
    return out


def _is_image_label_table(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    cols = {c.strip().lower() for c in next(csv.reader([line]))}
                    return {"image", "label"} <= cols and not cols & {"x", "x1", "id"}
    except (OSError, UnicodeDecodeError):
        return False
    return False


def _mitosis_centres(anns: Any, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Centres of the ``mitosis`` objects per image (by id, else by file basename)."""
    from mitokit.io.annotations import canonical_class

    by_name = {Path(i).name: i for i in image_ids}
    found: dict[str, list[tuple[float, float]]] = {i: [] for i in image_ids}
    for ann in anns:
        if canonical_class(ann.label) != MITOSIS:
            continue
        image = ann.image if ann.image in found else by_name.get(Path(str(ann.image)).name)
        if image is not None:
            found[image].append(tuple(ann.center))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in found.items()}


class WeakSource:
    """Images with image-level labels and, where known, truth points (evaluation only).

    Attributes:
        labels_file: The file the image labels came from.
        paths: Image id -> image file.
        sizes: Image id -> (width, height).
        labels: Image id -> 0 / 1.
        points: Image id -> ``(n, 2)`` truth points, for the images whose truth is known.
        points_file: The file the truth points came from, or None.
    """

    def __init__(
        self,
        labels_file: Path,
        paths: Mapping[str, Path],
        sizes: Mapping[str, tuple[int, int]],
        labels: Mapping[str, int],
        points: Mapping[str, np.ndarray],
        points_file: Path | None,
    ) -> None:
        self.labels_file = labels_file
        self.paths = dict(paths)
        self.sizes = dict(sizes)
        self.labels = dict(labels)
        self.points = dict(points)
        self.points_file = points_file

    @property
    def image_ids(self) -> list[str]:
        """Image ids, sorted."""
        return sorted(self.paths)


def read_weak_source(
    labels: str | Path, *, images: str | Path | None = None, points: str | Path | None = None
) -> WeakSource:
    """Read image-level labels (and truth points) as the ``data`` section describes.

    Raises:
        MitokitError: A missing or unreadable file, an image not found, or no image.
    """
    from mitokit.io.annotations import AnnotationSet, ImageInfo, read_annotations
    from mitokit.models.tile_source import read_tile_source

    p = Path(labels)
    truth_file = Path(points) if points is not None else None
    if p.is_dir():
        if not (p / IMAGE_LABELS).is_file():
            from mitokit.models.tile_source import resolve_labels

            p = resolve_labels(p)  # a folder of other label files (consensus ...)
        else:
            p = p / IMAGE_LABELS
            if truth_file is None and (p.parent / TRUTH_POINTS).is_file():
                truth_file = p.parent / TRUTH_POINTS
    elif not p.is_file():
        raise input_error(p, "label file not found")
    if _is_image_label_table(p):
        image_labels = read_image_labels(p)
        listed = AnnotationSet(images={i: ImageInfo(i) for i in image_labels})
        source = read_tile_source(p, images=images, annotations=listed)
        truth = {}
    else:
        source = read_tile_source(p, images=images)
        truth = _mitosis_centres(source.annotations, source.image_ids)
        image_labels = {i: int(len(truth[i]) > 0) for i in source.image_ids}
    if truth_file is not None:
        truth = _mitosis_centres(read_annotations(truth_file), source.image_ids)
    return WeakSource(p, source.paths, source.sizes, image_labels, truth, truth_file)


class WeakImageDataset(Dataset):
    """Images with their image label; random crops and augmentation for training.

    Items: ``image`` (float ``3xHxW`` in [0, 1]), ``label`` (float32 0/1), ``image_id``,
    ``points`` (float32 ``(n, 2)`` truth points in the item's pixels; empty when unknown, and
    always for training crops), ``has_points`` (bool) and ``radius_px`` (float32).

    Args:
        source: The images and labels.
        image_ids: The images of this split.
        crop: Side of a random square crop (training), or None for whole images.
        augment: HED jitter and random flips / rotations.
        hed_sigma: HED jitter scale half-width.
        hed_bias: HED jitter shift half-width.
        radius_px: Matching radius of the point evaluation.
        mpp: Microns per pixel of the images (for the peak distance of the points).
        draws: Seeded generator of the crops and augmentations.
    """

    def __init__(
        self,
        source: WeakSource,
        image_ids: Sequence[str],
        *,
        crop: int | None = None,
        augment: bool = False,
        hed_sigma: float = 0.05,
        hed_bias: float = 0.01,
        radius_px: float = 30.0,
        mpp: float = 0.25,
        draws: WorkerDraws | None = None,
    ) -> None:
        from mitokit.data.stain import HEDJitter
        from mitokit.models.tile_source import _ImageOpener

        self.ids = list(image_ids)
        self.labels = [int(source.labels[i]) for i in self.ids]
        self.points = [source.points.get(i) for i in self.ids]
        self.opener = _ImageOpener({i: source.paths[i] for i in self.ids})
        self.crop = crop
        self.augment = bool(augment)
        self.radius_px = float(radius_px)
        self.mpp = float(mpp)
        self.draws = draws if draws is not None else WorkerDraws(0)
        self.colour = HEDJitter(hed_sigma, hed_bias, seed=self.draws.rng) if augment else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from mitokit.data.arrays import crop_padded
        from mitokit.data.datasets import to_tensor

        rng = self.draws.get()  # reseeds first in a new worker (shared with the colour jitter)
        arr = self.opener(self.ids[index])
        truth = self.points[index]
        if self.crop is not None:
            h, w = arr.shape[:2]
            x0 = int(rng.integers(0, w - self.crop + 1)) if w > self.crop else 0
            y0 = int(rng.integers(0, h - self.crop + 1)) if h > self.crop else 0
            arr = crop_padded(arr, x0, y0, self.crop, self.crop)
            truth = None  # training crops carry no truth (and need none)
        if self.colour is not None:
            arr = self.colour(arr)
        if self.augment and arr.shape[0] == arr.shape[1]:
            arr = random_dihedral(arr, rng)
            truth = None
        pts = np.zeros((0, 2), np.float32) if truth is None else truth.astype(np.float32)
        return {
            "image": to_tensor(arr),
            "label": torch.tensor(float(self.labels[index]), dtype=torch.float32),
            "image_id": self.ids[index],
            "points": torch.from_numpy(pts.reshape(-1, 2)),
            "has_points": truth is not None,
            "radius_px": torch.tensor(self.radius_px, dtype=torch.float32),
            "mpp": torch.tensor(self.mpp, dtype=torch.float64),
        }


def collate_images(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch: images stacked when they share a size (else a list), points as a list."""
    images = [it["image"] for it in items]
    same = all(im.shape == images[0].shape for im in images)
    return {
        "image": torch.stack(images) if same else images,
        "label": torch.stack([it["label"] for it in items]),
        "image_id": [it["image_id"] for it in items],
        "points": [it["points"] for it in items],
        "has_points": torch.tensor([bool(it["has_points"]) for it in items]),
        "radius_px": torch.stack([it["radius_px"] for it in items]),
        "mpp": torch.stack([it["mpp"] for it in items]),
    }

"""Data of the classifiers: patch label tables, their splits and transforms, and tile datasets.

Patches (:class:`PatchTable`, :func:`read_patch_table`): one annotation per patch in any label
file :func:`~mitokit.io.annotations.read_annotations` reads, or a folder of class sub-folders;
each patch file is found by :func:`patch_path`. The training rows come from a split
(:func:`split_pool`) and are divided into validation folds by slide (:func:`fold_split`).
:class:`PatchTransform` crops and augments patches.

Tiles: :class:`TileScoreDataset` gives tiles with their score ``s_t`` and label (read from
:mod:`mitokit.models.tile_source`).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, read_annotations
from mitokit.models._common import WorkerDraws, check_fraction, check_int, random_dihedral

NEGATIVE_NAMES = {"atypical": "normal", "mitosis": "non_mitosis"}
_PATCH_SUBFOLDERS = ("", "normal", "atypical")


def patch_path(
    ann: Annotation,
    info: ImageInfo | None,
    *,
    images: str | os.PathLike | None,
    base: str | os.PathLike,
) -> Path | None:
    """The patch file of an annotation, or None when none is found.

    Names tried, in order: the object's ``extra["patch"]`` (AMi-Br's ``<dataset>_<uid>.png``),
    its image's ``file_name``, its image id. Folders tried: ``images`` when given, else the
    label file's folder ``base``, ``base/images`` and ``base/patches``; in each folder also the
    sub-folders ``normal/`` and ``atypical/`` (AMi-Br's ``patches/{normal,atypical}/``).

    Args:
        ann: The annotation.
        info: Its image record, if the label file lists one.
        images: The patch folder, or None.
        base: The folder of the label file.
    """
    names: list[str] = []
    if ann.extra.get("patch"):
        names.append(str(ann.extra["patch"]))
    if info is not None and info.file_name:
        names.append(info.file_name)
    names.append(ann.image)
    base = Path(base)
    folders = [Path(images)] if images is not None else [base, base / "images", base / "patches"]
    for folder in folders:
        for name in names:
            for sub in _PATCH_SUBFOLDERS:
                p = folder / sub / name if sub else folder / name
                if p.is_file():
                    return p
    return None


@dataclass
class PatchTable:
    """The patches of a label file with their targets.

    Attributes:
        source: The label file.
        ids: Object ids.
        paths: Patch files.
        groups: Slide group of each patch (validation folds never split a group).
        score: Mean vote (soft target) in [0, 1].
        label: Hard label (1 when ``score > 0.5``).
        aliases: Names a split file may use for each row (id, patch file, its stem, image).
        positive: Name of the positive class; ``negative`` of the other.
    """

    source: Path
    ids: list[str]
    paths: list[Path]
    groups: np.ndarray
    score: np.ndarray
    label: np.ndarray
    aliases: list[set[str]]
    positive: str
    negative: str

    def __len__(self) -> int:
        return len(self.ids)


def _score(ann: Annotation, positive: str) -> float:
    from mitokit.labels.aggregate import aggregate_votes

    if ann.votes:
        return aggregate_votes(ann.votes, repeats="rater_mean").score
    if ann.agreement is not None:
        return float(ann.agreement)
    return 1.0 if ann.label == positive else 0.0


def read_patch_table(
    labels: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    annotations: AnnotationSet | None = None,
    positive: str | None = None,
) -> PatchTable:
    """Read a patch label file and find every patch (see :func:`patch_path`).

    Args:
        labels: The label file, or a folder of class sub-folders (patches are then found
            under it, by their path relative to it).
        images: The patch folder, or None to search beside the label file.
        annotations: The label file already read (skips reading it again).
        positive: The positive class folder of a class-folder data set (see
            :mod:`mitokit.io.formats.imagefolder`); an error for a label file.

    Raises:
        MitokitError: Unreadable labels, no objects, a patch not found, or several objects
            naming one patch file (labels of objects on slides, not of patches).
    """
    path = Path(labels)
    if annotations is None:
        anns = read_annotations(path, **({} if positive is None else {"positive": positive}))
    else:
        anns = annotations
    base = path if path.is_dir() else path.parent
    if len(anns) == 0:
        raise input_error(path, "no objects: nothing to train or predict on")
    positive = anns.vote_target
    negative = NEGATIVE_NAMES.get(positive, f"not_{positive}")
    ids, paths, groups, scores, aliases = [], [], [], [], []
    seen: dict[Path, str] = {}
    for ann in anns:
        info = anns.images.get(ann.image)
        p = patch_path(ann, info, images=images, base=base)
        if p is None:
            where = images if images is not None else base
            want = ann.extra.get("patch") or ann.image
            raise input_error(path, f"patch {want!r} of object {ann.id!r} not found under {where}")
        if p in seen:
            raise input_error(
                path,
                f"objects {seen[p]!r} and {ann.id!r} both name the patch file {p}: patch labels "
                "need one patch image per object (cut patches first with "
                "mitokit.data.extract_patches)",
            )
        seen[p] = ann.id
        dataset = ann.extra.get("dataset")
        slide = ann.extra.get("slide", ann.image)
        ids.append(ann.id)
        paths.append(p)
        groups.append(f"{dataset}/{slide}" if dataset else str(slide))
        score = _score(ann, positive)
        if not math.isfinite(score):
            raise input_error(path, f"object {ann.id!r} has no usable votes")
        scores.append(score)
        names = {ann.id, ann.image, p.name, p.stem}
        if ann.extra.get("patch"):
            names.add(str(ann.extra["patch"]))
        aliases.append(names)
    score_arr = np.asarray(scores, dtype=np.float64)
    return PatchTable(
        source=path,
        ids=ids,
        paths=paths,
        groups=np.asarray(groups, dtype=object),
        score=score_arr,
        label=(score_arr > 0.5).astype(np.int64),
        aliases=aliases,
        positive=positive,
        negative=negative,
    )


def read_split_ids(path: str | os.PathLike) -> set[str]:
    """The ids a split file lists.

    A label file any reader accepts gives its object ids; otherwise a CSV with a header whose
    ``id``, ``dataset_uid``, ``patch`` or ``image`` column (else the first column) lists ids.

    Raises:
        MitokitError: Missing or empty file.
    """
    p = Path(path)
    if not p.is_file():
        raise input_error(p, "split file not found")
    try:
        anns = read_annotations(p)
    except MitokitError:
        anns = None
    if anns is not None and len(anns):
        return {a.id for a in anns}
    with p.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise input_error(p, "split file lists no ids (expected a header and one id per row)")
    header = [h.strip().lower() for h in rows[0]]
    col = next((header.index(c) for c in ("id", "dataset_uid", "patch", "image") if c in header), 0)
    return {r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()}


def split_pool(
    table: PatchTable, split: Any, *, split_seed: int, where: str | os.PathLike | None = None
) -> np.ndarray:
    """Indices of the rows that may be used for training (train + validation), sorted.

    Args:
        table: The patches.
        split: A split file, a fraction of slide groups in (0, 1], or None (all rows).
        split_seed: Seed of the fraction's draw.
        where: The config, for messages.
    """
    n = len(table)
    if split is None:
        return np.arange(n)
    if isinstance(split, (str, os.PathLike)):
        keys = read_split_ids(split)
        keep = np.array([bool(a & keys) for a in table.aliases])
        if not keep.any():
            raise input_error(split, f"lists none of the objects of {table.source}")
        return np.flatnonzero(keep)
    frac = check_fraction(split, "data.split (a fraction)")
    if frac <= 0:
        raise input_error(where, "data.split must be a split file or a fraction in (0, 1]")
    uniq = np.unique(table.groups.astype(str))
    rng = np.random.default_rng(split_seed)
    chosen = set(rng.permutation(uniq)[: max(1, math.ceil(frac * len(uniq)))].tolist())
    return np.flatnonzero([g in chosen for g in table.groups.astype(str)])


def fold_split(
    labels: np.ndarray, groups: np.ndarray, *, folds: int, fold: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation positions by :class:`~sklearn.model_selection.StratifiedGroupKFold`.

    Returns positions into ``labels``; with ``fold=None`` or ``folds < 2`` everything is
    training.

    Raises:
        MitokitError: Fewer groups than folds, or ``fold`` out of range.
    """
    n = len(labels)
    if fold is None or folds < 2:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    if not (0 <= fold < folds):
        raise MitokitError(f"data.fold must be in [0, {folds - 1}], got {fold}")
    n_groups = len(np.unique(groups.astype(str)))
    if n_groups < folds:
        raise MitokitError(
            f"{n_groups} slide groups in the training rows, fewer than data.folds={folds}; "
            "lower data.folds (0: no validation)"
        )
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" warnings
        parts = list(splitter.split(np.zeros(n), labels, groups.astype(str)))
    train, val = parts[fold]
    return np.sort(train), np.sort(val)


class PatchTransform:
    """Centre crop, then (when augmenting) a random flip / rotation and HED jitter.

    Works on ``HxWx3`` uint8 patches; its draws come from its own seeded generator, a fresh
    stream in each DataLoader worker (:class:`~mitokit.models._common.WorkerDraws`).

    Args:
        crop: Side of the centre crop in pixels, or None.
        augment: Apply the random flip / rotation and the HED jitter.
        hed_sigma: :class:`~mitokit.data.stain.HEDJitter` scale half-width (0 disables it
            together with ``hed_bias=0``).
        hed_bias: HEDJitter shift half-width.
        seed: Seed of the draws.
    """

    def __init__(
        self,
        *,
        crop: int | None = None,
        augment: bool = False,
        hed_sigma: float = 0.05,
        hed_bias: float = 0.01,
        seed: int = 0,
    ) -> None:
        from mitokit.data.stain import HEDJitter

        self.crop = check_int(crop, "data.crop", minimum=1, allow_none=True)
        self.augment = bool(augment)
        self.draws = WorkerDraws(seed)
        self.hed = (
            HEDJitter(hed_sigma, hed_bias, seed=self.draws.rng)
            if self.augment and (hed_sigma > 0 or hed_bias > 0)
            else None
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        img = center_crop(image, self.crop) if self.crop else image
        if self.augment:
            img = random_dihedral(img, self.draws.get())
            if self.hed is not None:
                img = self.hed(img)
        # A writable copy: Pillow's arrays are read-only, which torch warns about.
        return np.array(img, copy=True)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` of an ``HxWxC`` array.

    Raises:
        MitokitError: The image is smaller than ``size``.
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        raise MitokitError(f"patch of {w}x{h} pixels is smaller than the crop of {size}")
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


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


__all__ = [
    "NEGATIVE_NAMES",
    "PatchTable",
    "PatchTransform",
    "TileScoreDataset",
    "center_crop",
    "fold_split",
    "patch_path",
    "read_patch_table",
    "read_split_ids",
    "split_pool",
]

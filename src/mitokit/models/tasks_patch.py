"""The patch classifier of the first paper: one cell patch in, P(positive) out.

Task ``patch_classifier``: a ResNet (:func:`~mitokit.models.backbones.build_resnet`) on
cell-centred patches resampled to ``input_size`` (256) inside the model, trained with binary
cross-entropy on the majority label or on the probabilistic rater score (soft targets), in
batches with as many positive as negative patches (the paper trained with Adam at 1e-5; the
optimiser is the engine's). N seeds of it averaged make the ensemble scorer
(:class:`~mitokit.models.classifier.PatchEnsemble`).

Data layout (``data`` section of a config):

- ``labels``: a label file with one annotation per patch, in any format
  :func:`~mitokit.io.annotations.read_annotations` reads: a synthetic ``labels.csv``
  (``mitokit synth patches``), ``AMI-BR.csv`` or its train split, a CSV/COCO file whose every
  object names a patch image. The positive class is what a vote of 1 says yes to (the set's
  ``vote_target``: ``mitosis``, or ``atypical`` for AMi-Br, whose negative class is
  ``normal``). ``labels`` may also be a folder of class sub-folders (torchvision's ImageFolder
  layout, ``root/Atypical/*.png``, ``root/Normal/*.png``; see
  :mod:`mitokit.io.formats.imagefolder`): the class of a patch is its folder.
- ``positive``: the positive class folder of a class-folder data set (``Atypical``); without
  it, the folder named like mitosis, else an error listing the folders. Not taken by label
  files, which say their positive class themselves.
- ``images``: the folder holding the patches; by default the label file's folder, its
  ``images/`` and its ``patches/`` sub-folders are searched. See :func:`patch_path`.
- ``target``: ``majority`` (1 when the mean vote is above 0.5, ties negative) or ``soft``
  (the mean vote; each rater's repeated votes averaged first). Objects without votes use their
  agreement as the score, else their class (1 for the positive class).
- ``split``: which rows may be used for training (train + validation); the rest is the held-out
  test set and is never read. A file of training ids (``amibr_train_split.csv``, any label file,
  or a CSV whose ``id`` / ``dataset_uid`` / ``patch`` / ``image`` column, or else first column,
  lists ids, patch file names or slide names), a fraction of slides drawn with ``split_seed``,
  or null for every row.
- validation: fold ``fold`` of ``folds`` of :class:`sklearn.model_selection.StratifiedGroupKFold`
  over the training rows, grouped by slide (``<dataset>/<image>`` when the object has a
  ``dataset``, else the image id; a synthetic patch is its own image, so its own group),
  stratified by the hard label, shuffled with ``split_seed``; ``folds: 0`` (or ``fold: null``
  from Python) trains on all rows without validation.
- ``crop``: centre crop (pixels) applied to every patch before anything else (AMi-Br patches are
  128 px; the paper's cell patches 64 px), or null.
- ``augment``: random flips / 90-degree rotations and :class:`~mitokit.data.stain.HEDJitter`
  (``hed_sigma``, ``hed_bias``) on training patches, seeded from the ``seed`` of
  :meth:`PatchClassifierTask.build_data`.
- ``balanced``: class-balanced batches (:class:`~mitokit.data.sampling.ClassBalancedBatchSampler`)
  of ``data.batch_size`` patches. The engine's loader then takes whole batches from the
  sampler, so with ``balanced: true`` this, not ``train.batch_size``, sets the batch size (the
  task contract does not hand the engine's batch size to ``build_data``).
- ``n_max``: keep at most this many training rows (drawn with ``split_seed``), for quick runs.

The datasets returned carry ``ids`` and ``groups`` attributes (object id and slide group of each
item) so a run can record exactly which rows it trained and validated on.

A class without training rows is an error raised by :meth:`PatchClassifierTask.build_data`,
before any training starts.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, read_annotations
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

TASK = "patch_classifier"
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


@register_task(TASK)
class PatchClassifierTask:
    """Binary patch classifier (BCE on majority or soft targets, balanced batches)."""

    name = TASK
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet18",
        "input_size": 256,
        "weights": None,
        "dropout": 0.0,
    }
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "positive": None,
        "target": "majority",
        "split": None,
        "split_seed": 0,
        "folds": 5,
        "fold": 0,
        "crop": None,
        "augment": True,
        "hed_sigma": 0.05,
        "hed_bias": 0.01,
        "balanced": True,
        "batch_size": 32,
        "n_max": None,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """A ResNet with one logit output (random or local initial weights)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_resnet(
            cfg["arch"],
            out_features=1,
            weights=cfg["weights"],
            input_size=cfg["input_size"],
            dropout=cfg["dropout"],
            output="logit",
        )

    def split_rows(
        self, data_cfg: Mapping[str, Any]
    ) -> tuple[PatchTable, np.ndarray, np.ndarray, np.ndarray]:
        """The label table and the row positions of the pool, training and validation sets.

        The same rows :meth:`build_data` trains and validates on, so that an evaluation can
        re-score a trained model's own validation rows (e.g. to choose a threshold there).
        """
        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError("data.labels is required (a patch label file)")
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        folds = check_int(cfg["folds"], "data.folds", minimum=0)
        fold = check_int(cfg["fold"], "data.fold", minimum=0, allow_none=True)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        table = read_patch_table(cfg["labels"], images=cfg["images"], positive=cfg["positive"])
        pool = split_pool(table, cfg["split"], split_seed=split_seed)
        if n_max is not None and n_max < len(pool):
            rng = np.random.default_rng([split_seed, 1])
            pool = np.sort(rng.choice(pool, size=n_max, replace=False))
        tr, va = fold_split(
            table.label[pool], table.groups[pool], folds=folds, fold=fold, seed=split_seed
        )
        return table, pool, pool[tr], pool[va]

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training and validation patches (see the module docstring for the keys).

        Raises:
            MitokitError: Missing labels, bad settings, a patch not found, or a class without
                training rows (``"class 'atypical' has no training samples in <file>"``).
        """
        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["target"] not in ("majority", "soft"):
            raise MitokitError(f"data.target must be 'majority' or 'soft', got {cfg['target']!r}")
        batch_size = check_int(cfg["batch_size"], "data.batch_size", minimum=2)
        table, pool, train_idx, val_idx = self.split_rows(cfg)
        for cls, name in ((1, table.positive), (0, table.negative)):
            if not (table.label[train_idx] == cls).any():
                raise MitokitError(
                    f"class {name!r} has no training samples in {table.source}"
                    + (f" (split {cfg['split']})" if cfg["split"] is not None else "")
                )
        target = table.score if cfg["target"] == "soft" else table.label.astype(np.float64)
        train = self._dataset(
            table,
            train_idx,
            target,
            PatchTransform(
                crop=cfg["crop"],
                augment=cfg["augment"],
                hed_sigma=cfg["hed_sigma"],
                hed_bias=cfg["hed_bias"],
                seed=seed,
            ),
        )
        val = (
            self._dataset(table, val_idx, target, PatchTransform(crop=cfg["crop"]))
            if len(val_idx)
            else None
        )
        sampler = None
        if cfg["balanced"]:
            from mitokit.data.sampling import ClassBalancedBatchSampler

            sampler = ClassBalancedBatchSampler(table.label[train_idx], batch_size, seed)
        info = {
            "labels": str(table.source),
            "positive_class": table.positive,
            "target": cfg["target"],
            "n_pool": int(len(pool)),
            "n_heldout": int(len(table) - len(pool)),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_train_positive": int(table.label[train_idx].sum()),
            "n_val_positive": int(table.label[val_idx].sum()),
            "n_groups_train": int(len(np.unique(table.groups[train_idx].astype(str)))),
            "n_groups_val": int(len(np.unique(table.groups[val_idx].astype(str)))),
        }
        return TaskData(
            train=train,
            val=val,
            train_sampler=sampler,
            batch_sampler=sampler is not None,
            info=info,
        )

    @staticmethod
    def _dataset(
        table: PatchTable, idx: np.ndarray, target: np.ndarray, transform: PatchTransform
    ) -> Any:
        from mitokit.data.datasets import PatchDataset

        ds = PatchDataset(
            [table.paths[i] for i in idx],
            {
                "target": target[idx].astype(np.float32),
                "label": table.label[idx],
            },
            transform=transform,
        )
        ds.ids = [table.ids[i] for i in idx]  # type: ignore[attr-defined]
        ds.groups = [str(table.groups[i]) for i in idx]  # type: ignore[attr-defined]
        return ds

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE of the logits against ``target`` (hard 0/1 or soft mean vote)."""
        images = batch["image"].to(device)
        target = batch["target"].to(device).float()
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        return loss, {"bce": float(loss.detach()), "positive_share": float(target.mean())}

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Mean BCE, AUC, balanced accuracy at 0.5, ECE (against the soft or hard target)."""
        collected = collect_outputs(model, loader, device=device, label_key="label")
        if collected is None:
            return {"loss": math.nan, "auc": math.nan, "balanced_accuracy": math.nan}
        z, t, y = collected
        loss = float(F.binary_cross_entropy_with_logits(z, t))
        probs = torch.sigmoid(z).numpy().astype(np.float64)
        figures = binary_metrics(y.numpy(), probs, soft=t.numpy(), threshold=0.5)
        return {"loss": loss, **figures, "n": int(len(y))}


__all__ = [
    "PatchClassifierTask",
    "PatchTable",
    "PatchTransform",
    "center_crop",
    "fold_split",
    "patch_path",
    "read_patch_table",
    "read_split_ids",
    "split_pool",
]

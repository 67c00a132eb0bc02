"""Score patch and image files with trained models: what ``mitokit predict`` does.

:func:`find_patches` turns what a user names (image files, folders of images, folders of class
sub-folders, patch label files) into the list of patches; :func:`predict_patch_files` and
:func:`predict_tile_files` load the models (one, or an ensemble whose scores are averaged) and
return one row per patch or per sub-tile, with what was used (task, crop, tile size) as meta.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitokit.errors import MitokitError, input_error

PathLike = str | os.PathLike

LABEL_SUFFIXES = (".csv", ".json", ".geojson", ".sqlite", ".db")
"""Files read as patch label files (ids, images and scores) rather than as images."""


@dataclass(frozen=True)
class Patch:
    """One patch named by the user: its image file, id and label score (NaN if none)."""

    path: Path
    id: str
    score: float = math.nan


def find_patches(paths: Sequence[PathLike], *, images: PathLike | None = None) -> list[Patch]:
    """Patches from image files, folders, folders of class sub-folders and label files.

    A folder's own PNG, JPEG and TIFF files are patches with their stem as id; a folder with
    none but class sub-folders (``Atypical/``, ``Normal/``) gives theirs, with the path under
    the folder as id; a label file (``.csv``, ``.json``, ``.geojson``, ``.sqlite``, ``.db``)
    gives its objects, their patches found as in training (``images``: the patch folder,
    default beside the file), with the label's score.

    Raises:
        MitokitError: A missing path, a folder without images or class folders, no patches.
    """
    from mitokit.io.formats.imagefolder import class_images
    from mitokit.models.classifier import image_files, read_patch_table

    found: list[Patch] = []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            files = image_files(p)
            if files:
                found.extend(Patch(f, f.stem) for f in files)
                continue
            classes = class_images(p)
            if not classes:
                raise input_error(p, "folder holds no PNG, JPEG or TIFF image, nor class folders")
            for members in classes.values():
                found.extend(Patch(f, f.relative_to(p).as_posix()) for f in members)
        elif p.is_file() and p.suffix.lower() in LABEL_SUFFIXES:
            table = read_patch_table(p, images=images)
            found.extend(
                Patch(path, oid, float(s))
                for path, oid, s in zip(table.paths, table.ids, table.score, strict=True)
            )
        elif p.is_file():
            found.append(Patch(p, p.stem))
        else:
            raise input_error(p, "file not found")
    if not found:
        raise input_error(None, "no images given")
    return found


def trained_setting(cfgs: Sequence[dict[str, Any]], key: str) -> Any:
    """A data setting the models were trained with (crop, tile_size ...), if recorded."""
    for cfg in cfgs:
        extra = cfg.get("extra", {})
        data = extra.get("data") or extra.get("data_cfg") or {}
        if isinstance(data, dict) and data.get(key) is not None:
            return data[key]
    return None


def predict_patch_files(
    inputs: Sequence[PathLike],
    models: Sequence[PathLike],
    *,
    images: PathLike | None = None,
    crop: int | None = None,
    tta: bool = False,
    batch_size: int = 32,
    backend: str = "torch",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score patches with a patch classifier (or the mean of an ensemble).

    Args:
        inputs: What :func:`find_patches` takes.
        models: Model folders, or folders of seed folders; several make an ensemble.
        images: The patch folder of label-file inputs.
        crop: Centre crop before scoring (default: the training setting, else none).
        tta: Average over four flips.
        batch_size: Patches per network call.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (:func:`mitokit.models.backend.use_backend`).

    Returns:
        (rows ``{"image", "id", "score"}``, meta ``{"task", "models", "tta", "crop",
        "backend"}``).
    """
    from mitokit.models.classifier import PATCH_CLASSIFIER, load_ensemble, predict_images

    patches = find_patches(inputs, images=images)
    model, cfgs = load_ensemble(models, expect_task=PATCH_CLASSIFIER, backend=backend)
    if crop is None:
        crop = trained_setting(cfgs, "crop")
    scores = predict_images(
        model, [p.path for p in patches], batch_size=batch_size, tta=tta, crop=crop
    )
    rows = [
        {"image": str(p.path), "id": p.id, "score": float(s)}
        for p, s in zip(patches, scores, strict=True)
    ]
    meta = {"task": PATCH_CLASSIFIER, "models": len(model), "tta": tta, "crop": crop}
    return rows, {**meta, "backend": backend}


def predict_tile_files(
    inputs: Sequence[PathLike],
    models: Sequence[PathLike],
    *,
    tta: bool = False,
    batch_size: int = 32,
    backend: str = "torch",
    tile_size: int | None = None,
    stride: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score the sub-tiles of images with a tile classifier (BC) or regressor (Reg, Reg-NS).

    ``tta``, ``batch_size`` and ``backend`` as in :func:`predict_patch_files`. Each image is
    covered exactly by full sub-tiles of ``tile_size`` at ``stride`` (default: the training
    settings, else 250 at 125; the last row and column moved back to the edge).

    Returns:
        (rows ``{"image", "x1", "y1", "x2", "y2", "score"}``, meta with the task, the number
        of models, tta, tile size, stride and backend used).

    Raises:
        MitokitError: Missing files, a folder without images, a stride above the tile size.
    """
    from mitokit.models.classifier import TILE_TASKS, load_ensemble, predict_tiles
    from mitokit.models.tile_source import find_images

    files = find_images(inputs)
    model, cfgs = load_ensemble(models, expect_task=TILE_TASKS, backend=backend)
    tile_size = tile_size or trained_setting(cfgs, "tile_size") or 250
    stride = stride or trained_setting(cfgs, "stride") or 125
    if stride > tile_size:
        raise MitokitError(f"--stride ({stride}) is larger than --tile-size ({tile_size})")
    rows = []
    for f in files:
        for r in predict_tiles(
            model, f, tile_size=tile_size, stride=stride, batch_size=batch_size, tta=tta
        ):
            rows.append({"image": str(f), **r})
    meta = {
        "task": cfgs[0]["task"],
        "models": len(model),
        "tta": tta,
        "tile_size": tile_size,
        "stride": stride,
        "backend": backend,
    }
    return rows, meta


__all__ = [
    "LABEL_SUFFIXES",
    "Patch",
    "find_patches",
    "predict_patch_files",
    "predict_tile_files",
    "trained_setting",
]

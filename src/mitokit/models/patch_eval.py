"""Score a patch label file with a classifier (or an ensemble) and measure it.

Used to report a trained patch classifier on rows it never saw, e.g. the 826 published test rows
of AMi-Br: every row of the label file not listed in the training split file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mitokit.errors import input_error


def evaluate_patch_file(
    models: Sequence[str | os.PathLike],
    labels: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    exclude_ids: str | os.PathLike | None = None,
    only_ids: str | os.PathLike | None = None,
    tta: bool = False,
    threshold: float = 0.5,
    batch_size: int = 64,
) -> dict[str, Any]:
    """AUC, balanced accuracy, ECE of an ensemble on the patches of a label file.

    Args:
        models: Model folders (an ensemble when several; seed folders are expanded).
        labels: Patch label file (mitokit CSV with votes, AMi-Br CSV ...).
        images: Patch folder (default: found beside the label file).
        exclude_ids: A split file whose rows are left out (the training split: what remains is
            the held-out test set).
        only_ids: A split file whose rows alone are scored.
        tta: Average over the four flips.
        threshold: Score threshold of the balanced accuracy.
        batch_size: Patches per forward pass.

    Returns:
        ``n``, ``n_positive``, ``auc``, ``balanced_accuracy``, ``ece`` (against the mean vote),
        ``ece_hard`` (against the majority label), ``members``, ``scores`` (per row: id, score,
        label, target).
    """
    from mitokit.metrics.classification import (
        balanced_accuracy,
        expected_calibration_error,
        roc_auc,
    )
    from mitokit.models.classifier import load_ensemble, predict_images
    from mitokit.models.tasks_patch import read_patch_table, read_split_ids

    if exclude_ids is not None and only_ids is not None:
        raise input_error(None, "give exclude_ids or only_ids, not both")
    table = read_patch_table(labels, images=images)
    keep = np.ones(len(table), dtype=bool)
    for split, inside in ((exclude_ids, False), (only_ids, True)):
        if split is None:
            continue
        ids = read_split_ids(split)
        listed = np.array([bool(a & ids) for a in table.aliases])
        keep &= listed if inside else ~listed
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise input_error(labels, "no patches left to evaluate")
    ensemble, cfgs = load_ensemble(models)
    crop = _trained_crop(cfgs)
    scores = predict_images(
        ensemble, [table.paths[i] for i in rows], batch_size=batch_size, tta=tta, crop=crop
    )
    y = table.label[rows]
    soft = table.score[rows]
    return {
        "labels": str(labels),
        "n": int(len(rows)),
        "n_positive": int(y.sum()),
        "positive": table.positive,
        "members": len(cfgs),
        "tta": tta,
        "auc": roc_auc(y, scores),
        "balanced_accuracy": balanced_accuracy(y, (scores >= threshold).astype(int)),
        "threshold": threshold,
        "ece": expected_calibration_error(soft, scores),
        "ece_hard": expected_calibration_error(y, scores),
        "scores": [
            {"id": table.ids[i], "score": float(s), "label": int(t), "target": float(v)}
            for i, s, t, v in zip(rows, scores, y, soft, strict=True)
        ],
    }


def _trained_crop(cfgs: Sequence[dict[str, Any]]) -> int | None:
    crops = {(c.get("extra", {}).get("data") or {}).get("crop") for c in cfgs}
    if len(crops) > 1:
        raise input_error(None, f"ensemble members were trained with different crops: {crops}")
    return crops.pop() if crops else None

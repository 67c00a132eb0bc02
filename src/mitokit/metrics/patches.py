"""Score a patch label file with a classifier (or an ensemble) and measure it.

Used to report a trained patch classifier on rows it never saw, e.g. the 826 published test rows
of AMi-Br: every row of the label file not listed in the training split file.

(Formerly ``mitokit.models.patch_eval``, which still re-exports this module.)
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
    threshold: float | str = 0.5,
    batch_size: int = 64,
    positive: str | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> dict[str, Any]:
    """AUC, balanced accuracy, ECE of an ensemble on the patches of a label file.

    Args:
        models: Model folders (an ensemble when several; seed folders are expanded).
        labels: Patch label file (mitokit CSV with votes, AMi-Br CSV ...), or a folder of
            class sub-folders (``Atypical/``, ``Normal/``).
        images: Patch folder (default: found beside the label file).
        exclude_ids: A split file whose rows are left out (the training split: what remains is
            the held-out test set).
        only_ids: A split file whose rows alone are scored.
        tta: Average over the four flips.
        threshold: Score threshold of the balanced accuracy, or ``"validation"``: the threshold
            of highest balanced accuracy on the models' own validation rows (re-scored from
            the data settings saved with the models; see :func:`validation_threshold`).
        batch_size: Patches per forward pass.
        positive: The positive class folder of a class-folder data set; by default the one the
            models were trained with (``data.positive``), else the folder rule of
            :mod:`mitokit.io.formats.imagefolder`.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (:func:`mitokit.models.backend.use_backend`,
            ``threads`` intra-op threads).

    Returns:
        ``n``, ``n_positive``, ``auc``, ``balanced_accuracy``, ``ece`` (against the mean vote),
        ``ece_hard`` (against the majority label), ``members``, ``threshold`` (and, when it
        was chosen on validation, ``threshold_source`` and ``n_validation``), ``scores`` (per
        row: id, score, label, target).
    """
    from mitokit.models.classifier import load_ensemble, predict_images
    from mitokit.models.classifier.data import read_patch_table

    if exclude_ids is not None and only_ids is not None:
        raise input_error(None, "give exclude_ids or only_ids, not both")
    ensemble, cfgs = load_ensemble(models, backend=backend, threads=threads)
    if positive is None and os.path.isdir(labels):
        positive = _trained_positive(cfgs)
    table = read_patch_table(labels, images=images, positive=positive)
    rows = select_rows(table, exclude_ids=exclude_ids, only_ids=only_ids)
    if len(rows) == 0:
        raise input_error(labels, "no patches left to evaluate")
    crop = _trained_crop(cfgs)
    scores = predict_images(
        ensemble, [table.paths[i] for i in rows], batch_size=batch_size, tta=tta, crop=crop
    )
    chosen = _choose_threshold(
        threshold, ensemble, cfgs, tta=tta, crop=crop, batch_size=batch_size, rows=rows, table=table
    )
    figures = patch_figures(table, rows, scores, chosen)
    head = {k: figures[k] for k in ("n", "n_positive", "positive")}
    meta = {"members": len(cfgs), "tta": tta, "backend": backend}
    return {"labels": str(labels), **head, **meta, **figures}


def select_rows(
    table: Any,
    *,
    exclude_ids: str | os.PathLike | None = None,
    only_ids: str | os.PathLike | None = None,
) -> np.ndarray:
    """Positions of the rows of a patch table left after the split files (possibly none).

    Args:
        table: A :class:`~mitokit.models.classifier.data.PatchTable`.
        exclude_ids: A split file whose rows are left out.
        only_ids: A split file whose rows alone are kept.
    """
    from mitokit.models.classifier.data import read_split_ids

    keep = np.ones(len(table), dtype=bool)
    for split, inside in ((exclude_ids, False), (only_ids, True)):
        if split is None:
            continue
        ids = read_split_ids(split)
        listed = np.array([bool(a & ids) for a in table.aliases])
        keep &= listed if inside else ~listed
    return np.flatnonzero(keep)


def _choose_threshold(
    threshold: float | str,
    ensemble: Any,
    cfgs: Sequence[dict[str, Any]],
    *,
    tta: bool,
    crop: int | None,
    batch_size: int,
    rows: np.ndarray,
    table: Any,
) -> dict[str, Any]:
    """``{"threshold": t}``, chosen on the validation rows (with how) for ``"validation"``."""
    if not isinstance(threshold, str):
        return {"threshold": threshold}
    if threshold != "validation":
        raise input_error(None, f"threshold must be a number or 'validation', got {threshold!r}")
    return validation_threshold(
        ensemble, cfgs, tta=tta, crop=crop, batch_size=batch_size, exclude=rows, table=table
    )


def patch_figures(
    table: Any, rows: np.ndarray, scores: np.ndarray, chosen: dict[str, Any]
) -> dict[str, Any]:
    """The figures of scored rows of a patch table (see :func:`evaluate_patch_file`).

    Args:
        table: The :class:`~mitokit.models.classifier.data.PatchTable`.
        rows: Positions of the scored rows.
        scores: Their scores.
        chosen: ``threshold`` and, when chosen on validation rows, how
            (:func:`validation_threshold`).
    """
    from mitokit.metrics.classification import (
        balanced_accuracy,
        expected_calibration_error,
        roc_auc,
    )

    threshold = chosen["threshold"]
    y = table.label[rows]
    soft = table.score[rows]
    return {
        "n": int(len(rows)),
        "n_positive": int(y.sum()),
        "positive": table.positive,
        "auc": roc_auc(y, scores),
        "balanced_accuracy": balanced_accuracy(y, (scores >= threshold).astype(int)),
        "threshold": float(threshold),
        **{k: v for k, v in chosen.items() if k != "threshold"},
        "ece": expected_calibration_error(soft, scores),
        "ece_hard": expected_calibration_error(y, scores),
        "scores": [
            {"id": table.ids[i], "score": float(s), "label": int(t), "target": float(v)}
            for i, s, t, v in zip(rows, scores, y, soft, strict=True)
        ],
    }


def validation_threshold(
    ensemble: Any,
    cfgs: Sequence[dict[str, Any]],
    *,
    tta: bool,
    crop: int | None,
    batch_size: int,
    exclude: np.ndarray | None = None,
    table: Any = None,
) -> dict[str, Any]:
    """The balanced-accuracy threshold of an ensemble on its members' validation rows.

    The rows are rebuilt from the data settings saved with each model (label file, split,
    folds, fold, split seed), so they are exactly the rows the run validated on; all members
    must share them. Rows that are also being evaluated (``exclude``, positions in ``table``)
    are refused, so a test set can never choose its own threshold.

    Raises:
        MitokitError: Members validated on different rows, no validation rows, or validation
            rows that overlap the evaluated rows.
    """
    from mitokit.metrics.classification import best_threshold
    from mitokit.models.classifier import PatchClassifierTask, predict_images

    task = PatchClassifierTask()
    datas = [(c.get("extra", {}) or {}).get("data") for c in cfgs]
    if any(d is None for d in datas):
        raise input_error(None, "a model was saved without its data settings: give a number")
    keys = {json_key(d) for d in datas}
    if len(keys) > 1:
        raise input_error(None, "ensemble members validated on different rows: give a number")
    vt, _, _, val_idx = task.split_rows(datas[0])
    if len(val_idx) == 0:
        raise input_error(datas[0].get("labels"), "the models had no validation rows")
    if exclude is not None and table is not None:
        evaluated = {table.ids[i] for i in exclude}
        if any(vt.ids[i] in evaluated for i in val_idx):
            raise input_error(
                datas[0].get("labels"),
                "the models' validation rows overlap the evaluated rows: give a number",
            )
    scores = predict_images(
        ensemble, [vt.paths[i] for i in val_idx], batch_size=batch_size, tta=tta, crop=crop
    )
    return {
        "threshold": best_threshold(vt.label[val_idx], scores),
        "threshold_source": "validation",
        "n_validation": int(len(val_idx)),
    }


def json_key(value: Any) -> str:
    """A canonical JSON text of ``value`` (equal settings give equal keys)."""
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _trained_crop(cfgs: Sequence[dict[str, Any]]) -> int | None:
    crops = {(c.get("extra", {}).get("data") or {}).get("crop") for c in cfgs}
    if len(crops) > 1:
        raise input_error(None, f"ensemble members were trained with different crops: {crops}")
    return crops.pop() if crops else None


def _trained_positive(cfgs: Sequence[dict[str, Any]]) -> str | None:
    """The ``data.positive`` the members were trained with, where they share one."""
    found = {(c.get("extra", {}).get("data") or {}).get("positive") for c in cfgs}
    return found.pop() if len(found) == 1 else None


__all__ = [
    "evaluate_patch_file",
    "patch_figures",
    "select_rows",
    "validation_threshold",
]

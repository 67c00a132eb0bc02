"""Data of the diffusion model: cell patches with the score each is conditioned on.

The patches are those of a patch label file (:func:`~mitokit.models.classifier.read_patch_table`),
split by slide as for the patch classifier (:func:`split_rows`); the condition of each is the
mean vote, the majority label or a column of the label file (:func:`condition_values`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mitokit.errors import input_error
from mitokit.models.classifier.data import PatchTable, PatchTransform, fold_split, split_pool

CONDITIONS_BUILTIN = ("soft", "majority")


def condition_values(table: PatchTable, anns: Any, condition: str) -> np.ndarray:
    """The condition of every row of ``table`` (``data.condition``, see the package docstring).

    Args:
        table: The patches.
        anns: The label file's objects (for a column condition).
        condition: ``soft`` (mean vote), ``majority`` (0 / 1) or a column of the label file.

    Raises:
        MitokitError: A column missing on an object, not a number, or outside [0, 1].
    """
    if condition == "soft":
        return table.score
    if condition == "majority":
        return table.label.astype(np.float64)
    return _column_values(table, anns, condition)


def _column_values(table: Any, anns: Any, column: str) -> np.ndarray:
    extra = {a.id: a.extra for a in anns}
    values = []
    for oid in table.ids:
        raw = extra[oid].get(column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise input_error(
                table.source,
                f"object {oid!r} has no value in column {column!r} (data.condition); "
                f"use soft, majority or a column every object has",
            )
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            raw = raw.strip().lower() == "true"
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise input_error(
                table.source, f"column {column!r} of object {oid!r} is not a number: {raw!r}"
            ) from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise input_error(
                table.source,
                f"column {column!r} of object {oid!r} is {v}, outside [0, 1]: a condition must "
                "be a score in [0, 1]",
            )
        values.append(v)
    return np.asarray(values, dtype=np.float64)


def split_rows(
    table: PatchTable,
    split: Any,
    *,
    split_seed: int,
    folds: int,
    fold: int | None,
    n_max: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the pool, training and validation patches (as the patch classifier).

    The pool is :func:`~mitokit.models.classifier.data.split_pool`, cut to ``n_max`` rows drawn
    with ``split_seed``; it is divided by :func:`~mitokit.models.classifier.data.fold_split`.
    """
    pool = split_pool(table, split, split_seed=split_seed)
    if n_max is not None and n_max < len(pool):
        rng = np.random.default_rng([split_seed, 1])
        pool = np.sort(rng.choice(pool, size=n_max, replace=False))
    tr, va = fold_split(
        table.label[pool], table.groups[pool], folds=folds, fold=fold, seed=split_seed
    )
    return pool, pool[tr], pool[va]


def patch_dataset(
    table: PatchTable,
    idx: np.ndarray,
    cond: np.ndarray,
    *,
    augment: bool,
    crop: int | None,
    seed: int,
    cache: bool,
) -> Any:
    """The patches ``idx`` of ``table`` with their condition, label and augmentation switch.

    The flips / rotations are drawn in the loss from torch's generator (part of the engine's
    saved state, so a resumed run repeats them); items carry the switch (``augment``). The
    dataset carries ``ids`` and ``groups`` (object id and slide group of each item).
    """
    from mitokit.data.datasets import PatchDataset

    ds = PatchDataset(
        [table.paths[i] for i in idx],
        {
            "condition": cond[idx].astype(np.float32),
            "label": table.label[idx],
            "augment": np.full(len(idx), int(augment), dtype=np.int64),
        },
        transform=PatchTransform(crop=crop, augment=False, seed=seed),
        cache=cache,
    )
    ds.ids = [table.ids[i] for i in idx]  # type: ignore[attr-defined]
    ds.groups = [str(table.groups[i]) for i in idx]  # type: ignore[attr-defined]
    return ds


__all__ = ["CONDITIONS_BUILTIN", "condition_values", "patch_dataset", "split_rows"]

"""Transitions and counterfactuals in one call each: what ``mitokit generate`` does.

:func:`run_transitions` and :func:`run_counterfactuals` load a diffusion model (and, to score
the images, a patch-classifier ensemble), generate, score and write the output folder whole or
not at all. The pieces are public: :func:`load_models`, :func:`read_cells`,
:func:`parse_source_condition`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitokit.engines.predict import Patch, find_patches, trained_setting
from mitokit.errors import input_error

PathLike = str | os.PathLike


@dataclass
class Models:
    """A diffusion model and what scores its images.

    Attributes:
        model: The conditional diffusion model.
        scorer: The patch-classifier ensemble, or None (nothing scored).
        crop: The ensemble's training centre crop, applied before scoring, or None.
    """

    model: Any
    scorer: Any = None
    crop: int | None = None


Cell = Patch
"""One input cell of a counterfactual run: its image file, id and score (NaN if none)."""


def load_models(
    model_path: PathLike, classifiers: Sequence[PathLike] = (), *, device: str = "auto"
) -> Models:
    """The diffusion model, the classifier ensemble (or None) and the ensemble's crop.

    Args:
        model_path: A saved diffusion model folder or its training run folder.
        classifiers: Patch classifier folders, or folders of seed folders (an ensemble).
        device: ``auto``, ``cpu`` or ``cuda``.
    """
    from mitokit.engines.device import resolve_device
    from mitokit.models.diffusion import load_diffusion

    dev = resolve_device(device)
    model, _ = load_diffusion(model_path, map_location=dev)
    if not classifiers:
        return Models(model)
    from mitokit.models.classifier import PATCH_CLASSIFIER, load_ensemble

    scorer, cfgs = load_ensemble(classifiers, expect_task=PATCH_CLASSIFIER, map_location=dev)
    crop = trained_setting(cfgs, "crop")  # as `mitokit predict patches` applies it
    crop = None if crop is None else int(crop)
    return Models(model, scorer, crop)


def read_cells(paths: Sequence[PathLike], *, images: PathLike | None = None) -> list[Cell]:
    """Cells from image files, folders (or class folders) of images and patch label files (ids
    and scores): :func:`~mitokit.engines.predict.find_patches`."""
    return find_patches(paths, images=images)


def parse_source_condition(text: str, cells: Sequence[Cell]) -> Any:
    """The inversion's condition: None (``null``), each cell's score (``own``) or a number.

    Raises:
        MitokitError: ``own`` with cells that have no score, or text that is none of these.
    """
    key = str(text).strip().lower()
    if key == "null":
        return None
    if key == "own":
        missing = [str(c.path) for c in cells if not math.isfinite(c.score)]
        if missing:
            raise input_error(
                missing[0],
                "has no score: --source-condition own needs the cells given by a label file",
            )
        return [c.score for c in cells]
    try:
        value = float(key)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise input_error(
            None, f"--source-condition must be null, own or a number in [0, 1], got {text!r}"
        )
    return value


def check_out(out: PathLike, overwrite: bool) -> None:
    """Refuse a non-empty output folder before any work (the atomic write checks again)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise input_error(p, "exists and is not a folder")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise input_error(p, "folder exists and is not empty (pass --overwrite to replace it)")


def _prepare(
    model_path: PathLike,
    classifiers: Sequence[PathLike],
    out: PathLike,
    overwrite: bool,
    sampling: dict[str, Any],
) -> tuple[Models, dict[str, Any]]:
    """Check ``out`` and load the models; also the scoring options (``tta`` leaves ``sampling``)."""
    check_out(out, overwrite)
    tta = sampling.pop("tta", False)
    device = sampling.get("device", "auto")
    models = load_models(model_path, classifiers, device=device)
    score_kw = {
        "batch_size": sampling.get("batch_size", 64),
        "tta": tta,
        "crop": models.crop,
        "device": device,
    }
    return models, score_kw


def _meta(model_path: PathLike, classifiers: Sequence[PathLike], sampling: dict) -> dict:
    return {
        "model": str(model_path),
        "classifier": [str(c) for c in classifiers],
        "tta": sampling.get("tta", False),
        "precision": sampling.get("precision", "fp32"),
        "compiled": sampling.get("compile_net", False),
    }


def run_transitions(
    model_path: PathLike,
    out: PathLike,
    grid: Sequence[float],
    *,
    n_sets: int = 1000,
    classifiers: Sequence[PathLike] = (),
    selection: dict | None = None,
    sets_per_grid: int = 16,
    overwrite: bool = False,
    **sampling: Any,
) -> tuple[dict, Any]:
    """Generate, score and write transition sets (one noise per set, every condition).

    Args:
        model_path: The diffusion model.
        out: Folder to create (images/, scores.csv, grids/, summary.json, curve and good sets).
        grid: The conditions, in [0, 1].
        n_sets: Number of sets.
        classifiers: The scoring ensemble (none: nothing scored).
        selection: Good-set rule: ``first_below``, ``last_above``, ``max_step``.
        sets_per_grid: Rows of each grid figure.
        overwrite: Replace a non-empty ``out``.
        **sampling: ``scheduler``, ``steps``, ``guidance``, ``seed``, ``batch_size``,
            ``device``, ``precision``, ``compile_net``, ``progress`` (as
            :func:`~mitokit.interpret.transitions.generate_transitions`) and ``tta``.

    Returns:
        (the summary written to summary.json plus ``out``, the generation result).
    """
    from mitokit.interpret.transitions import (
        generate_transitions,
        score_transitions,
        write_transitions,
    )
    from mitokit.io.atomic import atomic_dir

    models, score_kw = _prepare(model_path, classifiers, out, overwrite, sampling)
    sampling["scheduler"] = sampling.get("scheduler") or "ddpm"
    result = generate_transitions(models.model, n_sets, grid, **sampling)
    scores = None
    if models.scorer is not None:
        scores = score_transitions(result, models.scorer, **score_kw)
    meta = _meta(model_path, classifiers, {**sampling, "tta": score_kw["tta"]})
    with atomic_dir(out, overwrite=overwrite) as tmp:
        summary = write_transitions(
            tmp,
            result,
            scores=scores,
            sets_per_grid=sets_per_grid,
            meta=meta,
            **(selection or {}),
        )
    summary["out"] = str(out)
    return summary, result


def run_counterfactuals(
    model_path: PathLike,
    cells: Sequence[Cell],
    out: PathLike,
    grid: Sequence[int],
    *,
    classifiers: Sequence[PathLike] = (),
    thresholds: tuple[float, float] = (0.5, 0.9),
    overwrite: bool = False,
    **sampling: Any,
) -> tuple[dict, Any]:
    """Noise real cells to each t, denoise them towards the target condition, score, write.

    Args:
        model_path: The diffusion model.
        cells: The cells (:func:`read_cells`).
        out: Folder to create (images/, strips/, summary.json, likeness.csv when scored).
        grid: Noise levels t.
        classifiers: The scoring ensemble (none: nothing scored).
        thresholds: Likeness thresholds (resembles, convincing).
        overwrite: Replace a non-empty ``out``.
        **sampling: ``condition``, ``mode``, ``seed``, ``scheduler``, ``steps``, ``guidance``,
            ``source_condition``, ``batch_size``, ``device``, ``precision``, ``compile_net``,
            ``progress`` (as :func:`~mitokit.interpret.counterfactual.counterfactual`) and
            ``tta``.

    Returns:
        (the summary written to summary.json plus ``out``, the generation result).
    """
    import numpy as np

    from mitokit.data.arrays import read_rgb
    from mitokit.interpret.counterfactual import counterfactual, write_counterfactuals
    from mitokit.interpret.transitions import score_images
    from mitokit.io.atomic import atomic_dir

    models, score_kw = _prepare(model_path, classifiers, out, overwrite, sampling)
    arrays = [read_rgb(c.path) for c in cells]
    result = counterfactual(models.model, arrays, grid, **sampling)
    scores = None
    if models.scorer is not None:
        scores = score_images(models.scorer, result.images, **score_kw)
    meta = _meta(model_path, classifiers, {**sampling, "tta": score_kw["tta"]})
    meta["images"] = [str(c.path) for c in cells]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        summary = write_counterfactuals(
            tmp,
            result,
            [c.id for c in cells],
            scores=scores,
            thresholds=thresholds,
            labels=np.array([c.score for c in cells], dtype=np.float64),
            meta=meta,
        )
    summary["out"] = str(out)
    return summary, result


__all__ = [
    "Cell",
    "Models",
    "check_out",
    "load_models",
    "parse_source_condition",
    "read_cells",
    "run_counterfactuals",
    "run_transitions",
]

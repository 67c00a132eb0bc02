"""Point scores of a trained model on held-out generated whole slides, through the slide engine.

The localisation studies (:func:`~mitokit.experiments.detection_study.det_variants`,
:func:`~mitokit.experiments.wss_study.aggregation_ablation`) score their models on held-out
generated *tiles*; a model is used on *slides*, read by :class:`~mitokit.engines.slide
.SlidePredictor` in overlapping tiles with detections merged across tile borders, where a
mitosis cut by a tile's edge is seen whole in its neighbour. :func:`write_heldout_slides`
writes slides of seeds no study trains on (the generator's defaults: 1.5 % of tumour cells
mitotic, denser in nests), with their labels; :func:`slide_point_scores` runs a saved model over
them, exactly as ``mitokit detect`` does, and matches the points one-to-one within 7.5 um to each
slide's consensus mitoses (``consensus.json``: the majority of three simulated pathologists).

The consensus is a noisy view of the generator's truth (each rater sees a cell's latent
mitosis score ``m`` with noise, and some hyperchromatic or apoptotic cells have a high ``m``
that their appearance barely shows), so the scores come with two references: the F1 against
the latent truth (cells with ``m > 0.5``) and the *ceiling*, the F1 against the consensus of
an observer who knows every ``m`` exactly. On three 4,000 px held-out slides (seed 0, 199
consensus mitoses) that ceiling is 0.91: no model of the images can be expected to do
better against these labels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError

#: Seeds of held-out slides start here (far from the studies' tile seeds and their offset).
SLIDE_SEED = 7_000_001

#: Matching radius of the point F1 (MIDOG), micrometres.
RADIUS_UM = 7.5


def write_heldout_slides(
    root: str | os.PathLike,
    *,
    n: int,
    size: int = 4000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """``n`` generated square slides of side ``size`` with their labels, ``root/slide_KK/``.

    Slide ``k`` has seed ``SLIDE_SEED + 1000 * seed + k``: the same ``seed`` gives the same
    slides, and none shares a seed with the studies' training or test tiles.

    Returns:
        The ``slide.tiff`` paths, in order (none for ``n`` 0: nothing is written).
    """
    from mitokit.data.synthetic.export import write_slide_labels
    from mitokit.data.synthetic.generate import write_synthetic_slide

    if int(n) < 0:
        raise MitokitError(f"the number of held-out slides must be >= 0, got {n}")
    if int(n) == 0:
        return []
    if int(size) < 256:
        raise MitokitError(f"held-out slides must be at least 256 px, got {size}")
    paths = []
    for k in range(int(n)):
        folder = Path(root) / f"slide_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        slide_seed = SLIDE_SEED + 1000 * int(seed) + k
        if progress is not None:
            progress(f"held-out slide {k + 1}/{n}: {size} x {size} px, seed {slide_seed}")
        cells = write_synthetic_slide(
            folder / "slide.tiff", size=(int(size), int(size)), seed=slide_seed
        )
        write_slide_labels(
            folder, cells, slide_name="slide.tiff", size=(int(size), int(size)), seed=slide_seed
        )
        paths.append(folder / "slide.tiff")
    return paths


def slide_truth(slide: str | os.PathLike) -> np.ndarray:
    """``(M, 2)`` consensus mitoses of a generated slide (its folder's ``consensus.json``)."""
    from mitokit.io.annotations import read_annotations
    from mitokit.models.detector import truth_centres

    path = Path(slide)
    consensus = truth_centres(read_annotations(path.parent / "consensus.json"), min_agreement=0)
    return np.asarray(consensus.get(path.name, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)


def slide_cells(slide: str | os.PathLike) -> np.ndarray:
    """``(N, 3)`` ``x, y, m`` of every generated cell of a slide (its folder's
    ``manifest.json``): ``m`` is the latent mitosis score the simulated raters perceive."""
    import json

    path = Path(slide)
    objects = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))["objects"]
    rows = [(o["x"], o["y"], o["m"]) for o in objects if str(o["image"]) == path.name]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def label_ceiling(
    cells: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], *, radius_px: float
) -> dict[str, float]:
    """How well an observer who knows every cell's latent score ``m`` matches the consensus.

    Each cell is a point scored by its ``m``, kept where ``m >= 0.5``, matched one-to-one
    within ``radius_px`` to the consensus mitoses: what the rater noise leaves to any model of
    the images.

    Args:
        cells: Image key -> ``(N, 3)`` ``x, y, m`` (:func:`slide_cells`).
        truth: Image key -> ``(M, 2)`` consensus mitoses (:func:`slide_truth`).
        radius_px: Matching radius in pixels.

    Returns:
        ``precision``, ``recall``, ``f1`` at 0.5 and ``best_f1`` over thresholds of ``m``.
    """
    from mitokit.models.detector import point_scores

    s = point_scores(cells, truth, radius_px=radius_px, threshold=0.5)
    return {k: float(s[k]) for k in ("precision", "recall", "f1", "best_f1")}


def slide_point_scores(
    model_dir: str | os.PathLike,
    slides: Sequence[str | os.PathLike],
    *,
    threshold: float | None = None,
    floor: float | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    backend: str = "torch",
) -> dict[str, Any]:
    """Point precision, recall and F1 of a saved model over generated slides (pooled).

    Args:
        model_dir: A saved model any slide predictor reads (weak localiser, detector).
        slides: ``slide.tiff`` paths of :func:`write_heldout_slides` (labels beside them).
        threshold: The operating threshold; None: the model's own (the predictor's
            ``threshold``), else 0.5.
        floor: Threshold of the slide pass (at most ``threshold``), so that ``best_f1`` can
            look below the operating point; None: the operating threshold. A weak localiser
            thresholds its map there (:class:`~mitokit.engines.slide.SlidePredictor`), so its
            points at higher thresholds are the floor's points filtered by score (their peak),
            not a new thresholding of the map.
        device: ``cpu`` or ``cuda``.
        batch_size: Tiles per model call.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (:func:`mitokit.models.backend.use_backend`).

    Returns:
        ``threshold``, ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn`` at it,
        ``best_f1`` / ``best_threshold`` over the score thresholds of the points found (an
        oracle), ``n_slides``, ``n_truth``, ``slide_tiles``, ``slide_seconds``,
        ``per_slide`` (``tp``, ``fp``, ``fn``, ``f1`` of each); ``latent``: ``precision``,
        ``recall``, ``f1``, ``best_f1`` against the cells whose latent score ``m > 0.5`` (the
        generator's truth, which the consensus sees through rater noise); and ``ceiling``: the
        score against the consensus of an observer who knows every cell's ``m`` exactly
        (:func:`label_ceiling`: precision, recall, ``f1`` at 0.5, ``best_f1`` over
        thresholds): the most any model of the images can expect against these labels.
    """
    from mitokit.engines.slide import SlidePredictor
    from mitokit.metrics.detection import radius_to_px
    from mitokit.models.detector import point_scores
    from mitokit.models.predictors import load_predictor

    predictor = load_predictor(model_dir, device=device, backend=backend)
    own = getattr(predictor, "threshold", None)
    op = float(threshold if threshold is not None else own if own is not None else 0.5)
    low = op if floor is None else min(float(floor), op)
    engine = SlidePredictor(predictor, threshold=low, batch_size=batch_size, progress=False)
    read = _read_slides(engine, slides)
    radius = radius_to_px(radius_um=RADIUS_UM, mpp=read["mpp"])
    pred, truth, cells = read["pred"], read["truth"], read["cells"]
    pooled = point_scores(pred, truth, radius_px=radius, threshold=op)
    latent = point_scores(
        pred,
        {k: c[c[:, 2] > 0.5, :2] for k, c in cells.items()},
        radius_px=radius,
        threshold=op,
    )
    return {
        "threshold": op,
        "slide_pass_threshold": low,
        **{
            k: pooled[k]
            for k in ("precision", "recall", "f1", "tp", "fp", "fn", "best_f1", "best_threshold")
        },
        "latent": {k: latent[k] for k in ("precision", "recall", "f1", "best_f1", "n_truth")},
        "ceiling": label_ceiling(cells, truth, radius_px=radius),
        "n_slides": len(pred),
        "n_truth": int(sum(len(t) for t in truth.values())),
        "slide_tiles": int(read["tiles"]),
        "slide_seconds": round(read["seconds"], 1),
        "per_slide": _per_slide(pred, truth, radius_px=radius, threshold=op),
    }


def _read_slides(engine: Any, slides: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """Run the slide engine over each slide; its points, truths, cells, tiles, time and mpp.

    Slides are keyed by their folder's name (``slide_KK``).
    """
    pred: dict[str, np.ndarray] = {}
    truth: dict[str, np.ndarray] = {}
    cells: dict[str, np.ndarray] = {}
    tiles, seconds, mpp = 0, 0.0, None
    for slide in slides:
        path = Path(slide)
        res = engine.predict_slide(path)
        key = path.parent.name
        pred[key], truth[key], cells[key] = res.points, slide_truth(path), slide_cells(path)
        tiles += len(res.tile_scores)
        seconds += res.seconds
        mpp = res.mpp
    if mpp is None:
        raise MitokitError("no held-out slide to score")
    return {
        "pred": pred,
        "truth": truth,
        "cells": cells,
        "tiles": tiles,
        "seconds": seconds,
        "mpp": mpp,
    }


def _per_slide(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    *,
    radius_px: float,
    threshold: float,
) -> list[dict[str, Any]]:
    """``tp``, ``fp``, ``fn`` and ``f1`` of each slide on its own."""
    from mitokit.models.detector import point_scores

    rows = []
    for key in pred:
        one = point_scores(
            {key: pred[key]}, {key: truth[key]}, radius_px=radius_px, threshold=threshold
        )
        rows.append({"slide": key, **{k: one[k] for k in ("tp", "fp", "fn", "f1")}})
    return rows


def slide_columns(scores: Mapping[str, Any] | None) -> dict[str, Any]:
    """A study table's columns of :func:`slide_point_scores` (none without slides)."""
    if scores is None:
        return {}
    return {
        "slide_precision": scores["precision"],
        "slide_recall": scores["recall"],
        "slide_f1": scores["f1"],
        "slide_best_f1": scores["best_f1"],
        "slide_truth": scores["n_truth"],
        "slide_latent_f1": scores["latent"]["f1"],
        "slide_ceiling_f1": scores["ceiling"]["best_f1"],
    }


__all__ = [
    "RADIUS_UM",
    "SLIDE_SEED",
    "label_ceiling",
    "slide_cells",
    "slide_columns",
    "slide_point_scores",
    "slide_truth",
    "write_heldout_slides",
]

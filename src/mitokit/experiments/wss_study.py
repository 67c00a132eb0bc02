"""The second paper's aggregation ablation, re-run on generated tiles whose truth is known.

:func:`aggregation_ablation`: a weak localiser (:mod:`mitokit.models.wss`) is trained from
image-level labels only (``image_labels.csv``: does the tile hold a consensus mitosis?) once per
aggregation (max, mean, embedding mean / max, attention), and each is scored on held-out
generated tiles: image AUC and balanced accuracy, and point precision / recall / F1 at 7.5 um
(30 px at 0.25 um/px) against the consensus mitosis centroids (``centroids.csv``), which no
model sees during training.

Two references put the point figures in context (neither is a method of the paper):

- ``chance_f1``: the F1 of as many points as the model predicted on each test tile, placed
  uniformly at random (mean of 20 seeded draws);
- ``oracle_f1``: the best pooled F1 over the map thresholds 0.05 ... 0.95 and the model's own,
  chosen on the test tiles themselves: an upper bound of what a threshold rule could reach with
  that map.

Like :mod:`mitokit.experiments.synthetic_studies` (whose helpers it uses), the study writes its
data, runs, ``result.json`` and ``table.csv`` under one folder and returns a JSON-friendly dict.
Generated tiles are small (128 px, 32 um at 0.25 um/px) and carry more mitoses than the generator's
default (``mitotic_fraction`` 0.08 instead of 0.015), so that about 40 % of the tiles are
positive and a CPU run finishes in minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.experiments.heldout_slides import (
    slide_columns,
    slide_point_scores,
    write_heldout_slides,
)

#: Settings of :func:`aggregation_ablation` for ``--quick``.
WSS_QUICK: dict[str, Any] = {"n_train_tiles": 48, "n_test_tiles": 32, "epochs": 4}

#: Random draws behind ``chance_f1``.
CHANCE_DRAWS = 20

Progress = Callable[[str], None] | None


def chance_point_scores(
    n_pred: Sequence[int],
    truths: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    *,
    radius_px: float,
    seed: int = 0,
    draws: int = CHANCE_DRAWS,
) -> dict[str, float]:
    """Mean pooled precision, recall and F1 of ``n_pred[i]`` uniformly random points per image.

    Args:
        n_pred: Points per image.
        truths: ``(n, 2)`` truth points per image.
        sizes: ``(width, height)`` per image.
        radius_px: Matching radius in pixels.
        seed: Seed of the draws.
        draws: Number of random draws averaged.
    """
    from mitokit.metrics.detection import precision_recall_f1
    from mitokit.models.wss import point_counts

    rng = np.random.default_rng(seed)
    totals = np.zeros(3)
    for _ in range(int(draws)):
        tp = fp = fn = 0
        for k, truth, (w, h) in zip(n_pred, truths, sizes, strict=True):
            pts = rng.uniform((0.0, 0.0), (float(w), float(h)), size=(int(k), 2))
            a, b, c = point_counts(pts, truth, radius_px=radius_px)
            tp, fp, fn = tp + a, fp + b, fn + c
        totals += precision_recall_f1(tp, fp, fn)
    p, r, f = totals / max(int(draws), 1)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def peak_offsets(
    maps: Sequence[np.ndarray], truths: Sequence[np.ndarray], *, margin_px: float
) -> dict[str, Any]:
    """Where each map peaks relative to its image's only mitosis.

    A diagnosis of localisation, not a score: over the images with exactly one truth point at
    least ``margin_px`` from every border, the displacement ``(dx, dy)`` from that point to the
    map's maximum (pixel centres at ``index + 0.5``). A weak localiser learns where in its
    receptive field to answer; nothing in an image-level loss asks it to answer on the mitosis,
    so a consistent displacement shows up here.

    Returns:
        ``{"n", "median_dx", "median_dy", "median_distance"}`` (None values when ``n`` is 0).
    """
    shifts = []
    for heat, truth in zip(maps, truths, strict=True):
        heat = np.asarray(heat)
        t = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
        far = (margin_px <= t) & (t <= np.array(heat.shape[::-1]) - margin_px)
        if len(t) != 1 or not far.all():
            continue
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        shifts.append((col + 0.5 - t[0, 0], row + 0.5 - t[0, 1]))
    if not shifts:
        return {"n": 0, "median_dx": None, "median_dy": None, "median_distance": None}
    d = np.asarray(shifts)
    return {
        "n": len(d),
        "median_dx": float(np.median(d[:, 0])),
        "median_dy": float(np.median(d[:, 1])),
        "median_distance": float(np.median(np.hypot(d[:, 0], d[:, 1]))),
    }


def _predict(model_dir: Path, paths: Sequence[Path], *, device: str, batch_size: int = 32):
    """Image probabilities, points and heatmaps of the test images (the slide predictor)."""
    import torch

    from mitokit.data.arrays import read_rgb
    from mitokit.data.datasets import to_tensor
    from mitokit.models.predictors import load_predictor

    predictor = load_predictor(model_dir, device=device)
    probs, points, maps = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = [to_tensor(read_rgb(p)) for p in paths[start : start + batch_size]]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(chunk):
            groups.setdefault(tuple(t.shape), []).append(i)
        preds: list[Any] = [None] * len(chunk)
        for idx in groups.values():
            batch = torch.stack([chunk[i] for i in idx]).to(predictor.device)
            for i, pred in zip(idx, predictor.predict(batch), strict=True):
                preds[i] = pred
        for pred in preds:
            probs.append(pred.tile_score)
            points.append(pred.points)
            maps.append(pred.heatmap)
    offset = [float(v) for v in predictor.model.offset]
    return np.asarray(probs, dtype=np.float64), points, maps, float(predictor.threshold), offset


def aggregation_ablation(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    scale: float = 1.0,
    epochs: int = 8,
    aggregations: Sequence[str] | None = None,
    n_train_tiles: int = 96,
    n_test_tiles: int = 64,
    tile_size: int = 128,
    mitotic_fraction: float = 0.08,
    batch_size: int = 16,
    lr: float = 1e-3,
    val_fraction: float = 0.25,
    threshold: str = "roc",
    offset: str = "rot180",
    tta: str = "none",
    points: str = "components",
    peak_distance_um: float = 4.0,
    slides: int = 0,
    slide_size: int = 4000,
    attention: str = "gated",
    device: str = "auto",
    threads: int | None = None,
    keep_models: bool = False,
    progress: Progress = None,
) -> dict[str, Any]:
    """Train one weak localiser per aggregation on generated tiles; score them on held-out ones.

    Training tiles (seed ``seed``) and held-out test tiles (seed ``seed +``
    :data:`~mitokit.experiments.synthetic_studies.HELDOUT_SEED_OFFSET`) are written with every
    label kind under ``out/data/train`` and ``out/data/test``. Each model is trained through the
    engine with the same seed and split (``val_fraction`` of the training tiles for model
    selection by val loss and for the threshold, ``threshold`` rule), random initial weights,
    Adam and whole tiles as inputs; the kept model then reads the test tiles through its slide
    predictor (:class:`~mitokit.models.wss.WeakLocaliserPredictor`).

    Args:
        out: Folder for data, runs, ``result.json`` and ``table.csv``; created, and must be
            empty if it exists.
        seed: Seed of the data, the model initialisation and the augmentation.
        scale: Multiplies the numbers of training and test tiles.
        epochs: Training epochs of every model.
        aggregations: Which to train (default: all of :data:`mitokit.models.wss.AGGREGATIONS`).
        n_train_tiles: Training tiles (before ``scale``), validation tiles included.
        n_test_tiles: Held-out test tiles (before ``scale``).
        tile_size: Side of the generated tiles in pixels (at 0.25 um/px).
        mitotic_fraction: Share of tumour cells that are mitotic in the generated scenes.
        batch_size: Tiles per step.
        lr: Adam learning rate.
        val_fraction: Share of the training tiles held out for validation.
        threshold: The weak localiser's threshold rule (``roc``, ``max_f1`` or ``fixed``).
        offset: Its map-offset rule (``rot180``: estimated on the validation tiles from image
            labels only; ``none``).
        tta: Its test-time views (``none``, ``rot180``, ``dihedral``), for the threshold choice
            and the test predictions.
        points: How maps become points (``components`` or ``peaks``, at least
            ``peak_distance_um`` apart): :func:`mitokit.models.wss.map_to_points`.
        peak_distance_um: Smallest distance between two peaks (``peaks``).
        slides: Also score every model on this many held-out generated slides of side
            ``slide_size`` through the slide engine, as ``mitokit detect`` reads slides
            (:mod:`mitokit.experiments.heldout_slides`), at its own threshold; 0: none.
        slide_size: Side of the held-out slides in pixels.
        attention: ``gated`` or ``plain`` attention (the ``attention`` aggregation).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: PyTorch CPU threads during the study (None: unchanged).
        keep_models: Keep each run's ``best/`` model; otherwise only logs and configs stay.
        progress: Called with one line per step.

    Returns:
        ``{"study", "question", "settings", "data", "methods", "table", "seconds"}``;
        ``methods[aggregation]`` holds ``image_auc``, ``image_balanced_accuracy``,
        ``threshold``, ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``,
        ``chance_f1``, ``oracle_f1``, ``oracle_threshold``, ``map_offset`` (the model's
        estimated offset, undone before points are taken), ``peak_offset`` (what remains:
        :func:`peak_offsets`), training facts and, with ``slides``, ``slides``:
        :func:`~mitokit.experiments.heldout_slides.slide_point_scores` (its ``best_f1`` looks
        only above the model's threshold, where the map was thresholded).

    Raises:
        MitokitError: Bad settings, or a non-empty ``out``.
    """
    from mitokit.data.synthetic.scene import SceneParams
    from mitokit.experiments.synthetic_studies import (
        HELDOUT_SEED_OFFSET,
        _auc_or_none,
        _device,
        _engine_settings,
        _positive_int,
        _say,
        _scaled,
        _study_dir,
        _train_run,
        _write_csv,
        _write_json,
        _write_split,
        prune_run,
        torch_threads,
    )
    from mitokit.metrics.classification import balanced_accuracy
    from mitokit.metrics.detection import radius_to_px
    from mitokit.models.wss import (
        AGGREGATIONS,
        F1_GRID,
        IMAGE_LABELS,
        OFFSET_RULES,
        POINT_RULES,
        THRESHOLD_RULES,
        TRUTH_POINTS,
        TTA_VIEWS,
        WEAK_LOCALISER,
        pooled_point_scores,
        read_image_labels,
        read_weak_source,
    )

    t_start = time.perf_counter()
    aggs = list(AGGREGATIONS if aggregations is None else aggregations)
    unknown = [a for a in aggs if a not in AGGREGATIONS]
    if not aggs or unknown or len(set(aggs)) != len(aggs):
        raise MitokitError(
            f"aggregations must be distinct names among {', '.join(AGGREGATIONS)}, got {aggs!r}"
        )
    if threshold not in THRESHOLD_RULES:
        raise MitokitError(f"threshold must be one of {', '.join(THRESHOLD_RULES)}")
    if offset not in OFFSET_RULES:
        raise MitokitError(f"offset must be one of {', '.join(OFFSET_RULES)}")
    if tta not in TTA_VIEWS:
        raise MitokitError(f"tta must be one of {', '.join(TTA_VIEWS)}")
    if points not in POINT_RULES:
        raise MitokitError(f"points must be one of {', '.join(POINT_RULES)}")
    if not (isinstance(peak_distance_um, int | float) and peak_distance_um > 0):
        raise MitokitError(f"peak_distance_um must be positive, got {peak_distance_um!r}")
    n_train = _scaled(n_train_tiles, scale, "n_train_tiles", minimum=4)
    n_test = _scaled(n_test_tiles, scale, "n_test_tiles", minimum=2)
    epochs = _positive_int(epochs, "epochs")
    n_slides = _positive_int(slides, "slides") if slides else 0
    size = _positive_int(tile_size, "tile_size")
    if size < 64:
        raise MitokitError(f"tile_size must be at least 64, got {size}")
    try:
        scene = SceneParams(mitotic_fraction=float(mitotic_fraction))
    except MitokitError as exc:
        raise MitokitError(f"mitotic_fraction: {exc}") from None
    dev = _device(device)
    mpp = scene.mpp
    radius = radius_to_px(radius_um=7.5, mpp=mpp)
    spacing = float(peak_distance_um) / mpp if points == "peaks" else None
    test_seed = int(seed) + HELDOUT_SEED_OFFSET
    settings = {
        "seed": int(seed),
        "test_seed": test_seed,
        "n_train_tiles": n_train,
        "n_test_tiles": n_test,
        "tile_size": size,
        "mpp": mpp,
        "mitotic_fraction": float(mitotic_fraction),
        "aggregations": aggs,
        "attention": attention,
        "epochs": epochs,
        "batch_size": int(batch_size),
        "optimizer": f"adam lr {lr:g}, weight decay 1e-4, random init",
        "validation": f"{val_fraction:g} of the training tiles, best epoch by val loss",
        "threshold": threshold,
        "offset": offset,
        "tta": tta,
        "points": points,
        "peak_distance_um": float(peak_distance_um) if points == "peaks" else None,
        "slides": n_slides,
        "slide_size": int(slide_size) if n_slides else None,
        "labels": "image-level only (image_labels.csv: a consensus mitosis in the tile)",
        "truth": "consensus mitosis centroids of the test tiles (centroids.csv)",
        "radius_px": radius,
        "augment": "HED jitter, flips, 90-degree rotations",
        "device": dev,
        "threads": threads,
    }

    with _study_dir(out) as folder, torch_threads(threads):
        _say(progress, f"wss-aggregations: generating {n_train} training and {n_test} test tiles")
        train_dir, test_dir, _, _ = _write_split(
            folder,
            n_train=n_train,
            n_test=n_test,
            seed=int(seed),
            test_seed=test_seed,
            size=size,
            scene=scene,
        )
        test = read_weak_source(test_dir)
        names = test.image_ids
        y = np.asarray([test.labels[i] for i in names], dtype=np.int64)
        truths = [test.points[i] for i in names]
        sizes = [test.sizes[i] for i in names]
        train_labels = read_image_labels(train_dir / IMAGE_LABELS)
        slide_paths = write_heldout_slides(
            folder / "data" / "slides",
            n=n_slides,
            size=int(slide_size),
            seed=int(seed),
            progress=lambda m: _say(progress, f"wss-aggregations: {m}"),
        )

        methods: dict[str, dict[str, Any]] = {}
        for agg in aggs:
            _say(progress, f"wss-aggregations: training the {agg} localiser")
            cfg = {
                "task": WEAK_LOCALISER,
                "model": {
                    "aggregation": agg,
                    "attention": attention,
                    "threshold": threshold,
                    "offset": offset,
                    "tta": tta,
                    "points": points,
                    "peak_distance_um": float(peak_distance_um),
                },
                "data": {
                    "labels": str(train_dir),
                    "mpp": mpp,
                    "val_fraction": float(val_fraction),
                    "split_seed": int(seed),
                },
                **_engine_settings(
                    epochs=epochs, batch_size=int(batch_size), seed=int(seed), device=dev, lr=lr
                ),
            }
            result, seconds = _train_run(cfg, folder / "runs" / agg)
            t0 = time.perf_counter()
            probs, found, maps, thr, map_offset = _predict(
                result.model_dir, [test.paths[i] for i in names], device=dev
            )
            predict_seconds = time.perf_counter() - t0
            on_slides = None
            if slide_paths:
                _say(progress, f"wss-aggregations: {agg} over {len(slide_paths)} held-out slides")
                on_slides = slide_point_scores(result.model_dir, slide_paths, device=dev)
            prune_run(result.out_dir, keep_best=keep_models)
            scores = pooled_point_scores(
                maps, truths, threshold=thr, radius_px=radius, min_distance_px=spacing
            )
            grid = sorted({*F1_GRID, thr})
            oracle = [
                pooled_point_scores(
                    maps, truths, threshold=t, radius_px=radius, min_distance_px=spacing
                )["f1"]
                for t in grid
            ]
            chance = chance_point_scores(
                [len(p) for p in found], truths, sizes, radius_px=radius, seed=int(seed)
            )
            residual = peak_offsets(maps, truths, margin_px=size / 8)
            methods[agg] = {
                "image_auc": _auc_or_none(y, probs),
                "image_balanced_accuracy": balanced_accuracy(y, (probs >= thr).astype(float)),
                "threshold": thr,
                "precision": scores["precision"],
                "recall": scores["recall"],
                "f1": scores["f1"],
                "tp": scores["tp"],
                "fp": scores["fp"],
                "fn": scores["fn"],
                "n_points": int(sum(len(p) for p in found)),
                "chance_f1": chance["f1"],
                "oracle_f1": float(max(oracle)),
                "oracle_threshold": float(grid[int(np.argmax(oracle))]),
                "map_offset": {"dx": map_offset[0], "dy": map_offset[1]},
                "peak_offset": residual,
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "epochs_run": result.epochs_run,
                "train_seconds": round(seconds, 1),
                "predict_seconds": round(predict_seconds, 2),
                "model": os.path.relpath(result.model_dir, folder) if keep_models else None,
                "slides": on_slides,
            }
            m = methods[agg]
            _say(
                progress,
                f"wss-aggregations: {agg}: image AUC {_fmt(m['image_auc'])}, point P/R/F1 "
                f"{m['precision']:.3f}/{m['recall']:.3f}/{m['f1']:.3f} at {thr:.3f} "
                f"(chance F1 {m['chance_f1']:.3f}; {seconds:.0f} s)"
                + (f"; slides F1 {on_slides['f1']:.3f}" if on_slides else ""),
            )

        table = [
            {
                "aggregation": agg,
                **{
                    k: m[k]
                    for k in (
                        "image_auc",
                        "image_balanced_accuracy",
                        "threshold",
                        "precision",
                        "recall",
                        "f1",
                        "tp",
                        "fp",
                        "fn",
                        "chance_f1",
                        "oracle_f1",
                        "train_seconds",
                    )
                },
                **slide_columns(m["slides"]),
            }
            for agg, m in methods.items()
        ]
        _write_csv(folder / "table.csv", table)
        result_dict = {
            "study": "wss_aggregations",
            "question": (
                "How does the aggregation of the instance map (max, mean, embedding mean / max, "
                "attention) change image classification and point localisation of a weak "
                "localiser trained on image-level labels only?"
            ),
            "settings": settings,
            "data": {
                "n_train_tiles": len(train_labels),
                "n_train_positive": int(sum(train_labels.values())),
                "n_test_tiles": int(len(y)),
                "n_test_positive": int(y.sum()),
                "n_test_mitoses": int(sum(len(t) for t in truths)),
                "truth_file": f"data/test/{TRUTH_POINTS}",
            },
            "methods": methods,
            "table": table,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        _write_json(folder / "result.json", result_dict)
        return result_dict


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


__all__ = [
    "CHANCE_DRAWS",
    "WSS_QUICK",
    "aggregation_ablation",
    "chance_point_scores",
    "peak_offsets",
]

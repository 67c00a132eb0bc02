"""Point localisation on generated tiles: truths, predictions and chance scores of the
localisation studies (:mod:`~mitokit.experiments.detection_study`,
:mod:`~mitokit.experiments.wss_study`) and the demo (:mod:`mitokit.demo.localisation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.experiments.harness import TileSplit

#: Random draws behind a weak localiser's ``chance_f1``.
CHANCE_DRAWS = 20


def val_images(train_dir: Path, *, val_fraction: float, seed: int) -> list[str] | None:
    """A seeded share of the training images, drawn among those with a consensus mitosis.

    Validation chooses each variant's score threshold, which needs true mitoses; None (the
    engine's plain split by ``val_fraction``) when no image has one.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.models.detector import truth_centres

    names = sorted(p.name for p in (train_dir / "images").glob("*.png"))
    counts = truth_centres(read_annotations(train_dir / "consensus.json"), min_agreement=0)
    candidates = [n for n in names if len(counts.get(n, ())) > 0]
    if not candidates or val_fraction <= 0:
        return None
    k = min(len(names) - 1, len(candidates), max(1, round(val_fraction * len(names))))
    return sorted(np.random.default_rng([seed, 5]).permutation(candidates)[:k].tolist())


def val_threshold(row: Mapping[str, Any]) -> float:
    """A detector's operating threshold: the score threshold of the best validation F1 in its
    log ``row`` (an epoch), 0.5 where the epoch has none."""
    threshold = row.get("val_best_threshold")
    if threshold is None or not np.isfinite(threshold):
        return 0.5
    return float(threshold)


def predict_detector(model_dir: Path, split: TileSplit, *, device: str) -> dict[str, np.ndarray]:
    """``(N, 3)`` box centres with scores of the detector on each whole test image."""
    from mitokit.data.arrays import read_rgb
    from mitokit.data.datasets import to_tensor
    from mitokit.models.detector import DETECTOR, detect
    from mitokit.models.io import load_model

    model, _ = load_model(model_dir, expect_task=DETECTOR, map_location=device, fold_bn=True)
    images = {name: read_rgb(split.test_dir / "images" / name) for name in split.test_names}
    return {
        name: detect(model, [to_tensor(image)], device=device)[0] for name, image in images.items()
    }


def detector_scores(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    latent: Mapping[str, np.ndarray],
    *,
    radius_px: float,
    threshold: float,
) -> dict[str, Any]:
    from mitokit.models.detector import point_scores

    main = point_scores(pred, truth, radius_px=radius_px, threshold=threshold)
    at_half = point_scores(pred, truth, radius_px=radius_px, threshold=0.5)
    second = point_scores(pred, latent, radius_px=radius_px, threshold=threshold)
    keys = ("precision", "recall", "f1", "best_f1", "best_threshold", "tp", "fp", "fn")
    return {
        "threshold": threshold,
        **{k: main[k] for k in keys},
        "f1_at_0.5": at_half["f1"],
        "n_pred": main["n_pred"],
        "latent": {k: second[k] for k in keys},
    }


def latent_centres(objects: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict:
    """Image -> ``(M, 2)`` centres of the generated cells with latent ``m > 0.5``."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for o in objects:
        if float(o["m"]) > 0.5 and str(o["image"]) in out:
            out[str(o["image"])].append((float(o["x"]), float(o["y"])))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in out.items()}


def chance_f1(truth: Mapping[str, np.ndarray], *, size: int, radius_px: float, seed: int) -> float:
    """F1 of as many uniform random points per image as true points (mean of 20 draws)."""
    from mitokit.models.detector import point_scores

    rng = np.random.default_rng([seed, 7])
    f1s = []
    for _ in range(20):
        pred = {
            k: np.column_stack([rng.uniform(0, size, (len(v), 2)), np.ones(len(v))])
            for k, v in truth.items()
        }
        f1s.append(point_scores(pred, truth, radius_px=radius_px, threshold=0.5)["f1"])
    return float(np.mean(f1s))


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


def predict_localiser(model_dir: Path, paths: Sequence[Path], *, device: str, batch_size: int = 32):
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


__all__ = [
    "CHANCE_DRAWS",
    "chance_f1",
    "chance_point_scores",
    "detector_scores",
    "latent_centres",
    "peak_offsets",
    "predict_detector",
    "predict_localiser",
    "val_images",
    "val_threshold",
]

"""From a detector's boxes to scored points: centre suppression, box centres, point scores.

:func:`detect` runs a detector on tiles and returns box centres with scores (after
:func:`suppress_centres` when the model asks for it); :func:`point_scores` matches such points
to true points (precision, recall, F1 and the best F1 over score thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mitokit.io.annotations import AnnotationSet
from mitokit.models._common import evaluating


def box_centres(result: Mapping[str, torch.Tensor]) -> np.ndarray:
    """``(N, 3)`` float64 ``x, y, score`` of a detector's per-image result (box centres)."""
    boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = result["scores"].detach().float().cpu().numpy().reshape(-1)
    centres = np.column_stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, scores]
    )
    return centres.astype(np.float64).reshape(-1, 3)


def detect(
    model: nn.Module,
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Box centres with scores of each image: ``(N, 3)`` arrays of ``x, y, score``.

    Args:
        model: A detector (run in eval mode without gradients; its mode is restored).
        images: ``3xHxW`` float tensors in [0, 1] (a ``Bx3xHxW`` batch is split).
        device: Where to run (default: where the model is).
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with evaluating(model):
        outs = model([im.to(dev) for im in images])
    if getattr(getattr(model, "module", model), "centre_suppression", False):  # DDP: .module
        outs = [suppress_centres(o) for o in outs]
    return [box_centres(o) for o in outs]


def suppress_centres(result: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detector's per-image result without detections centred on a better one.

    Greedy, highest score first: a detection is dropped when its box centre lies inside a kept
    box or a kept box's centre lies inside its box (edges inclusive). Boxes nested on one
    figure, which the IoU-based NMS keeps when their sizes differ, then give one point.

    Args:
        result: ``boxes`` (``[N, 4]`` ``x1, y1, x2, y2``), ``scores`` and any other per-box
            entries (``labels``), as torchvision's detectors return them.

    Returns:
        The same entries, kept boxes only, highest score first.
    """
    boxes, scores = result["boxes"], result["scores"]
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].detach().float().cpu()
    centres = (b[:, :2] + b[:, 2:]) / 2
    # inside[i, j]: the centre of i lies in the box of j
    inside = (
        (centres[:, None, 0] >= b[None, :, 0])
        & (centres[:, None, 0] <= b[None, :, 2])
        & (centres[:, None, 1] >= b[None, :, 1])
        & (centres[:, None, 1] <= b[None, :, 3])
    )
    clash = (inside | inside.T).numpy()
    dropped = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):  # one vector OR per kept box, not one lookup per pair
        if not dropped[i]:
            keep.append(i)
            dropped |= clash[i]
    kept = order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]
    return {k: v[kept] for k, v in result.items()}


def point_scores(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    *,
    radius_px: float,
    threshold: float,
) -> dict[str, float]:
    """Point precision, recall and F1 of scored points against true points, image by image.

    Args:
        pred: Image key -> ``(N, 3)`` ``x, y, score``.
        truth: Image key -> ``(M, 2)`` ``x, y``.
        radius_px: Matching radius in pixels (one-to-one, optimal; see
            :func:`~mitokit.metrics.detection.match_points`).
        threshold: Score threshold of ``precision``, ``recall`` and ``f1``.

    Returns:
        ``precision``, ``recall``, ``f1`` (pooled over images), ``tp``, ``fp``, ``fn``,
        ``best_f1`` and ``best_threshold`` over every score threshold (the F1 at
        ``threshold`` and NaN when there is no prediction), ``n_truth`` and ``n_pred``.
    """
    from mitokit.io.annotations import Annotation, ImageInfo
    from mitokit.metrics.detection import default_thresholds, evaluate_points, sweep_thresholds

    keys = sorted(set(pred) | set(truth))
    p_anns, t_anns = [], []
    for key in keys:
        for i, (x, y, s) in enumerate(np.asarray(pred.get(key, np.zeros((0, 3)))).reshape(-1, 3)):
            p_anns.append(
                Annotation(f"{key}/p{i}", key, point=(float(x), float(y)), score=float(s))
            )
        for j, (x, y) in enumerate(np.asarray(truth.get(key, np.zeros((0, 2)))).reshape(-1, 2)):
            t_anns.append(Annotation(f"{key}/t{j}", key, point=(float(x), float(y))))
    images = {k: ImageInfo(k) for k in keys}
    p_set, t_set = AnnotationSet(p_anns, dict(images)), AnnotationSet(t_anns, dict(images))
    at = evaluate_points(p_set, t_set, radius_px=radius_px, threshold=threshold)
    if p_anns:  # the observed scores, and ``threshold`` (which may keep none)
        grid = np.append(default_thresholds([a.score for a in p_anns]), float(threshold))
        sweep = sweep_thresholds(p_set, t_set, radius_px=radius_px, thresholds=grid)
        best_f1, best_t = sweep.best_f1, sweep.best_threshold
    else:
        best_f1, best_t = at.f1, math.nan
    return {
        "precision": at.precision,
        "recall": at.recall,
        "f1": at.f1,
        "tp": float(at.tp),
        "fp": float(at.fp),
        "fn": float(at.fn),
        "best_f1": float(best_f1),
        "best_threshold": float(best_t),
        "n_truth": float(len(t_anns)),
        "n_pred": float(len(p_anns)),
    }

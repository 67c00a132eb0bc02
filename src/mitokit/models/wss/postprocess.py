"""From the weak localiser's map to points: upsampling, map offset, thresholding, point scores.

:func:`upsample_map` places the stride-16 map on the input's pixels (moved by the learned
offset that :func:`estimate_map_offset` finds without truth points); :func:`map_to_points` turns
a thresholded map into points (per component or per peak); :func:`point_counts` and
:func:`pooled_point_scores` score them against truth. :data:`TTA_VIEWS` lists the test-time
views :meth:`~mitokit.models.wss.WeakLocaliser.localise` averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mitokit.errors import MitokitError

#: Test-time views of ``model.tta``: (quarter turns, horizontal flip) of each view.
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "rot180": ((0, False), (2, False)),
    "dihedral": tuple((k, f) for f in (False, True) for k in range(4)),
}
STRIDE = 16


def upsample_map(
    prob: torch.Tensor,
    size: Sequence[int],
    stride: int = STRIDE,
    offset: Sequence[float] | torch.Tensor = (0.0, 0.0),
) -> torch.Tensor:
    """A ``(B, h, w)`` (or ``(h, w)``) map of a stride-``stride`` network resized to ``size``.

    Map location ``(k, l)`` is placed where its receptive field is centred: on pixel ``(row k *
    stride, column l * stride)``. Every stride-2 layer of the ResNet trunk (7 x 7 / padding 3,
    3 x 3 / padding 1, 1 x 1 / padding 0) keeps output ``i`` centred on input ``2 i``, so the
    centres sit on the pixel grid's multiples of the stride, not in the middle of each
    ``stride x stride`` block. Between centres the map is interpolated bilinearly; past the last
    centre (the bottom and right ``H - stride (h - 1) - 1`` rows and columns) it is held
    constant. Resizing the map to the image as one picture (``align_corners=False``) would move
    every point half a stride (8 px) down and right.

    ``offset`` ``(dx, dy)`` (pixels) moves every location by ``(-dx, -dy)``: to pixel ``(k *
    stride - dy, l * stride - dx)``, the map held constant past the first and last centres. It
    undoes a response the network learned to give ``(dx, dy)`` away from the object (see
    :func:`estimate_map_offset`).
    """
    single = prob.ndim == 2
    batch = (prob[None] if single else prob)[:, None].float()
    hw = (int(size[0]), int(size[1]))
    h, w = batch.shape[-2:]
    span = (stride * (h - 1) + 1, stride * (w - 1) + 1)
    if span[0] > hw[0] or span[1] > hw[1]:
        raise MitokitError(
            f"a {h} x {w} map of stride {stride} does not fit an image of {hw[0]} x {hw[1]} px"
        )
    dx, dy = (float(v) for v in offset)

    # Pixel (i, j) reads the map at ((i + dy) / stride, (j + dx) / stride), in grid_sample's
    # align_corners=True coordinates (-1 = first location, 1 = last); border values are held.
    def axis(n_px: int, n_map: int, d: float) -> torch.Tensor:
        pos = (torch.arange(n_px, dtype=torch.float64, device=batch.device) + d) / stride
        return (2 * pos / (n_map - 1) - 1 if n_map > 1 else pos * 0).float()

    gy, gx = torch.meshgrid(axis(hw[0], h, dy), axis(hw[1], w, dx), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(batch.shape[0], -1, -1, -1)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0] if single else out[:, 0]


def _peak_point(heat: np.ndarray) -> np.ndarray:
    """The weighted centroid ``(x, y)`` of the half-maximum component holding a map's maximum."""
    from scipy import ndimage

    top = np.unravel_index(int(np.argmax(heat)), heat.shape)
    labels, _ = ndimage.label(heat >= 0.5 * heat[top], structure=np.ones((3, 3), dtype=bool))
    cy, cx = ndimage.center_of_mass(np.maximum(heat, 1e-12), labels, labels[top])
    return np.array([cx + 0.5, cy + 0.5])


def estimate_map_offset(
    maps: Sequence[torch.Tensor],
    rotated_maps: Sequence[torch.Tensor],
    sizes: Sequence[Sequence[int]],
    *,
    stride: int = STRIDE,
    min_images: int = 3,
) -> tuple[float, float] | None:
    """The displacement ``(dx, dy)`` of a localiser's response from its object, without points.

    A map trained with image-level labels only must fire *somewhere* for a positive image; the
    network may learn to fire a fixed distance ``d`` (in its own frame) away from the mitosis,
    since no loss term asks otherwise, and flip / rotation augmentation does not remove it.
    Such a ``d`` shows itself without truth points: for an image with one object at ``x``, the
    map's peak lies at ``x + d``, while the map of the image turned by 180 degrees, turned
    back, peaks at ``x - d``. Half their difference estimates ``d``; the median over images is
    robust to images whose two peaks fall on different objects.

    Args:
        maps: Instance maps ``(h, w)`` (probabilities) of positive images.
        rotated_maps: The maps of the same images turned by 180 degrees (not turned back).
        sizes: ``(H, W)`` of each image.
        stride: The maps' stride.
        min_images: Fewest images for an estimate.

    Returns:
        ``(dx, dy)`` in pixels (median over images), or None with fewer than ``min_images``.
    """
    pairs = []
    for m, r, hw in zip(maps, rotated_maps, sizes, strict=True):
        up = upsample_map(m.float(), hw, stride).cpu().numpy()
        back = torch.rot90(upsample_map(r.float(), hw, stride), 2, (0, 1)).cpu().numpy()
        pairs.append((_peak_point(up) - _peak_point(back)) / 2)
    if len(pairs) < min_images:
        return None
    dx, dy = np.median(np.asarray(pairs), axis=0)
    return float(dx), float(dy)


def map_to_points(
    heatmap: Any, threshold: float, *, min_distance_px: float | None = None
) -> np.ndarray:
    """Points of a heatmap: one per 8-connected component of ``heatmap >= threshold``, or, with
    ``min_distance_px``, one per local peak.

    Components (``min_distance_px`` None, :data:`POINT_RULES` ``components``): each component
    becomes its map-weighted centroid. Peaks (``peaks``): the local maxima of the map at or above
    the threshold, at least ``min_distance_px`` apart (:func:`skimage.feature.peak_local_max`;
    a component without one gets its maximum), split each component among its peaks by a
    watershed of the map (:func:`skimage.segmentation.watershed`), and each basin becomes its
    map-weighted centroid: two mitoses whose responses merge above the threshold still give
    two points.

    Args:
        heatmap: ``(H, W)`` map in [0, 1] at the input's resolution (array or tensor).
        threshold: Map threshold (inclusive).
        min_distance_px: Smallest distance between two peaks (pixels); None: components.

    Returns:
        ``(N, 3)`` float64 ``x, y, score``: the map-weighted centroid of each component (or
        basin) in pixel coordinates (pixel centres at ``index + 0.5``) and its maximum, highest
        score first.
    """
    from scipy import ndimage

    heat = heatmap.detach().cpu().numpy() if torch.is_tensor(heatmap) else heatmap
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2:
        raise MitokitError(f"a heatmap must be 2-D, got shape {heat.shape}")
    mask = heat >= float(threshold)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if min_distance_px is not None:
        labels, n = _peak_basins(heat, labels, n, float(min_distance_px))
    index = np.arange(1, n + 1)
    weights = np.maximum(heat, 1e-12)  # a zero threshold keeps zero-valued pixels: still weighted
    centres = np.asarray(ndimage.center_of_mass(weights, labels, index), dtype=np.float64)
    peaks = np.asarray(ndimage.maximum(heat, labels, index), dtype=np.float64)
    points = np.column_stack([centres[:, 1] + 0.5, centres[:, 0] + 0.5, peaks])
    return points[np.argsort(-points[:, 2], kind="stable")]


def _peak_basins(
    heat: np.ndarray, components: np.ndarray, n: int, min_distance_px: float
) -> tuple[np.ndarray, int]:
    """The thresholded components split into watershed basins around peaks ``>= min_distance``
    apart; every component keeps at least one basin (around its maximum)."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not (math.isfinite(min_distance_px) and min_distance_px > 0):
        raise MitokitError(f"min_distance_px must be a positive number, got {min_distance_px!r}")
    found = peak_local_max(
        heat,
        min_distance=max(1, int(round(min_distance_px))),
        labels=components,
        exclude_border=False,
    )
    missing = np.setdiff1d(np.arange(1, n + 1), components[tuple(found.T)])
    extra = ndimage.maximum_position(heat, components, missing) if len(missing) else []
    seeds = np.concatenate([found.reshape(-1, 2), np.asarray(extra, dtype=int).reshape(-1, 2)])
    markers = np.zeros(heat.shape, dtype=np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    basins = watershed(-heat, markers, mask=components > 0, connectivity=2)
    return basins, len(seeds)


def point_counts(
    pred_xy: np.ndarray, truth_xy: np.ndarray, *, radius_px: float
) -> tuple[int, int, int]:
    """TP, FP, FN of one image (optimal one-to-one matching within ``radius_px``)."""
    from mitokit.metrics.detection import match_points

    m = match_points(pred_xy, truth_xy, radius_px=radius_px)
    return len(m.pairs), len(m.unmatched_pred), len(m.unmatched_truth)


def pooled_point_scores(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    threshold: float,
    radius_px: float,
    min_distance_px: float | None = None,
) -> dict[str, float]:
    """Point precision, recall and F1 pooled over images (micro, as MIDOG) at one threshold.

    Args:
        maps: Heatmaps ``(H, W)`` at the input resolution.
        truths: ``(n, 2)`` truth points per image.
        threshold: Map threshold.
        radius_px: Matching radius in pixels.
        min_distance_px: Peak distance of :func:`map_to_points` (None: components).
    """
    from mitokit.metrics.detection import precision_recall_f1

    tp = fp = fn = 0
    for heat, truth in zip(maps, truths, strict=True):
        pts = map_to_points(heat, threshold, min_distance_px=min_distance_px)[:, :2]
        a, b, c = point_counts(pts, truth, radius_px=radius_px)
        tp, fp, fn = tp + a, fp + b, fn + c
    p, r, f = precision_recall_f1(tp, fp, fn)
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}

"""Heat maps of a slide's predictions blended on its thumbnail.

The slide engine accumulates what a model says onto a canvas of the thumbnail's size (tile
scores, the model's own heat maps, or the density of detected points); :func:`render_heatmap`
colours it and blends it on the thumbnail, transparent where the value is low, and draws the
hotspot rectangle and, optionally, the detections.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mitokit.io.atomic import atomic_path

HOTSPOT_COLOR = (0, 220, 0)
POINT_COLOR = (0, 255, 255)


def paint_max(canvas: np.ndarray, box: Sequence[float], values: np.ndarray | float) -> None:
    """Write ``values`` into ``canvas`` over ``box`` (canvas pixels), keeping the maximum.

    Args:
        canvas: ``(h, w)`` float32 map, changed in place.
        box: ``(x1, y1, x2, y2)`` in canvas pixels (clipped to the canvas).
        values: One number, or a 2-D map resized to the box.
    """
    h, w = canvas.shape
    x1, y1, x2, y2 = box
    c0, r0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    c1, r1 = min(w, max(c0 + 1, int(np.ceil(x2)))), min(h, max(r0 + 1, int(np.ceil(y2))))
    if c0 >= w or r0 >= h or c1 <= c0 or r1 <= r0:
        return
    if np.ndim(values) == 0:
        patch = np.float32(values)
    else:
        from PIL import Image

        full_w = max(1, int(round(x2 - x1)))
        full_h = max(1, int(round(y2 - y1)))
        image = Image.fromarray(np.asarray(values, dtype=np.float32))
        full = np.asarray(image.resize((full_w, full_h), Image.Resampling.BILINEAR))
        oc, orow = c0 - int(np.floor(x1)), r0 - int(np.floor(y1))
        patch = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
        part = full[orow : orow + (r1 - r0), oc : oc + (c1 - c0)]
        patch[: part.shape[0], : part.shape[1]] = part
    np.maximum(canvas[r0:r1, c0:c1], patch, out=canvas[r0:r1, c0:c1])


def point_density(
    points: np.ndarray, shape: tuple[int, int], downsample: tuple[float, float], sigma: float
) -> np.ndarray:
    """Density of level-0 points on a canvas, Gaussian-smoothed and scaled to a maximum of 1.

    Args:
        points: ``(N, >=2)`` level-0 ``x, y``.
        shape: ``(h, w)`` of the canvas.
        downsample: Level-0 pixels per canvas pixel, (x, y).
        sigma: Smoothing in canvas pixels.
    """
    from scipy.ndimage import gaussian_filter

    h, w = shape
    density = np.zeros((h, w), dtype=np.float32)
    if len(points):
        c = np.clip((points[:, 0] / downsample[0]).astype(np.int64), 0, w - 1)
        r = np.clip((points[:, 1] / downsample[1]).astype(np.int64), 0, h - 1)
        np.add.at(density, (r, c), 1.0)
        density = gaussian_filter(density, sigma=max(float(sigma), 0.5))
        top = float(density.max())
        if top > 0:
            density /= top
    return density


def render_heatmap(
    thumbnail: np.ndarray,
    heat: np.ndarray,
    *,
    box: Sequence[float] | None = None,
    points: np.ndarray | None = None,
    alpha: float = 0.65,
    colormap: str = "inferno",
) -> np.ndarray:
    """Blend ``heat`` (values in [0, 1]) on ``thumbnail`` and draw the hotspot and points.

    Args:
        thumbnail: ``(h, w, 3)`` uint8 RGB.
        heat: ``(h, w)`` map in [0, 1]; 0 leaves the thumbnail as it is.
        box: Hotspot ``(x1, y1, x2, y2)`` in thumbnail pixels, drawn as a rectangle.
        points: ``(N, 2)`` detections in thumbnail pixels, drawn as small circles.
        alpha: Opacity of the colour where ``heat`` is 1.
        colormap: A matplotlib colormap name.

    Returns:
        ``(h, w, 3)`` uint8 RGB.
    """
    import matplotlib
    from PIL import Image, ImageDraw

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    colours = matplotlib.colormaps[colormap](heat)[:, :, :3].astype(np.float32) * 255.0
    a = (alpha * heat)[:, :, None]
    out = thumbnail.astype(np.float32) * (1.0 - a) + colours * a
    image = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if points is not None and len(points) and len(points) <= 20_000:
        r = max(1.5, min(image.size) / 400)
        for x, y in np.asarray(points, dtype=np.float64)[:, :2]:
            draw.ellipse((x - r, y - r, x + r, y + r), outline=POINT_COLOR)
    if box is not None:
        width = max(2, round(min(image.size) / 300))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=HOTSPOT_COLOR, width=width)
    return np.asarray(image)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")


__all__ = ["paint_max", "point_density", "render_heatmap", "save_png"]

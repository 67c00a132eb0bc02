"""Cell-centred patches around points of a slide or an image.

A patch of side ``size`` is centred on a pixel: the centre (x, y) is rounded to the nearest pixel
index (halves up) and that pixel lands at ``patch[size // 2, size // 2]``. For an odd size the
patch is symmetric; for an even size the centre pixel has ``size // 2`` pixels above and to its
left and ``size // 2 - 1`` below and to its right.

Border policies for patches that cross the image edge:

``"pad"``
    Keep the patch; pixels outside the image take ``pad_value`` (white by default, which is what
    slide readers return outside a slide).
``"skip"``
    Drop the patch. Centres outside the image are therefore simply dropped; the returned index
    says which centres were kept.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from mitokit.data.arrays import WHITE, as_slide, level_downsample, level_size
from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet

BorderPolicy = Literal["pad", "skip"]


def extract_patches(
    source: Any,
    centers_xy: np.ndarray | Sequence[Sequence[float]],
    *,
    size: int = 64,
    level: int = 0,
    border: BorderPolicy = "pad",
    pad_value: int = WHITE,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut square patches centred on points.

    Args:
        source: A slide (``read_region``/``dimensions``) or an ``HxWx3`` uint8 array.
        centers_xy: ``(N, 2)`` centres (x, y) in level-0 pixels.
        size: Patch side in pixels of ``level``.
        level: Pyramid level to read from; centres are divided by its downsample.
        border: ``"pad"`` or ``"skip"`` (see the module docstring).
        pad_value: Grey value of pixels outside the image with ``"pad"``.

    Returns:
        ``(patches, kept)``: ``(K, size, size, 3)`` uint8 patches and the ``(K,)`` int64 indices
        of the centres they belong to (all of them with ``"pad"``).

    Raises:
        MitokitError: Non-positive size, unknown border policy, bad centres or pad value.
    """
    size = _check_size(size)
    if border not in ("pad", "skip"):
        raise input_error(None, f"unknown border policy {border!r} (pad, skip)")
    if isinstance(pad_value, bool) or not (
        isinstance(pad_value, numbers.Integral) and 0 <= pad_value <= 255
    ):
        raise input_error(None, f"pad_value must be an integer in [0, 255], got {pad_value!r}")
    centers = _check_centers(centers_xy)
    slide = as_slide(source)
    ds = level_downsample(slide, level)
    width, height = level_size(slide, level)

    # centre pixel index at the level, then the top-left corner of each patch
    idx = np.floor(centers / ds + 0.5).astype(np.int64)
    tl = idx - size // 2
    inside = (
        (tl[:, 0] >= 0) & (tl[:, 1] >= 0) & (tl[:, 0] + size <= width) & (tl[:, 1] + size <= height)
    )
    kept = np.arange(len(centers), dtype=np.int64)
    if border == "skip":
        kept = kept[inside]
    out = np.empty((len(kept), size, size, 3), dtype=np.uint8)
    for k, i in enumerate(kept.tolist()):
        x0, y0 = int(tl[i, 0]), int(tl[i, 1])
        region = np.asarray(
            slide.read_region((round(x0 * ds), round(y0 * ds)), level, (size, size))
        )[:, :, :3]
        out[k] = region
        if not inside[i] and pad_value != WHITE:
            _fill_outside(out[k], x0, y0, width, height, pad_value)
    return out, kept


def patches_from_annotations(
    annotations: AnnotationSet | Sequence[Annotation],
    open_image: Callable[[str], Any],
    *,
    size: int = 64,
    level: int = 0,
    border: BorderPolicy = "pad",
    pad_value: int = WHITE,
    label: str | None = None,
) -> tuple[np.ndarray, list[Annotation]]:
    """Patches centred on annotated objects of several images.

    Each image is opened once with ``open_image(image_id)`` (a slide or an ``HxWx3`` array);
    closing it is the caller's business (``open_image`` may hand out cached slides).

    Args:
        annotations: The objects; their centre (point, or box centre) is the patch centre.
        open_image: Returns the slide or array of an image id.
        size: Patch side in pixels of ``level``.
        level: Pyramid level.
        border: ``"pad"`` or ``"skip"``.
        pad_value: Grey value outside the image with ``"pad"``.
        label: Only objects of this class, or all when None.

    Returns:
        ``(patches, kept)``: ``(K, size, size, 3)`` uint8 patches in the order of the
        annotations, and the annotations they belong to.
    """
    size = _check_size(size)
    anns = [a for a in annotations if label is None or a.label == label]
    by_image: dict[str, list[int]] = {}
    for i, ann in enumerate(anns):
        by_image.setdefault(ann.image, []).append(i)
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    for image_id, indices in by_image.items():
        centers = np.array([anns[i].center for i in indices], dtype=np.float64)
        patches, kept = extract_patches(
            open_image(image_id),
            centers,
            size=size,
            level=level,
            border=border,
            pad_value=pad_value,
        )
        chunks.append((np.asarray(indices, dtype=np.int64)[kept], patches))
    if not chunks:
        return np.zeros((0, size, size, 3), dtype=np.uint8), []
    order_all = np.concatenate([c[0] for c in chunks])
    patches_all = np.concatenate([c[1] for c in chunks])
    order = np.argsort(order_all, kind="stable")
    return patches_all[order], [anns[i] for i in order_all[order].tolist()]


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
        raise input_error(None, f"patch size must be a positive integer, got {size!r}")
    return int(size)


def _check_centers(centers_xy: Any) -> np.ndarray:
    centers = np.asarray(centers_xy, dtype=np.float64)
    if centers.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise input_error(None, f"centres must be an (N, 2) array of (x, y), got {centers.shape}")
    if not np.all(np.isfinite(centers)):
        bad = int(np.flatnonzero(~np.isfinite(centers).all(axis=1))[0])
        raise input_error(None, f"centre {bad} is not finite: {centers[bad].tolist()}")
    return centers


def _fill_outside(patch: np.ndarray, x0: int, y0: int, width: int, height: int, value: int) -> None:
    """Set the pixels of ``patch`` (top-left at x0, y0) outside ``width x height`` to value."""
    h, w = patch.shape[:2]
    cols = np.arange(x0, x0 + w)
    rows = np.arange(y0, y0 + h)
    patch[:, (cols < 0) | (cols >= width)] = value
    patch[(rows < 0) | (rows >= height), :] = value


__all__ = ["BorderPolicy", "extract_patches", "patches_from_annotations"]

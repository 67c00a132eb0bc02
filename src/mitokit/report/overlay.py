"""Predictions against the truth, drawn on the image a pathologist would look at.

Each true object of the evaluated class is a green circle of the matching radius; imposters
(the truth's other classes, e.g. ``non_mitosis``) are blue squares; predictions are crosses,
yellow when matched to a true object (true positive), red otherwise (false positive); missed
objects (false negatives) keep a plain green circle with no cross inside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.io.annotations import Annotation


def plot_point_overlay(
    image: np.ndarray,
    path: str | os.PathLike,
    *,
    pred: Sequence[Annotation],
    truth: Sequence[Annotation],
    radius_px: float,
    label: str = "mitosis",
    threshold: float | None = None,
    title: str | None = None,
    max_side: int = 1600,
    matching: str = "optimal",
) -> dict[str, int]:
    """Write a PNG of predictions vs truth on ``image`` and return its tp / fp / fn counts.

    Args:
        image: ``HxWx3`` uint8 image (the frame or a slide region, level-0 pixels).
        path: PNG to write (atomically).
        pred: Predicted objects (points or boxes; centres are used), scores optional.
        truth: True objects; those of class ``label`` are matched, the others drawn as imposters.
        radius_px: Matching radius in pixels (one-to-one, as :func:`match_points`).
        label: The evaluated class.
        threshold: Keep predictions with score >= this (None: all).
        title: Figure title (the counts are appended).
        max_side: Longest side of the figure in pixels.
        matching: ``"optimal"`` or ``"midog"``, as :func:`match_points` (the figure shows the
            pairs the reported counts come from).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mitokit.io.atomic import atomic_path
    from mitokit.metrics.detection import match_points

    kept = [a for a in pred if threshold is None or a.score is None or a.score >= threshold]
    pxy = _centres(kept)
    pos = [a for a in truth if a.label == label]
    neg = [a for a in truth if a.label != label]
    txy, nxy = _centres(pos), _centres(neg)
    m = match_points(pxy, txy, radius_px=radius_px, matching=matching)
    matched_pred = {int(i) for i in m.pairs[:, 0]} if len(m.pairs) else set()
    counts = {
        "tp": int(len(m.pairs)),
        "fp": int(len(m.unmatched_pred)),
        "fn": int(len(m.unmatched_truth)),
    }
    dpi = 100
    fig = _draw(image, pxy, txy, nxy, matched_pred, radius_px=radius_px, max_side=max_side, dpi=dpi)
    head = f"{title}  " if title else ""
    fig.text(
        0.01,
        0.995,
        f"{head}TP {counts['tp']}  FP {counts['fp']}  FN {counts['fn']}  "
        "(green: mitosis, blue: imposter, x yellow: hit, x red: false alarm)",
        va="top",
        fontsize=9,
    )
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return counts


def _draw(
    image: np.ndarray,
    pxy: np.ndarray,
    txy: np.ndarray,
    nxy: np.ndarray,
    matched_pred: set[int],
    *,
    radius_px: float,
    max_side: int,
    dpi: int,
) -> Any:
    """The figure: the image, truth circles, imposter squares and prediction crosses.

    Args:
        image: ``HxWx3`` uint8 image.
        pxy: Predicted centres, ``(N, 2)``.
        txy: True centres of the evaluated class, ``(M, 2)``.
        nxy: Imposter centres, ``(K, 2)``.
        matched_pred: Indices into ``pxy`` of the matched predictions (yellow; the others red).
        radius_px: Matching radius in pixels (the circles' radius).
        max_side: Longest side of the figure in pixels.
        dpi: Resolution of the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    fig = plt.figure(figsize=(w * scale / dpi, h * scale / dpi + 0.4), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + 40)))
    ax.imshow(image)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    for x, y in txy:
        ax.add_patch(Circle((x, y), radius_px, fill=False, lw=1.6, ec="#2ecc40"))
    side = radius_px * 0.8
    for x, y in nxy:
        ax.add_patch(
            Rectangle((x - side / 2, y - side / 2), side, side, fill=False, lw=1.0, ec="#0074d9")
        )
    for i, (x, y) in enumerate(pxy):
        colour = "#ffdc00" if i in matched_pred else "#ff4136"
        ax.plot([x], [y], marker="x", ms=9, mew=2.2, color=colour)
    return fig


def _centres(anns: Sequence[Annotation]) -> np.ndarray:
    if not anns:
        return np.zeros((0, 2))
    return np.array([a.center for a in anns], dtype=float)


def find_image(info: Any, truth_source: str | os.PathLike) -> Path | None:
    """The image file of a truth image (its ``file_name`` or id, beside the truth file)."""
    base = Path(truth_source)
    base = base if base.is_dir() else base.parent
    names = [n for n in (getattr(info, "file_name", None), getattr(info, "id", None)) if n]
    for name in names:
        cands = [Path(name), base / name, base / "images" / Path(name).name]
        cands += [base / f"{Path(name).name}{s}" for s in (".png", ".jpg", ".tif", ".tiff")]
        for cand in cands:
            if _is_file(cand):
                return cand
    return None


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False for a name no file can have (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False

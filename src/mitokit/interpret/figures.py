"""Figures of generated cells: image grids with scores, and the score-vs-condition curve.

matplotlib with the Agg backend; every figure is written atomically. A grid is drawn as one
montage image with its labels as text, so a page of hundreds of cells stays fast to render.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mitokit.io.atomic import atomic_path

_PAD = 2  # pixels between the cells of a montage


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike) -> None:
    """Lay out, write atomically, close."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def montage(images: np.ndarray, *, pad: int = _PAD, fill: int = 255) -> np.ndarray:
    """``(rows, cols, S, S, 3)`` uint8 cells as one image with ``pad`` pixels between them."""
    rows, cols, h, w = images.shape[:4]
    out = np.full(
        (rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), fill, dtype=np.uint8
    )
    for r in range(rows):
        for c in range(cols):
            y, x = r * (h + pad), c * (w + pad)
            out[y : y + h, x : x + w] = images[r, c]
    return out


#: Most worker processes :func:`write_grid_figures` starts, and the fewest figures worth them.
MAX_FIGURE_WORKERS = 8
MIN_PARALLEL_FIGURES = 32


def figure_workers(n_figures: int, workers: int | None = None) -> int:
    """Processes for ``n_figures`` figures: ``workers`` if given, else one per core beyond the
    first, at most :data:`MAX_FIGURE_WORKERS`, and none (draw here) for a few figures."""
    if workers is not None:
        return max(0, int(workers))
    if n_figures < MIN_PARALLEL_FIGURES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(MAX_FIGURE_WORKERS, max(0, (cores or 1) - 1))


def _draw(job: tuple[str, Mapping[str, Any]]) -> None:
    path, kwargs = job
    grid_figure(path=path, **kwargs)


def write_grid_figures(
    jobs: Sequence[tuple[str | os.PathLike, Mapping[str, Any]]], *, workers: int | None = None
) -> None:
    """Draw many :func:`grid_figure` s, ``jobs`` of ``(path, keyword arguments)``.

    Writing hundreds of strips or grids takes longer than sampling them on a GPU, so with many
    figures they are drawn in worker processes (:func:`figure_workers`; started with ``spawn``,
    safe beside CUDA and threads). The files are the same whichever process draws them.
    """
    jobs = [(os.fspath(p), dict(kw)) for p, kw in jobs]
    n = figure_workers(len(jobs), workers)
    if n <= 1:
        for job in jobs:
            _draw(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunk = max(1, math.ceil(len(jobs) / (4 * n)))
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            for _ in pool.map(_draw, jobs, chunksize=chunk):
                pass
    except BrokenProcessPool:  # workers that cannot start (a script read from stdin ...)
        warnings.warn("figure workers could not start; drawing here", stacklevel=2)
        for job in jobs:
            _draw(job)


def grid_figure(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    col_labels: Sequence[str],
    row_labels: Sequence[str] | None = None,
    scores: np.ndarray | None = None,
    title: str | None = None,
    highlight: np.ndarray | None = None,
) -> None:
    """A grid of cells: one row per set (or cell), one column per condition (or noise level).

    Args:
        images: ``(rows, cols, S, S, 3)`` uint8.
        path: Output image (PNG, PDF ...).
        col_labels: One label per column, above the grid.
        row_labels: One label per row, left of the grid.
        scores: Optional ``(rows, cols)`` classifier scores, printed under each cell.
        title: Figure title.
        highlight: Optional ``(rows,)`` booleans; those rows' labels are drawn in bold green.
    """
    plt = _pyplot()
    images = np.asarray(images)
    rows, cols, h, w = images.shape[:4]
    text_h = max(3, round(0.2 * h)) if scores is not None else 0  # room for the score
    padded = np.full((rows, cols, h + text_h, w, 3), 255, dtype=np.uint8)
    padded[:, :, :h] = images
    mont = montage(padded)
    cell_in = 0.75  # inches per cell
    scale = cell_in / w
    fig_w = cols * cell_in + (1.1 if row_labels is not None else 0.3)
    fig_h = rows * (h + text_h) * scale + 0.7 + (0.3 if title else 0.0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=100)
    ax.imshow(mont, interpolation="nearest")
    ax.set_xticks([c * (w + _PAD) + w / 2 for c in range(cols)])
    ax.set_xticklabels(list(col_labels), fontsize=7)
    ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticks([r * (h + text_h + _PAD) + h / 2 for r in range(rows)])
        ax.set_yticklabels(list(row_labels), fontsize=7)
        if highlight is not None:
            for label, good in zip(ax.get_yticklabels(), highlight, strict=True):
                if good:
                    label.set_color("#1a7f37")
                    label.set_fontweight("bold")
    else:
        ax.set_yticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if scores is not None:
        for r in range(rows):
            for c in range(cols):
                s = scores[r, c]
                if np.isfinite(s):
                    ax.text(
                        c * (w + _PAD) + w / 2,
                        r * (h + text_h + _PAD) + h + text_h / 2,
                        f"{s:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                    )
    if title:
        ax.set_title(title, fontsize=9)
    _save(plt, fig, path)


def curve_figure(
    conditions: np.ndarray,
    stats: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    n_sets: int | None = None,
    xlabel: str = "condition c",
    ylabel: str = "classifier score",
) -> None:
    """Score vs condition: mean with a standard-error band, median dashed, the diagonal dotted.

    Args:
        conditions: ``(n,)`` x values.
        stats: :func:`~mitokit.interpret.selection.curve_stats` output.
        path: Output image.
        title: Figure title.
        n_sets: Number of sets behind the curve (for the legend).
        xlabel: x-axis label.
        ylabel: y-axis label.
    """
    plt = _pyplot()
    x = np.asarray(conditions, dtype=float)
    mean, median, se = stats["mean"], stats["median"], stats["se"]
    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=120)
    band = np.nan_to_num(se, nan=0.0)
    label = "mean" + (f" of {n_sets} sets" if n_sets else "")
    ax.fill_between(x, mean - band, mean + band, color="C0", alpha=0.25, label="mean ± SE")
    ax.plot(x, mean, "-o", color="C0", ms=3, label=label)
    ax.plot(x, median, "--", color="C1", label="median")
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    ax.plot([lo, hi], [lo, hi], ":", color="0.5", lw=1, label="score = condition")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Classifier score of generated cells", fontsize=10)
    _save(plt, fig, path)


def likeness_figure(
    curves: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    thresholds: Sequence[float] = (0.5, 0.9),
    title: str | None = None,
) -> None:
    """When real cells start to look like the target class, per label group.

    One panel per threshold ("resembles", "convincing"): the fraction of each group's cells
    whose counterfactual scores at least the threshold by noise level t (from
    :func:`~mitokit.interpret.selection.likeness_curves`). A group whose curve rises earlier
    needed less noise to turn.
    """
    plt = _pyplot()
    names = ("resembles", "convincing")
    k = len(thresholds)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.6), dpi=120, squeeze=False)
    for j, thr in enumerate(thresholds):
        ax = axes[0, j]
        for g, (name, cur) in enumerate(curves.items()):
            label = f"{name} (n={cur['n']})"
            ax.plot(cur["t"], cur["fraction"][j], "-o", ms=3, color=f"C{g}", label=label)
        what = names[j] if j < len(names) else f"threshold {j + 1}"
        ax.set_title(f"{what}: score >= {thr:g}", fontsize=10)
        ax.set_xlabel("noise level t")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel("fraction of cells reached")
            ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


__all__ = [
    "curve_figure",
    "figure_workers",
    "grid_figure",
    "likeness_figure",
    "montage",
    "write_grid_figures",
]

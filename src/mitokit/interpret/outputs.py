"""The output folders of transitions and counterfactuals.

- :func:`write_transitions`: a transition run's images, ``scores.csv``, grid figures, the
  score-vs-condition curve, the good sets and ``summary.json``;
- :func:`write_counterfactuals`: each cell's images by noise level, its strip, and with scores
  ``likeness.csv`` (the likeness index), ``likeness.png`` and ``summary.json``.

Both write into a fresh folder; the CLI writes into a temporary one renamed at the end
(:func:`mitokit.io.atomic.atomic_dir`). Both are also importable from the modules that make
what they write (:mod:`~mitokit.interpret.transitions`,
:mod:`~mitokit.interpret.counterfactual`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.interpret.selection import condition_trend, curve_stats, good_set_criteria

if TYPE_CHECKING:
    from mitokit.interpret.counterfactual import Counterfactuals
    from mitokit.interpret.transitions import Transitions

__all__ = ["write_counterfactuals", "write_transitions"]


def _fmt(c: float) -> str:
    return f"{c:.3f}".rstrip("0").rstrip(".") if c else "0"


def write_transitions(
    out: str | os.PathLike,
    transitions: Transitions,
    *,
    scores: np.ndarray | None = None,
    first_below: float = 0.1,
    last_above: float = 0.9,
    max_step: float = 0.3,
    sets_per_grid: int = 16,
    max_selected: int = 32,
    meta: dict[str, Any] | None = None,
    figure_workers: int | None = None,
) -> dict[str, Any]:
    """Write generated sets (and their scores) into the folder ``out``.

    Files::

        images/set000000_k00.png   one PNG per image (k: the condition's column)
        scores.csv                 set, k, condition, image[, score]
        grids/sets_000000.png      rows = sets, columns = conditions, scores printed
        curve.png                  score vs condition: mean ± SE, median (with scores)
        selected.png               the good sets (with scores)
        summary.json               settings, timing, curve, trend (does the condition move
                                   the score, set by set), good sets and their yield

    The folder should be a fresh one (the CLI writes into a temporary folder renamed at the
    end, :func:`mitokit.io.atomic.atomic_dir`). ``figure_workers``: processes drawing the grids
    (None: :func:`~mitokit.interpret.figures.figure_workers` decides; 0: here).

    Returns:
        The summary (as written to ``summary.json``).
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tr = transitions
    col_labels = [f"c={_fmt(c)}" for c in tr.conditions]
    _write_images(out, tr, scores)
    good = passes = None
    if scores is not None and len(tr.conditions) >= 2:
        passes = good_set_criteria(
            scores, first_below=first_below, last_above=last_above, max_step=max_step
        )
        good = passes["all"]
    _write_grids(out, tr, scores, good, col_labels, sets_per_grid, figure_workers)
    summary: dict[str, Any] = {
        **(meta or {}),
        **_transition_settings(tr),
        "scored": scores is not None,
    }
    if scores is not None:
        summary.update(_write_curve(out, tr, scores))
    if good is not None:
        rules = {"first_below": first_below, "last_above": last_above, "max_step": max_step}
        summary.update(_write_selection(out, tr, scores, passes, rules, col_labels, max_selected))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _write_images(out: Path, tr: Transitions, scores: np.ndarray | None) -> None:
    """``images/set<j>_k<k>.png`` per image and ``scores.csv`` listing them."""
    from PIL import Image

    rows: list[dict[str, Any]] = []
    for i, j in enumerate(tr.set_ids):
        for k, c in enumerate(tr.conditions):
            name = f"images/set{int(j):06d}_k{k:02d}.png"
            Image.fromarray(tr.images[i, k]).save(out / name)
            row = {"set": int(j), "k": k, "condition": float(c), "image": name}
            if scores is not None:
                row["score"] = float(scores[i, k])
            rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    (out / "scores.csv").write_text(buf.getvalue(), encoding="utf-8")


def _write_grids(
    out: Path,
    tr: Transitions,
    scores: np.ndarray | None,
    good: np.ndarray | None,
    col_labels: list[str],
    sets_per_grid: int,
    figure_workers: int | None,
) -> None:
    """``grids/sets_<first set>.png``: ``sets_per_grid`` sets per figure, good sets marked."""
    from mitokit.interpret.figures import write_grid_figures

    per = max(1, int(sets_per_grid))
    grids = []
    for start in range(0, tr.n_sets, per):
        sl = slice(start, start + per)
        kwargs = {
            "images": tr.images[sl],
            "col_labels": col_labels,
            "row_labels": [f"set {int(j)}" for j in tr.set_ids[sl]],
            "scores": None if scores is None else scores[sl],
            "highlight": None if good is None else good[sl],
        }
        grids.append((out / "grids" / f"sets_{int(tr.set_ids[start]):06d}.png", kwargs))
    write_grid_figures(grids, workers=figure_workers)


def _transition_settings(tr: Transitions) -> dict[str, Any]:
    """The generation's settings and timing, as the summary gives them."""
    return {
        "n_sets": tr.n_sets,
        "conditions": [round(float(c), 10) for c in tr.conditions],
        "scheduler": tr.scheduler,
        "steps": tr.steps,
        "guidance": tr.guidance,
        "seed": tr.seed,
        "first_set": int(tr.set_ids[0]),
        "network_evaluations_per_image": tr.nfe,
        "seconds": round(tr.seconds, 3),
        "sets_per_second": round(tr.n_sets / tr.seconds, 4) if tr.seconds > 0 else None,
    }


def _write_curve(out: Path, tr: Transitions, scores: np.ndarray) -> dict[str, Any]:
    """``curve.png``; the summary's score curve and trend."""
    from mitokit.interpret.figures import curve_figure

    stats = curve_stats(scores)
    curve_figure(tr.conditions, stats, out / "curve.png", n_sets=tr.n_sets)
    return {
        "curve": {
            "mean": _floats(stats["mean"]),
            "median": _floats(stats["median"]),
            "se": _floats(stats["se"]),
        },
        "trend": condition_trend(scores, tr.conditions),
    }


def _write_selection(
    out: Path,
    tr: Transitions,
    scores: np.ndarray,
    passes: dict[str, np.ndarray],
    rules: dict[str, float],
    col_labels: list[str],
    max_selected: int,
) -> dict[str, Any]:
    """``selected.png`` (when some set is good); the summary's good-set entries."""
    from mitokit.interpret.figures import grid_figure

    picked = np.flatnonzero(passes["all"])
    summary: dict[str, Any] = {
        "selection": {
            **rules,
            # sets passing each rule on its own, the first two together, and all three
            "passing": {
                **{k: int(v.sum()) for k, v in passes.items()},
                "first_and_last": int((passes["first_below"] & passes["last_above"]).sum()),
            },
        },
        "good_sets": [int(tr.set_ids[i]) for i in picked],
        "n_good_sets": int(len(picked)),
        "good_set_yield": float(len(picked) / tr.n_sets),
    }
    if len(picked):
        shown = picked[: max(1, int(max_selected))]
        grid_figure(
            tr.images[shown],
            out / "selected.png",
            col_labels=col_labels,
            row_labels=[f"set {int(tr.set_ids[i])}" for i in shown],
            scores=scores[shown],
            title=f"{len(picked)} good sets of {tr.n_sets}"
            + (f" (first {len(shown)} shown)" if len(shown) < len(picked) else ""),
        )
    return summary


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def write_counterfactuals(
    out: str | os.PathLike,
    result: Counterfactuals,
    ids: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    thresholds: tuple[float, float] = (0.5, 0.9),
    labels: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    figure_workers: int | None = None,
) -> dict[str, Any]:
    """Write counterfactuals (and their likeness indices) into the folder ``out``.

    Files::

        images/<id>_t0100.png   one PNG per cell and noise level
        strips/<id>.png          the cell's strip: columns = t, scores printed
        likeness.csv             id, score_t<t> per t, t_resembles, t_convincing (with scores)
        likeness.png             per label group, the fraction of cells reached by each t
        summary.json             settings, and with scores how many cells reach each threshold

    ``t_resembles`` / ``t_convincing``: the smallest t scoring >= ``thresholds[0]`` /
    ``thresholds[1]``; empty when never reached. With ``labels`` (each cell's label, e.g. its
    rater vote fraction; NaN where unknown) likeness.csv gains a ``label`` column and the
    summary Spearman's correlation of each index with the label, and, with t = 0 in the grid,
    the same over the cells whose input scores below each threshold and the input score's own
    correlation (:func:`~mitokit.interpret.selection.likeness_correlations`).
    ``figure_workers``: processes drawing the strips (None: as many as
    :func:`~mitokit.interpret.figures.figure_workers` decides; 0: here).

    Returns:
        The summary.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    ids = [str(i) for i in ids]
    if len(ids) != result.images.shape[0]:
        raise ValueError(f"{len(ids)} ids for {result.images.shape[0]} cells")
    _write_strips(out, result, ids, scores, figure_workers)
    summary: dict[str, Any] = {
        **(meta or {}),
        **_counterfactual_settings(result, len(ids)),
        "scored": scores is not None,
    }
    if scores is not None:
        summary.update(_write_likeness(out, result, ids, scores, thresholds, labels))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _write_strips(
    out: Path,
    result: Counterfactuals,
    ids: list[str],
    scores: np.ndarray | None,
    figure_workers: int | None,
) -> None:
    """``images/<id>_t<t>.png`` per cell and noise level, and ``strips/<id>.png`` per cell."""
    from PIL import Image

    from mitokit.interpret.figures import write_grid_figures

    safe = _safe_names(ids)
    ts = result.t_grid
    width = max(4, len(str(int(ts.max()))))
    strips = []
    for i, name in enumerate(safe):
        for k, t in enumerate(ts):
            Image.fromarray(result.images[i, k]).save(out / "images" / f"{name}_t{t:0{width}d}.png")
        kwargs = {
            "images": result.images[i : i + 1],
            "col_labels": ["input" if t == 0 else f"t={t}" for t in ts],
            "scores": None if scores is None else scores[i : i + 1],
            "title": f"{ids[i]} -> c={result.condition:g} ({result.mode.replace('_', ' ')})",
        }
        strips.append((out / "strips" / f"{name}.png", kwargs))
    write_grid_figures(strips, workers=figure_workers)


def _counterfactual_settings(result: Counterfactuals, n_cells: int) -> dict[str, Any]:
    """The run's settings, as the summary gives them."""
    return {
        "n_cells": n_cells,
        "t_grid": [int(t) for t in result.t_grid],
        "mode": result.mode,
        "condition": result.condition,
        "source_condition": "null"
        if result.source_condition is not None and np.isnan(result.source_condition).all()
        else (None if result.source_condition is None else "given"),
        "scheduler": result.scheduler,
        "steps": result.steps,
        "guidance": result.guidance,
        "seed": result.seed,
        "seconds": round(result.seconds, 3),
    }


def _write_likeness(
    out: Path,
    result: Counterfactuals,
    ids: list[str],
    scores: np.ndarray,
    thresholds: tuple[float, float],
    labels: np.ndarray | None,
) -> dict[str, Any]:
    """Write ``likeness.csv`` and ``likeness.png``; the summary's likeness entries."""
    from mitokit.interpret.figures import likeness_figure
    from mitokit.interpret.selection import (
        likeness_correlations,
        likeness_curves,
        likeness_index,
    )

    ts = result.t_grid
    li = likeness_index(scores, ts, thresholds=thresholds)
    lab = _usable_labels(labels, len(ids))
    (out / "likeness.csv").write_text(_likeness_csv(ids, lab, scores, li, ts), encoding="utf-8")
    summary: dict[str, Any] = {
        "thresholds": {"resembles": thresholds[0], "convincing": thresholds[1]},
        "n_resembles": int(np.isfinite(li[:, 0]).sum()),
        "n_convincing": int(np.isfinite(li[:, 1]).sum()),
        "median_t_resembles": _nan_median(li[:, 0]),
        "median_t_convincing": _nan_median(li[:, 1]),
    }
    likeness_figure(
        likeness_curves(li, ts, lab),
        out / "likeness.png",
        thresholds=thresholds,
        title=f"{len(ids)} cells -> c={result.condition:g}",
    )
    if lab is not None:
        corr = likeness_correlations(scores, ts, lab, thresholds=thresholds)
        summary["spearman_vs_label"] = corr["all"]
        if "beyond_input" in corr:
            summary["spearman_vs_label_beyond_input"] = corr["beyond_input"]
            summary["spearman_input_score_vs_label"] = corr["input_score"]
    return summary


def _usable_labels(labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """``(n,)`` float labels, or None when there are none or none is finite."""
    if labels is None:
        return None
    lab = np.asarray(labels, dtype=np.float64).ravel()
    if lab.size != n:
        raise ValueError(f"{lab.size} labels for {n} cells")
    return lab if np.isfinite(lab).any() else None


def _likeness_csv(
    ids: list[str], lab: np.ndarray | None, scores: np.ndarray, li: np.ndarray, ts: np.ndarray
) -> str:
    """``likeness.csv``: id, [label,] score_t<t> per t, t_resembles, t_convincing."""
    cols = [f"score_t{int(t)}" for t in ts]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["id", *([] if lab is None else ["label"]), *cols, "t_resembles", "t_convincing"]
    )
    for i, oid in enumerate(ids):
        writer.writerow(
            [
                oid,
                *([] if lab is None else ["" if not np.isfinite(lab[i]) else f"{lab[i]:.6g}"]),
                *(f"{s:.6g}" for s in scores[i]),
                *("" if not np.isfinite(v) else str(int(v)) for v in li[i]),
            ]
        )
    return buf.getvalue()


def _nan_median(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if v.size else None


def _safe_names(ids: Sequence[str]) -> list[str]:
    """File-name-safe, unique versions of ids."""
    import re

    out, seen = [], set()
    for i, oid in enumerate(ids):
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", oid).strip("._") or f"cell{i}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
    return out

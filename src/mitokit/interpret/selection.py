"""Summaries of classifier scores of generated images: curves, good sets, likeness indices.

Pure numpy on score arrays, so every rule is testable on hand-made numbers:

- :func:`curve_stats`: the score-vs-condition curve of transition sets (mean, median, standard
  error per condition);
- :func:`good_sets`: the sets that make a clean transition (first score below 0.1, last above
  0.9, no step larger than 0.3: the first paper's rule, every threshold a setting);
- :func:`likeness_index`: per counterfactual cell, the earliest noise level t at which it scores
  as a mitosis (>= 0.5, "resembles") and convincingly so (>= 0.9, "convincing").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mitokit.errors import MitokitError


def _scores_2d(scores: np.ndarray, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise MitokitError(f"{what} must be a 2-D array, got shape {s.shape}")
    return s


def _spearman(x: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    """Spearman's correlation over the pairs where both are finite: ``{"rho", "p", "n"}``;
    rho and p None where fewer than 3 pairs or a constant column leave it undefined."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[keep], y[keep], int(keep.sum())
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p": None, "n": n}
    res = spearmanr(x, y)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}


def curve_stats(scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-condition mean, median and standard error of ``(n_sets, n_conditions)`` scores.

    The standard error is the sample standard deviation (ddof 1) over ``sqrt(n_sets)``; NaN for
    a single set. NaN scores are left out.

    Returns:
        ``{"mean", "median", "se", "n"}``, each of length ``n_conditions``.
    """
    s = _scores_2d(scores, "scores")
    n = np.sum(np.isfinite(s), axis=0)
    mean = np.full(s.shape[1], np.nan)
    median = np.full(s.shape[1], np.nan)
    se = np.full(s.shape[1], np.nan)
    for k in range(s.shape[1]):
        col = s[np.isfinite(s[:, k]), k]
        if col.size:
            mean[k], median[k] = col.mean(), np.median(col)
        if col.size > 1:
            se[k] = col.std(ddof=1) / np.sqrt(col.size)
    return {"mean": mean, "median": median, "se": se, "n": n}


def condition_trend(scores: np.ndarray, conditions: Sequence[float]) -> dict[str, Any]:
    """Whether the condition moves the classifier's score, within each set (same noise).

    Since the sets share their noise across conditions, the test is paired: per set the change
    from the lowest to the highest condition, and per set Spearman's correlation of score with
    condition. A model that ignores its condition gives changes centred on 0.

    Args:
        scores: ``(n_sets, n_conditions)`` scores, conditions ascending (NaN: left out).
        conditions: The conditions of the columns.

    Returns:
        ``change_mean`` and ``change_se`` (last minus first condition, mean over sets and its
        standard error), ``change_positive`` (share of sets whose score rose),
        ``wilcoxon_p`` (two-sided signed-rank test of the changes; None with fewer than two
        non-zero changes), ``spearman_mean`` (mean over sets of the within-set correlation;
        sets with a constant row left out) and ``n_sets`` (sets with both end scores).
    """
    from scipy.stats import wilcoxon

    s = _scores_2d(scores, "scores")
    c = np.asarray(conditions, dtype=np.float64).ravel()
    if c.size != s.shape[1] or c.size < 2:
        raise MitokitError(f"{c.size} conditions for {s.shape[1]} score columns (need >= 2)")
    change = s[:, -1] - s[:, 0]
    change = change[np.isfinite(change)]
    n = int(change.size)
    rhos = [r for r in (_spearman(c, row)["rho"] for row in s) if r is not None]
    p = None
    if np.count_nonzero(change) >= 2:
        p = float(wilcoxon(change).pvalue)
    return {
        "change_mean": float(change.mean()) if n else None,
        "change_se": float(change.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
        "change_positive": float(np.mean(change > 0)) if n else None,
        "wilcoxon_p": p,
        "spearman_mean": float(np.mean(rhos)) if rhos else None,
        "n_sets": n,
    }


def good_sets(
    scores: np.ndarray,
    *,
    first_below: float = 0.1,
    last_above: float = 0.9,
    max_step: float = 0.3,
) -> np.ndarray:
    """Which transition sets change cleanly from negative to positive.

    A set (one row of scores, conditions ascending) is good when its first score is below
    ``first_below``, its last above ``last_above``, and every change between neighbouring
    conditions is smaller than ``max_step`` in absolute value (no jump, no large reversal).

    Args:
        scores: ``(n_sets, n_conditions)`` classifier scores, at least two conditions.
        first_below: Bound on the score at the lowest condition (strict).
        last_above: Bound on the score at the highest condition (strict).
        max_step: Bound on every absolute step change (strict).

    Returns:
        ``(n_sets,)`` booleans.
    """
    return good_set_criteria(
        scores, first_below=first_below, last_above=last_above, max_step=max_step
    )["all"]


def good_set_criteria(
    scores: np.ndarray,
    *,
    first_below: float = 0.1,
    last_above: float = 0.9,
    max_step: float = 0.3,
) -> dict[str, np.ndarray]:
    """Each rule of :func:`good_sets` on its own: ``(n_sets,)`` booleans per rule.

    Keys ``first_below``, ``last_above`` and ``max_step``, and ``all`` (the good sets: all
    three passed). Counting the passes per rule says why a yield is low (a model whose last
    score seldom exceeds ``last_above``, or one whose score jumps between two conditions).
    """
    s = _scores_2d(scores, "scores")
    if s.shape[1] < 2:
        raise MitokitError("a transition needs at least two conditions")
    steps = np.abs(np.diff(s, axis=1))
    with np.errstate(invalid="ignore"):
        passes = {
            "first_below": s[:, 0] < first_below,
            "last_above": s[:, -1] > last_above,
            "max_step": np.all(steps < max_step, axis=1),
        }
    passes["all"] = passes["first_below"] & passes["last_above"] & passes["max_step"]
    return passes


def likeness_index(
    scores: np.ndarray,
    t_grid: Sequence[float],
    *,
    thresholds: Sequence[float] = (0.5, 0.9),
) -> np.ndarray:
    """The earliest ``t`` at which each cell's score reaches each threshold.

    Args:
        scores: ``(n_cells, n_t)`` scores of the counterfactuals, column ``k`` at ``t_grid[k]``.
        t_grid: The noise levels (any order; the earliest is the smallest t).
        thresholds: Score thresholds (``>=``); the first paper's 0.5 ("resembles") and 0.9
            ("convincing").

    Returns:
        ``(n_cells, len(thresholds))`` float: the t, or NaN where never reached.
    """
    s = _scores_2d(scores, "scores")
    t = np.asarray(t_grid, dtype=np.float64)
    if t.ndim != 1 or len(t) != s.shape[1]:
        raise MitokitError(f"{s.shape[1]} score columns for a t grid of {t.size} values")
    order = np.argsort(t, kind="stable")
    s, t = s[:, order], t[order]
    out = np.full((s.shape[0], len(thresholds)), np.nan)
    for k, thr in enumerate(thresholds):
        with np.errstate(invalid="ignore"):
            hit = s >= float(thr)
        first = np.argmax(hit, axis=1)
        reached = hit.any(axis=1)
        out[reached, k] = t[first[reached]]
    return out


def likeness_correlation(
    index: np.ndarray, labels: np.ndarray, t_grid: Sequence[float]
) -> dict[str, float | int | None]:
    """Spearman's rank correlation between the cells' labels and their likeness index.

    A cell that never reaches the threshold ranks after the largest ``t`` of the grid (ties
    among themselves): it needs more noise than any level tried. Cells without a finite label
    are left out. The first paper's expectation, for labels = the fraction of raters calling a
    cell mitotic (or atypical): a negative correlation, since a cell more raters call so should
    need less noise to turn.

    Args:
        index: ``(n_cells,)`` likeness index (a column of :func:`likeness_index`; NaN = never).
        labels: ``(n_cells,)`` label per cell.
        t_grid: The noise levels the index was read from.

    Returns:
        ``{"rho", "p", "n"}``; rho and p None where fewer than 3 cells or a constant column
        leave the correlation undefined.
    """
    idx = np.asarray(index, dtype=np.float64).ravel()
    lab = np.asarray(labels, dtype=np.float64).ravel()
    if idx.shape != lab.shape:
        raise MitokitError(f"{idx.size} likeness values for {lab.size} labels")
    never = float(np.max(np.asarray(t_grid, dtype=np.float64))) + 1.0
    return _spearman(lab, np.where(np.isfinite(idx), idx, never))


def likeness_correlations(
    scores: np.ndarray,
    t_grid: Sequence[float],
    labels: np.ndarray,
    *,
    thresholds: Sequence[float] = (0.5, 0.9),
    names: Sequence[str] = ("resembles", "convincing"),
) -> dict[str, Any]:
    """Spearman's correlations of the likeness indices with the cells' labels, and what they add.

    A cell whose input already scores above a threshold gets index ``t = 0`` from the classifier
    alone, so the plain correlation mixes the classifier's view of the real cell with what the
    diffusion model adds. Where ``t_grid`` holds 0 (the input), two more entries separate them:
    ``beyond_input`` (per threshold, the correlation over the cells whose input scores below it:
    how much noise the model needs to turn a cell the classifier does not yet call so) and
    ``input_score`` (Spearman of the input's score with the label, positive when the classifier
    agrees with the raters).

    Args:
        scores: ``(n_cells, n_t)`` scores, column ``k`` at ``t_grid[k]``.
        t_grid: The noise levels.
        labels: ``(n_cells,)`` labels (NaN where unknown).
        thresholds: Score thresholds of the indices.
        names: One name per threshold.

    Returns:
        ``{"all": {name: corr}, "beyond_input": {name: corr}, "input_score": corr}`` (the last
        two only with t = 0 in the grid); each ``corr`` as :func:`likeness_correlation` gives.
    """
    s = _scores_2d(scores, "scores")
    lab = np.asarray(labels, dtype=np.float64).ravel()
    if lab.size != s.shape[0]:
        raise MitokitError(f"{lab.size} labels for {s.shape[0]} cells")
    if len(names) != len(thresholds):
        raise MitokitError(f"{len(names)} names for {len(thresholds)} thresholds")
    ts = np.asarray(t_grid, dtype=np.float64)
    li = likeness_index(s, ts, thresholds=thresholds)
    out: dict[str, Any] = {
        "all": {n: likeness_correlation(li[:, k], lab, ts) for k, n in enumerate(names)}
    }
    at_input = np.flatnonzero(ts == 0)
    if at_input.size:
        first = s[:, at_input[0]]
        out["beyond_input"] = {
            n: likeness_correlation(li[:, k], np.where(first < float(thr), lab, np.nan), ts)
            for k, (n, thr) in enumerate(zip(names, thresholds, strict=True))
        }
        out["input_score"] = _spearman(lab, first)
    return out


def parse_grid(text: str, *, what: str = "grid", integer: bool = False) -> np.ndarray:
    """``start:stop:step`` (inclusive of ``stop``) or ``a,b,c`` as a sorted array.

    Raises:
        MitokitError: Not of that form, a step <= 0, or an empty grid.
    """
    raw = str(text).strip()
    try:
        if ":" in raw:
            parts = [float(p) for p in raw.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0:
                raise MitokitError(f"{what} {text!r}: the step must be > 0")
            n = int(np.floor((stop - start) / step + 1e-9)) + 1
            values = start + step * np.arange(max(n, 0))
        else:
            values = np.array([float(p) for p in raw.split(",") if p.strip()])
    except ValueError:
        raise MitokitError(
            f"{what} {text!r}: expected start:stop:step (e.g. 0:1:0.1) or a list a,b,c"
        ) from None
    if values.size == 0:
        raise MitokitError(f"{what} {text!r} is empty")
    values = np.round(values, 10)
    if integer:
        if not np.allclose(values, np.round(values)):
            raise MitokitError(f"{what} {text!r} must hold integers")
        values = np.round(values).astype(np.int64)
    return np.unique(values)


def likeness_curves(
    index: np.ndarray,
    t_grid: Sequence[float],
    labels: np.ndarray | None = None,
    *,
    max_groups: int = 6,
) -> dict[str, dict[str, Any]]:
    """Per label group, the fraction of cells whose likeness index is <= each t of the grid.

    Args:
        index: ``(n_cells, k)`` likeness indices (:func:`likeness_index`; NaN: never).
        t_grid: The noise levels.
        labels: ``(n_cells,)`` labels (NaN: unknown, left out), or None for one group of all.
            Up to ``max_groups`` distinct values make one group each; more are cut at their
            quartiles.

    Returns:
        Group name -> ``{"n": cells, "t": sorted grid, "fraction": (k, n_t) array}``.
    """
    idx = np.asarray(index, dtype=np.float64)
    if idx.ndim == 1:
        idx = idx[:, None]
    t = np.sort(np.asarray(t_grid, dtype=np.float64))
    if labels is None:
        groups = {"all cells": np.ones(idx.shape[0], dtype=bool)}
    else:
        lab = np.asarray(labels, dtype=np.float64).ravel()
        if lab.size != idx.shape[0]:
            raise MitokitError(f"{lab.size} labels for {idx.shape[0]} cells")
        known = np.isfinite(lab)
        values = np.unique(lab[known])
        if values.size <= max_groups:
            groups = {f"label {v:.3g}": known & (lab == v) for v in values}
        else:
            edges = np.quantile(lab[known], [0.25, 0.5, 0.75])
            bins = np.digitize(lab, edges)
            groups = {}
            for b in range(len(edges) + 1):
                sel = known & (bins == b)
                if sel.any():
                    groups[f"label in [{lab[sel].min():.3g}, {lab[sel].max():.3g}]"] = sel
    out: dict[str, dict[str, Any]] = {}
    for name, sel in groups.items():
        sub = idx[sel]
        with np.errstate(invalid="ignore"):
            frac = (sub[:, :, None] <= t[None, None, :]).mean(axis=0) if len(sub) else None
        if frac is not None:
            out[name] = {"n": int(sel.sum()), "t": t, "fraction": frac}
    return out


__all__ = [
    "curve_stats",
    "good_set_criteria",
    "good_sets",
    "likeness_curves",
    "likeness_index",
    "parse_grid",
]

"""Detection metrics: one-to-one point matching within a radius, and F1 as MIDOG computes it.

A prediction is a true positive when it is matched to a ground-truth mitosis whose centre lies
within the matching radius (distance ``<= radius``, the boundary counts as a hit). Matching is
one-to-one and *optimal*: among all assignments it first maximises the number of matched pairs and
then, among those, minimises the summed distance. Greedy nearest-first matching can find fewer
pairs (a prediction grabs the only truth that another prediction could have reached); the optimal
assignment never does.

Two matching rules are offered (``matching=``):

* ``"optimal"`` (the default): the one-to-one assignment above.
* ``"midog"``: the rule of the official MIDOG scorer, evalutils' ``score_detection``
  (evalutils 0.4.2, ``evalutils/scorers.py``). The truth points are taken in their order; for each,
  the predictions within the radius (inclusive, found with scikit-learn's ``BallTree.query_radius``
  with ``sort_results=True``, nearest first) are walked and the first one no earlier truth point
  claimed is claimed; a truth point that finds none is a false negative. Predictions never claimed
  are false positives. Ties in distance are broken in the order ``BallTree`` returns them, which is
  why the same ``BallTree`` call is made here: the counts equal ``score_detection`` on the same
  coordinates (the tests compare them on hundreds of random crowded point sets). This greedy rule
  can find fewer true positives than the optimal one, never more.

The radius is usually given in micrometres (7.5 um, the MIDOG convention) and converted with the
slide's microns-per-pixel; see :func:`radius_to_px`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching
from scipy.spatial import cKDTree

from mitokit.errors import MitokitError

DEFAULT_RADIUS_UM = 7.5
"""The matching radius of the MIDOG challenges, in micrometres (about 30 px at 0.25 um/px)."""

MATCHING_RULES = ("optimal", "midog")
"""The matching rules: optimal one-to-one assignment, or the MIDOG scorer's greedy rule."""

Matching = Literal["optimal", "midog"]

# --------------------------------------------------------------------------------------------
# Radius


def radius_to_px(
    radius_um: float | None = None,
    radius_px: float | None = None,
    mpp: float | None = None,
) -> float:
    """The matching radius in pixels, from micrometres and mpp or given directly in pixels.

    Args:
        radius_um: Radius in micrometres; needs ``mpp``. When neither radius is given, the
            MIDOG default of 7.5 um is used (which also needs ``mpp``).
        radius_px: Radius in level-0 pixels; used as is.
        mpp: Microns per pixel at level 0.

    Returns:
        The radius in pixels (``radius_um / mpp`` or ``radius_px``).

    Raises:
        MitokitError: Both radii are given, a value is not positive and finite, or a radius in
            micrometres is asked for without an mpp.
    """
    if radius_um is not None and radius_px is not None:
        raise MitokitError("give the radius either in micrometres or in pixels, not both")
    if radius_px is not None:
        return _positive(radius_px, "radius in pixels")
    um = DEFAULT_RADIUS_UM if radius_um is None else _positive(radius_um, "radius in micrometres")
    if mpp is None:
        raise MitokitError(
            f"a radius of {um:g} um needs the microns per pixel: pass mpp or a radius in pixels"
        )
    return um / _positive(mpp, "mpp")


def _positive(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MitokitError(f"{what} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise MitokitError(f"{what} must be positive and finite, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# Point matching


class PointMatching(NamedTuple):
    """The result of :func:`match_points`.

    Attributes:
        pairs: ``(K, 2)`` int array of matched ``(pred_index, truth_index)``, sorted by prediction.
        unmatched_pred: Indices of predictions without a partner (false positives), ascending.
        unmatched_truth: Indices of truth points without a partner (false negatives), ascending.
    """

    pairs: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_truth: np.ndarray


def match_points(
    pred_xy: Any, truth_xy: Any, *, radius_px: float, matching: Matching = "optimal"
) -> PointMatching:
    """Match predicted to true points one-to-one within a radius.

    With ``matching="midog"`` the pairs are those of the MIDOG scorer (see the module docstring):
    truth points in order, each claiming the nearest prediction within the radius that no earlier
    truth point claimed.

    With ``matching="optimal"`` (the default) the assignment maximises the number of pairs whose
    distance is ``<= radius_px`` and, among the assignments with that many pairs, minimises the
    summed distance. Points are split into groups connected by within-radius pairs, and each group
    is solved with :func:`scipy.optimize.linear_sum_assignment` on its dense distance matrix, where
    pairs beyond the radius cost more than any set of allowed pairs could (so one more pair always
    beats any saving in distance). The work therefore grows with the size of the crowded
    neighbourhoods, not with ``N * M``.

    Args:
        pred_xy: ``(N, 2)`` predicted points (x, y) in pixels; an empty list is allowed.
        truth_xy: ``(M, 2)`` true points (x, y) in pixels.
        radius_px: Largest distance, in pixels, at which a pair still matches (inclusive).
        matching: ``"optimal"`` or ``"midog"``.

    Returns:
        The matched pairs and the unmatched indices of both sides.

    Raises:
        ValueError: An array is not ``(n, 2)`` or holds non-finite values, the radius is
            negative or not finite, or the matching rule is unknown.
    """
    pred = _as_xy(pred_xy, "pred_xy")
    truth = _as_xy(truth_xy, "truth_xy")
    radius = _check_radius(radius_px)
    if _check_matching(matching) == "midog":
        mp, mt = _midog_pairs(pred, truth, radius)
    else:
        pi, ti, dist = _candidate_pairs(pred, truth, radius)
        mp, mt = _optimal_pairs(pi, ti, dist, radius)
    order = np.argsort(mp, kind="stable")
    pairs = np.stack([mp[order], mt[order]], axis=1).astype(np.intp).reshape(-1, 2)
    unmatched_pred = np.setdiff1d(np.arange(len(pred)), mp, assume_unique=True)
    unmatched_truth = np.setdiff1d(np.arange(len(truth)), mt, assume_unique=True)
    return PointMatching(pairs, unmatched_pred.astype(np.intp), unmatched_truth.astype(np.intp))


def _as_xy(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.empty((0, 2), dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite coordinates")
    return arr


def _check_radius(radius_px: float) -> float:
    radius = float(radius_px)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius_px must be finite and >= 0, got {radius_px!r}")
    return radius


def _check_matching(matching: str) -> str:
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {', '.join(MATCHING_RULES)}, got {matching!r}")
    return matching


def _midog_pairs(
    pred: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of evalutils' ``score_detection``: truth in order, nearest unclaimed prediction.

    The hits of each truth point come from the same scikit-learn call evalutils makes
    (``BallTree(pred).query_radius(truth, r, return_distance=True, sort_results=True)``), so the
    inclusive boundary and the order of equidistant predictions are exactly the scorer's.
    """
    if len(pred) == 0 or len(truth) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    from sklearn.neighbors import BallTree

    hits, _ = BallTree(pred).query_radius(truth, r=radius, return_distance=True, sort_results=True)
    claimed = np.zeros(len(pred), dtype=bool)
    out_p: list[int] = []
    out_t: list[int] = []
    for j, hit in enumerate(hits):
        for i in hit:
            if not claimed[i]:
                claimed[i] = True
                out_p.append(int(i))
                out_t.append(j)
                break
    return np.asarray(out_p, dtype=np.intp), np.asarray(out_t, dtype=np.intp)


def _candidate_pairs(
    pred: np.ndarray, truth: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred, truth) index pairs at distance <= radius, with their distances."""
    if len(pred) == 0 or len(truth) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, np.empty(0, dtype=float)
    # Query a hair wider, then decide on the exact Euclidean distance so the boundary is exact.
    slack = radius * 1e-9 + 1e-9
    found = cKDTree(pred).sparse_distance_matrix(
        cKDTree(truth), radius + slack, output_type="ndarray"
    )
    pi = found["i"].astype(np.intp)
    ti = found["j"].astype(np.intp)
    delta = pred[pi] - truth[ti]
    dist = np.hypot(delta[:, 0], delta[:, 1])
    keep = dist <= radius
    return pi[keep], ti[keep], dist[keep]


def _optimal_pairs(
    pi: np.ndarray, ti: np.ndarray, dist: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the assignment on the candidate edges, one connected group at a time."""
    if len(pi) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    preds, p_local = np.unique(pi, return_inverse=True)
    truths, t_local = np.unique(ti, return_inverse=True)
    n_p = len(preds)
    n_nodes = n_p + len(truths)
    graph = coo_matrix((np.ones(len(pi)), (p_local, t_local + n_p)), shape=(n_nodes, n_nodes))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[p_local]
    out_p: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    for edges in np.split(order, bounds):
        if len(edges) == 1:  # an isolated pair: nothing to decide
            out_p.append(pi[edges])
            out_t.append(ti[edges])
            continue
        rows, r_inv = np.unique(pi[edges], return_inverse=True)
        cols, c_inv = np.unique(ti[edges], return_inverse=True)
        # A forbidden pair must cost more than the largest saving in distance any assignment
        # could make (at most min(rows, cols) * radius), so the count of pairs comes first.
        big = (min(len(rows), len(cols)) + 1) * (radius + 1.0)
        cost = np.full((len(rows), len(cols)), big)
        allowed = np.zeros((len(rows), len(cols)), dtype=bool)
        cost[r_inv, c_inv] = dist[edges]
        allowed[r_inv, c_inv] = True
        r, c = linear_sum_assignment(cost)
        ok = allowed[r, c]
        out_p.append(rows[r[ok]])
        out_t.append(cols[c[ok]])
    return np.concatenate(out_p), np.concatenate(out_t)


def _max_matching_size(pi: np.ndarray, ti: np.ndarray, n_pred: int, n_truth: int) -> int:
    """Size of a maximum one-to-one matching on the given (pred, truth) edges."""
    if len(pi) == 0:
        return 0
    graph = csr_matrix((np.ones(len(pi), dtype=np.int8), (pi, ti)), shape=(n_pred, n_truth))
    matched = maximum_bipartite_matching(graph, perm_type="column")
    return int((matched >= 0).sum())


__all__ = [
    "DEFAULT_RADIUS_UM",
    "MATCHING_RULES",
    "Matching",
    "PointMatching",
    "match_points",
    "radius_to_px",
]

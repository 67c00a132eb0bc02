"""Hard-core packing of synthetic cells: nuclei touch but rarely overlap.

Cells are first drawn as a Poisson process and then thinned by random sequential packing
(``_hard_core``): in priority order, a cell is kept unless it comes too close to one already
kept. ``_hard_core_density`` gives the Poisson intensity whose packing keeps a wanted density,
from a calibration of that packing against the jamming density of disks.
"""

from __future__ import annotations

import math

import numpy as np

from mitokit.data.synthetic.cells import APOPTOTIC, MITOTIC, NORMAL, CellTable

# Random sequential packing of candidates from a Poisson process of intensity x * J, where
# J = 0.547 / (pi d^2 / 4) is the jamming density of disks of the mean diameter d, keeps y * J
# (measured with the scene's radius spread; y -> ~0.8 as x grows).
_RSA_X = (0.0, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0, 8.0)
_RSA_Y = (0.0, 0.223, 0.359, 0.463, 0.542, 0.611, 0.680, 0.746)


def _hard_core_density(target: float, d_mm: float) -> float:
    """Poisson intensity whose hard-core packing at mean distance ``d_mm`` keeps ``target``
    per mm^2 (calibrated; saturates near 75 % of the jamming density)."""
    if target <= 0:
        return 0.0
    jam = 0.547 / (math.pi * d_mm * d_mm / 4.0)
    return float(np.interp(target / jam, _RSA_Y, _RSA_X)) * jam


def _hard_core(cells: CellTable, priority: np.ndarray, packing: float) -> np.ndarray:
    """Random sequential packing: keep cells in priority order, skipping any that comes too close
    to one already kept (two nuclei closer than ``packing * (r_i + r_j)``).

    Computed as a maximal independent set of the conflict graph (Luby's rounds, vectorised), which
    is the same as processing the cells one by one in priority order. Mitoses and imposters take
    precedence and keep a wider berth (their clear cell body or retraction halo), so ordinary
    neighbours do not cover them.
    """
    n = len(cells)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    from scipy.spatial import cKDTree

    r = cells.radius.astype(np.float64) * np.sqrt(np.minimum(cells.elongation, 2.0))
    reach = np.where(cells.kind == MITOTIC, 1.8, np.where(cells.kind == APOPTOTIC, 2.2, 1.0)) * r
    prio = priority + (cells.kind != NORMAL)
    pts = np.stack([cells.x, cells.y], axis=1)
    pairs = cKDTree(pts).query_pairs(packing * 2 * float(reach.max()), output_type="ndarray")
    if len(pairs) == 0:
        return keep
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.hypot(pts[i, 0] - pts[j, 0], pts[i, 1] - pts[j, 1])
    close = d < packing * (reach[i] + reach[j])
    i, j = i[close], j[close]
    # orient each conflict from the higher to the lower priority cell
    first = prio[i] >= prio[j]
    hi = np.where(first, i, j)
    lo = np.where(first, j, i)
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 dropped
    while len(hi):
        # undecided cells with no undecided higher-priority conflict are kept ...
        blocked = np.zeros(n, bool)
        blocked[lo] = True
        kept = (state == 0) & ~blocked
        state[kept] = 1
        # ... and their lower-priority conflicts dropped
        state[lo[kept[hi]]] = -1
        live = (state[hi] == 0) & (state[lo] == 0)
        hi, lo = hi[live], lo[live]
    return state >= 0

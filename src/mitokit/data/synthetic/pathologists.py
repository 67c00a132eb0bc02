"""Pathologists rating every cell of a synthetic scene (the meningioma study's labels).

A :class:`RaterPanel` of ``n_raters`` raters gives each cell 0 / 0.5 / 1 (or 0 / 1) from a
noisy, biased view of its latent mitosis score ``m``; some cells are rated again, up to
``max_repeats`` times per rater, each time with fresh intra-rater noise
(:func:`rate_pathologists`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mitokit.data.synthetic._draws import Seed, _check, _check_positive_int, _rng
from mitokit.data.synthetic.cells import CellTable
from mitokit.io.annotations import Vote

__all__ = ["RaterPanel", "Scale", "rate_pathologists"]

Scale = Literal["three", "binary"]


@dataclass(frozen=True)
class RaterPanel:
    """A panel of pathologists rating every cell.

    Rating ``k`` of cell ``c`` by rater ``r`` is drawn from the view
    ``v = m_c + b_r + noise * (sqrt(1 - intra_share) * e_rc + sqrt(intra_share) * u_rck)`` with
    standard normal ``e`` (the rater's lasting impression of the cell) and ``u`` (drawn afresh at
    every rating: intra-rater noise). On the ``"three"`` scale the view gives 0 below
    ``thresholds[0]``, 1 above ``thresholds[1]`` and 0.5 (unsure) in between, bounds included;
    on the ``"binary"`` scale it gives 1 above the midpoint of the thresholds (0.5 by default)
    and 0 otherwise.

    The default panel has three raters rather than the meningioma study's two: an odd panel
    gives binary majorities without ties and Fleiss' kappa more ratings per object to work on.
    :meth:`meningioma` gives the study's set-up.

    Attributes:
        n_raters: Number of pathologists (ids ``pathologist1``, ``pathologist2``, ...).
        noise: Standard deviation of each rating's view of ``m`` (0 = perfect raters). The
            default, 0.12, leaves about a third of the cells of a uniform ``m`` with a split vote.
        bias_sd: Standard deviation of each rater's shift ``b_r`` (a lenient or strict rater),
            drawn per panel; ignored when ``biases`` is given.
        biases: The raters' shifts, one per rater, or None to draw them.
        thresholds: (low, high) cut points of the view on the 0 / 0.5 / 1 scale.
        scale: ``"three"`` for 0 / 0.5 / 1 votes, ``"binary"`` for 0 / 1 votes.
        repeat_fraction: Share of cells rated again; each rater rates such a cell between 2 and
            ``max_repeats`` times (uniformly), every other cell once.
        max_repeats: Most ratings of one cell by one rater.
        intra_share: Share of the noise variance drawn afresh at every rating; the rest is the
            rater's lasting view of the cell, so repeats agree more than different raters do.
    """

    n_raters: int = 3
    noise: float = 0.12
    bias_sd: float = 0.05
    biases: tuple[float, ...] | None = None
    thresholds: tuple[float, float] = (0.4, 0.6)
    scale: Scale = "three"
    repeat_fraction: float = 0.2
    max_repeats: int = 3
    intra_share: float = 0.5

    def __post_init__(self) -> None:
        _check_positive_int(self.n_raters, "n_raters")
        _check(np.isfinite(self.noise) and self.noise >= 0, f"noise must be >= 0, not {self.noise}")
        _check(
            np.isfinite(self.bias_sd) and self.bias_sd >= 0,
            f"bias_sd must be >= 0, not {self.bias_sd}",
        )
        if self.biases is not None:
            _check(
                len(self.biases) == self.n_raters,
                f"{len(self.biases)} biases for {self.n_raters} raters",
            )
            _check(all(np.isfinite(b) for b in self.biases), "biases must be finite")
        low, high = self.thresholds
        _check(
            np.isfinite(low) and np.isfinite(high) and low <= high,
            f"thresholds must be finite with low <= high, not {self.thresholds}",
        )
        _check(
            self.scale in ("three", "binary"), f"scale must be three or binary, not {self.scale!r}"
        )
        _check(
            0.0 <= self.repeat_fraction <= 1.0,
            f"repeat_fraction must be in [0, 1], not {self.repeat_fraction}",
        )
        _check_positive_int(self.max_repeats, "max_repeats")
        _check(
            self.repeat_fraction == 0 or self.max_repeats >= 2,
            "repeat_fraction > 0 needs max_repeats >= 2",
        )
        _check(
            0.0 <= self.intra_share <= 1.0,
            f"intra_share must be in [0, 1], not {self.intra_share}",
        )

    @classmethod
    def meningioma(cls, **changes) -> RaterPanel:
        """The meningioma study's set-up: two pathologists, a cell rated up to three times."""
        return cls(**{"n_raters": 2, "max_repeats": 3, "repeat_fraction": 0.3, **changes})

    @property
    def rater_ids(self) -> tuple[str, ...]:
        """``pathologist1`` ... ``pathologistR``."""
        return tuple(f"pathologist{r + 1}" for r in range(self.n_raters))

    def score(self, view: np.ndarray) -> np.ndarray:
        """Votes (0 / 0.5 / 1, or 0 / 1) of views of ``m``."""
        view = np.asarray(view, dtype=np.float64)
        low, high = self.thresholds
        if self.scale == "binary":
            return (view > (low + high) / 2.0).astype(np.float64)
        return np.where(view < low, 0.0, np.where(view > high, 1.0, 0.5))


def rate_pathologists(
    cells: CellTable, *, panel: RaterPanel | None = None, seed: Seed
) -> list[tuple[Vote, ...]]:
    """Votes of a pathologist panel on every cell.

    Args:
        cells: The truth.
        panel: The raters; :class:`RaterPanel` defaults when None.
        seed: Seed of the draws.

    Returns:
        One tuple of votes per cell, in the table's order: each rater's ratings together, raters
        in order ``pathologist1``, ``pathologist2``, ...; a re-rated cell has a rater's repeats
        one after the other.
    """
    panel = RaterPanel() if panel is None else panel
    rng = _rng(seed)
    n, R, K = len(cells), panel.n_raters, panel.max_repeats
    if panel.biases is not None:
        bias = np.asarray(panel.biases, dtype=np.float64)
    else:
        bias = rng.normal(0.0, panel.bias_sd, size=R) if panel.bias_sd > 0 else np.zeros(R)
    lasting = rng.standard_normal((n, R, 1))
    fresh = rng.standard_normal((n, R, K))
    noise = np.sqrt(1.0 - panel.intra_share) * lasting + np.sqrt(panel.intra_share) * fresh
    m = np.asarray(cells.m, dtype=np.float64)
    view = m[:, None, None] + bias[None, :, None] + panel.noise * noise
    values = panel.score(view)
    repeated = rng.random(n) < panel.repeat_fraction
    counts = np.ones((n, R), dtype=np.int64)
    if K >= 2:
        extra = rng.integers(2, K + 1, size=(n, R))
        counts = np.where(repeated[:, None], extra, counts)
    ids = panel.rater_ids
    return [
        tuple(Vote(ids[r], float(values[i, r, k])) for r in range(R) for k in range(counts[i, r]))
        for i in range(n)
    ]

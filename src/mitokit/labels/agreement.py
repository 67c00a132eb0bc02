"""Agreement between raters: Fleiss' kappa (statsmodels) and Krippendorff's alpha (krippendorff).

Votes are categorical on the values they take (0 / 0.5 / 1 for probabilistic labels, 0 / 1 for
binary ones). Both measures are computed from a units x values count table, so repeated ratings of
one object by the same rater count as ratings, consistently with ``repeats="pool"``.

Fleiss' kappa assumes every object received the same number of ratings. Where they all did, it is
the data set's kappa. Where the number varies (MIDOG++ asked a third rater only where the first
two disagreed) it cannot be: kappa over the objects with the most common number of ratings is
kept apart as ``fleiss_kappa_subset``, with the objects it covers, and ``fleiss_kappa`` is NaN;
such a subset can be unanimous by construction (kappa 1.0) and says nothing of the data set.
Krippendorff's alpha allows a varying number of ratings per object (missing ratings) and uses
every object with two ratings or more: it is the figure to quote then (though a rater asked only
on disagreement still biases it towards disagreement).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from mitokit.io.annotations import AnnotationSet, Vote

Level = Literal["nominal", "ordinal", "interval"]


@dataclass(frozen=True)
class Agreement:
    """Agreement figures of a set of rated objects.

    Attributes:
        fleiss_kappa: Fleiss' kappa over every rated object; NaN where it cannot be computed,
            including where objects carry different numbers of ratings.
        fleiss_kappa_subset: Fleiss' kappa over the objects with the modal number of ratings
            only (equal to ``fleiss_kappa`` where the number does not vary).
        fleiss_objects: Objects used for the subset kappa (those with the modal number).
        ratings_per_object: That modal number of ratings.
        rated_objects: Objects with two ratings or more.
        ratings_vary: Whether rated objects carry different numbers of ratings.
        krippendorff_alpha: Krippendorff's alpha at ``level``, NaN where it cannot be computed.
        alpha_objects: Objects used for alpha (two ratings or more).
        level: Level of measurement used for alpha.
        unanimous_fraction: Share of objects with two ratings or more whose ratings all agree.
        values: The vote values seen, in order (the categories).
    """

    fleiss_kappa: float
    fleiss_objects: int
    ratings_per_object: int
    krippendorff_alpha: float
    alpha_objects: int
    level: str
    unanimous_fraction: float
    values: tuple[float, ...]
    fleiss_kappa_subset: float = float("nan")
    rated_objects: int = 0
    ratings_vary: bool = False

    def describe(self) -> str:
        """One line saying each figure and the objects it covers."""

        def fmt(v: float) -> str:
            return "n/a" if not np.isfinite(v) else f"{v:.3f}"

        alpha = f"Krippendorff alpha {fmt(self.krippendorff_alpha)} ({self.alpha_objects} objects)"
        if not self.ratings_vary:
            return f"Fleiss kappa {fmt(self.fleiss_kappa)} ({self.fleiss_objects} objects), {alpha}"
        return (
            f"{alpha}; Fleiss kappa n/a: ratings per object vary, and over only the "
            f"{self.fleiss_objects} of {self.rated_objects} objects with "
            f"{self.ratings_per_object} ratings it is {fmt(self.fleiss_kappa_subset)}, "
            "not the data set's agreement"
        )

    def to_dict(self) -> dict:
        """JSON-friendly dict (NaN becomes None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not np.isfinite(value):
                out[key] = None
        out["values"] = list(self.values)
        return out


def count_table(vote_lists: Sequence[Sequence[Vote]]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Units x values table of rating counts, and the values (categories) in sorted order."""
    values = sorted({float(v.value) for votes in vote_lists for v in votes})
    index = {value: j for j, value in enumerate(values)}
    table = np.zeros((len(vote_lists), len(values)), dtype=np.int64)
    for i, votes in enumerate(vote_lists):
        for v in votes:
            table[i, index[float(v.value)]] += 1
    return table, tuple(values)


def fleiss_kappa(table: np.ndarray) -> tuple[float, int, int]:
    """Fleiss' kappa over the rows with the modal number of ratings (>= 2).

    Returns:
        (kappa, rows used, ratings per row). Kappa is NaN with fewer than one usable row or a
        single category (no variation to agree on).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    n = table.sum(axis=1)
    counts = Counter(int(k) for k in n if k >= 2)
    if not counts:
        return float("nan"), 0, 0
    modal, _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    rows = table[n == modal]
    if (rows.sum(axis=0) > 0).sum() < 2:
        return float("nan"), int(len(rows)), modal
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = float(_fleiss(rows, method="fleiss"))
    return kappa, int(len(rows)), modal


def krippendorff_alpha(
    table: np.ndarray, values: Sequence[float], *, level: Level = "nominal"
) -> tuple[float, int]:
    """Krippendorff's alpha from a units x values count table (rows with >= 2 ratings).

    Returns:
        (alpha, rows used); NaN with no pairable rows or a single value.
    """
    import krippendorff

    rows = table[table.sum(axis=1) >= 2]
    if len(rows) == 0 or (rows.sum(axis=0) > 0).sum() < 2:
        return float("nan"), int(len(rows))
    alpha = krippendorff.alpha(
        value_counts=rows, value_domain=list(values), level_of_measurement=level
    )
    return float(alpha), int(len(rows))


def agreement(annotations: AnnotationSet | Sequence[Sequence[Vote]], *, level: Level = "nominal"):
    """Fleiss' kappa, Krippendorff's alpha and the unanimous share of a set's votes.

    Args:
        annotations: An AnnotationSet, or one sequence of votes per object.
        level: Krippendorff level of measurement; ``ordinal`` suits the 0 / 0.5 / 1 scale.

    Returns:
        An :class:`Agreement`.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"level must be nominal, ordinal or interval, not {level!r}")
    if isinstance(annotations, AnnotationSet):
        vote_lists = [a.votes for a in annotations if a.votes]
    else:
        vote_lists = [v for v in annotations if len(v)]
    table, values = count_table(vote_lists)
    subset, k_rows, per_object = fleiss_kappa(table)
    alpha, a_rows = krippendorff_alpha(table, values, level=level)
    rated = table[table.sum(axis=1) >= 2]
    unanimous = float(np.mean((rated > 0).sum(axis=1) == 1)) if len(rated) else float("nan")
    vary = len(set(rated.sum(axis=1).tolist())) > 1
    kappa = float("nan") if vary else subset
    return Agreement(
        kappa,
        k_rows,
        per_object,
        alpha,
        a_rows,
        level,
        unanimous,
        values,
        fleiss_kappa_subset=subset,
        rated_objects=int(len(rated)),
        ratings_vary=vary,
    )

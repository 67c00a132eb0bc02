"""Per-rater votes -> probabilistic score, majority class and agreement.

The probabilistic label of an object is the mean of its votes on the 0 / 0.5 / 1 scale (0 = not a
mitosis, 0.5 = unsure, 1 = mitosis). Where a rater rated the same object several times (the
meningioma study had two pathologists rate each cell up to three times), every rating counts as a
vote of its own by default (``repeats="pool"``), so a rater who said "1" three times weighs three
times. ``repeats="rater_mean"`` averages each rater's ratings first, giving every rater one voice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mitokit.io.annotations import AnnotationSet, Vote

Repeats = Literal["pool", "rater_mean"]
Tie = Literal["negative", "positive", "none"]


@dataclass(frozen=True)
class VoteSummary:
    """What the votes of one object say.

    Attributes:
        score: Probabilistic label in [0, 1] (mean vote), NaN without votes.
        majority: 1 (positive), 0 (negative), or None for a tie with ``tie="none"`` or no votes.
        agreement: ``max(score, 1 - score)``: the share of the vote mass behind the majority,
            1.0 when unanimous, 0.5 when split evenly; NaN without votes.
        n_votes: Number of ratings.
        n_raters: Number of distinct raters.
    """

    score: float
    majority: int | None
    agreement: float
    n_votes: int
    n_raters: int


def rater_values(votes: Iterable[Vote]) -> dict[str, list[float]]:
    """Group vote values by rater, keeping repeats in order."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for vote in votes:
        grouped[vote.rater].append(float(vote.value))
    return dict(grouped)


def aggregate_votes(
    votes: Sequence[Vote], *, repeats: Repeats = "pool", tie: Tie = "negative"
) -> VoteSummary:
    """Aggregate one object's votes.

    Args:
        votes: The object's votes; repeated votes of one rater allowed.
        repeats: ``"pool"`` counts every rating; ``"rater_mean"`` averages per rater first.
        tie: Majority class when the score is exactly 0.5.

    Returns:
        The object's :class:`VoteSummary`.
    """
    if repeats not in ("pool", "rater_mean"):
        raise ValueError(f"repeats must be 'pool' or 'rater_mean', not {repeats!r}")
    if tie not in ("negative", "positive", "none"):
        raise ValueError(f"tie must be 'negative', 'positive' or 'none', not {tie!r}")
    by_rater = rater_values(votes)
    if not votes:
        return VoteSummary(float("nan"), None, float("nan"), 0, 0)
    if repeats == "pool":
        score = float(np.mean([v.value for v in votes]))
    else:
        score = float(np.mean([np.mean(vals) for vals in by_rater.values()]))
    if score > 0.5:
        majority: int | None = 1
    elif score < 0.5:
        majority = 0
    else:
        majority = {"negative": 0, "positive": 1, "none": None}[tie]
    return VoteSummary(score, majority, max(score, 1.0 - score), len(votes), len(by_rater))


def aggregate(annotations: AnnotationSet, *, repeats: Repeats = "pool", tie: Tie = "negative"):
    """Aggregate the votes of every object of a set into a table.

    Returns:
        A pandas DataFrame with one row per annotation: ``id``, ``image``, ``label``,
        ``n_votes``, ``n_raters``, ``score``, ``majority`` (nullable Int64), ``agreement``.
        Objects without votes have NaN score and agreement.
    """
    import pandas as pd

    rows = []
    for ann in annotations:
        s = aggregate_votes(ann.votes, repeats=repeats, tie=tie)
        rows.append(
            {
                "id": ann.id,
                "image": ann.image,
                "label": ann.label,
                "n_votes": s.n_votes,
                "n_raters": s.n_raters,
                "score": s.score,
                "majority": s.majority,
                "agreement": s.agreement,
            }
        )
    columns = ["id", "image", "label", "n_votes", "n_raters", "score", "majority", "agreement"]
    table = pd.DataFrame(rows, columns=columns)
    table["majority"] = table["majority"].astype("Int64")
    return table


def object_scores(annotations: AnnotationSet, *, repeats: Repeats = "pool") -> np.ndarray:
    """The probabilistic score of every object: mean vote, else its agreement, else NaN.

    Sources without votes often carry the fraction of raters who called the object a mitosis as
    its agreement (MITOS-ATYPIA-14 confidences, crowd agreement), which is the same quantity.
    """
    out = np.full(len(annotations), np.nan)
    for i, ann in enumerate(annotations):
        if ann.votes:
            out[i] = aggregate_votes(ann.votes, repeats=repeats).score
        elif ann.agreement is not None:
            out[i] = ann.agreement
    return out

"""Consensus and image-level labels from pathologists' votes.

- Binary **consensus** labels per cell (as CCMCT) and consensus **centroids** (as TUPAC16)
  (:func:`consensus`, :func:`consensus_centroids`).
- **Image-level presence** (the weak-label study): an image is positive when it holds at least
  one positive cell (:func:`image_presence`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from mitokit.data.synthetic._draws import _as_flags, _check
from mitokit.data.synthetic.cells import CellTable
from mitokit.io.annotations import Vote
from mitokit.labels.aggregate import Repeats, Tie, aggregate_votes

__all__ = ["Rule", "consensus", "consensus_centroids", "image_presence"]

Rule = Literal["majority", "unanimous", "any"]


def consensus(
    votes: Sequence[Sequence[Vote]],
    *,
    rule: Rule = "majority",
    repeats: Repeats = "rater_mean",
    tie: Tie = "negative",
) -> np.ndarray:
    """Binary consensus label per cell (as CCMCT's consensus of pathologists).

    Args:
        votes: One sequence of votes per cell.
        rule: ``"majority"``: the mean vote (see ``repeats``) is above 0.5, an exact 0.5 going
            by ``tie``; ``"unanimous"``: every rater's mean vote is above 0.5; ``"any"``: some
            rater's mean vote is above 0.5.
        repeats: ``"rater_mean"`` (default) gives every pathologist one voice however often they
            rated the cell; ``"pool"`` counts every rating.
        tie: The label of an exact 0.5 under ``"majority"``: ``"negative"`` (default, a cell
            nobody calls a mitosis more than not is not counted) or ``"positive"``.

    Returns:
        (N,) int64 array of 0 / 1.

    Raises:
        ValueError: An unknown rule or tie, or a cell without votes.
    """
    _check(rule in ("majority", "unanimous", "any"), f"unknown consensus rule {rule!r}")
    _check(tie in ("negative", "positive"), f"tie must be negative or positive, not {tie!r}")
    out = np.zeros(len(votes), dtype=np.int64)
    for i, cell_votes in enumerate(votes):
        _check(len(cell_votes) > 0, f"cell {i} has no votes: no consensus")
        if rule == "majority":
            out[i] = aggregate_votes(cell_votes, repeats=repeats, tie=tie).majority
            continue
        means: dict[str, list[float]] = {}
        for v in cell_votes:
            means.setdefault(v.rater, []).append(v.value)
        positive = [float(np.mean(vals)) > 0.5 for vals in means.values()]
        out[i] = int(all(positive) if rule == "unanimous" else any(positive))
    return out


def consensus_centroids(cells: CellTable, positive: np.ndarray) -> np.ndarray:
    """(K, 2) centres (x, y) of the consensus-positive cells (TUPAC16-style centroid labels)."""
    positive = _as_flags(positive, len(cells), "positive")
    return np.stack([cells.x[positive], cells.y[positive]], axis=1).astype(np.float64)


def image_presence(
    image_of_cell: Sequence[str] | np.ndarray,
    positive: Sequence[int] | np.ndarray,
    *,
    images: Iterable[str] | None = None,
) -> dict[str, int]:
    """Image-level presence labels (as the weak-label study): 1 where an image holds a mitosis.

    Args:
        image_of_cell: (N,) image id of every cell.
        positive: (N,) whether each cell counts as a mitosis: the consensus
            (:func:`consensus`) for labels as a study would have them, or the truth
            (``cells.m > 0.5``) for the truth-based variant.
        images: All image ids, so that images without any cell get a 0; None takes the images
            seen in ``image_of_cell``.

    Returns:
        Image id -> 0 / 1, images in order (given order, else first appearance).
    """
    image_of_cell = [str(i) for i in np.asarray(image_of_cell, dtype=object).reshape(-1)]
    flags = _as_flags(positive, len(image_of_cell), "positive")
    out: dict[str, int] = {str(i): 0 for i in images} if images is not None else {}
    for image, flag in zip(image_of_cell, flags, strict=True):
        if images is not None and image not in out:
            raise ValueError(f"cell on image {image!r}, which is not among the images given")
        out[image] = max(out.get(image, 0), int(flag))
    return out

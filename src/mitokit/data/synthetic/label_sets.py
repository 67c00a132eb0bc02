"""Synthetic labels as :class:`~mitokit.io.annotations.AnnotationSet` objects.

Each set uses the project's one annotation model; every annotation carries the truth of its
cell in ``extra`` (``cell_id``, ``m``, ``kind``, ``phase``) so evaluation can use it.
:func:`pathologist_set` holds every cell with its votes, :func:`consensus_set` the consensus
(CCMCT-style, or TUPAC16-style centroids) and :func:`crowd_set` the crowd's boxes with their
agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mitokit.data.synthetic._draws import _as_flags, _check, _natural
from mitokit.data.synthetic.cells import KIND_NAMES, PHASE_NAMES, CellTable
from mitokit.data.synthetic.crowd import CrowdBox
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.labels.aggregate import Repeats, aggregate_votes
from mitokit.types import MITOSIS, NON_MITOSIS, SizeWH

__all__ = ["FORMAT", "consensus_set", "crowd_set", "pathologist_set"]

FORMAT = "synthetic"


def _truth(cells: CellTable, row: int) -> dict:
    return {
        "cell_id": int(cells.id[row]),
        "m": float(cells.m[row]),
        "kind": KIND_NAMES.get(int(cells.kind[row]), str(int(cells.kind[row]))),
        "phase": PHASE_NAMES.get(int(cells.phase[row]), str(int(cells.phase[row]))),
    }


def _empty_set(image_id: str, size: SizeWH | None, raters, source: str | None) -> AnnotationSet:
    w, h = size if size is not None else (None, None)
    return AnnotationSet(
        annotations=[],
        images={image_id: ImageInfo(image_id, width=w, height=h)},
        raters=list(raters),
        source=source if source is not None else f"synthetic:{image_id}",
        format=FORMAT,
    )


def pathologist_set(
    cells: CellTable,
    votes: Sequence[Sequence[Vote]],
    *,
    image_id: str,
    size: SizeWH | None = None,
    source: str | None = None,
    raters: Sequence[str] | None = None,
    repeats: Repeats = "rater_mean",
) -> AnnotationSet:
    """Every cell as a point (and its box) with the pathologists' votes.

    The label is the majority class of the votes (``mitosis`` / ``non_mitosis``; ties negative,
    each rater one voice with the default ``repeats``). ``raters`` lists the panel (default: the
    raters seen in the votes). ``extra`` holds the truth: ``cell_id``, ``m``, ``kind``, ``phase``.
    """
    _check(len(votes) == len(cells), f"{len(votes)} vote tuples for {len(cells)} cells")
    if raters is None:
        raters = sorted({v.rater for vs in votes for v in vs}, key=_natural)
    out = _empty_set(image_id, size, raters, source)
    boxes = cells.boxes()
    for i, cell_votes in enumerate(votes):
        major = aggregate_votes(cell_votes, repeats=repeats).majority if cell_votes else 0
        out.annotations.append(
            Annotation(
                id=f"{image_id}/cell{int(cells.id[i])}",
                image=image_id,
                point=(float(cells.x[i]), float(cells.y[i])),
                box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                label=MITOSIS if major == 1 else NON_MITOSIS,
                votes=tuple(cell_votes),
                extra=_truth(cells, i),
            )
        )
    return out


def consensus_set(
    cells: CellTable,
    positive: Sequence[int] | np.ndarray,
    *,
    image_id: str,
    positives_only: bool = False,
    points_only: bool = False,
    size: SizeWH | None = None,
    source: str | None = None,
) -> AnnotationSet:
    """Consensus labels as points (and boxes): CCMCT-style, or TUPAC16-style centroids.

    Args:
        cells: The truth.
        positive: (N,) consensus per cell (:func:`~mitokit.data.synthetic.consensus.consensus`).
        image_id: Image the cells are on.
        positives_only: Keep only the mitoses (centroid labels); else every cell, negatives as
            ``non_mitosis`` (hard negatives, as CCMCT's imposter class).
        points_only: Leave out the boxes (centroid labels carry points only).
        size: (width, height) of the image, for its :class:`ImageInfo`.
        source: Name of the set; ``synthetic:<image_id>`` by default.

    Returns:
        The set; ``extra`` holds the truth (``cell_id``, ``m``, ``kind``, ``phase``).
    """
    flags = _as_flags(positive, len(cells), "positive")
    out = _empty_set(image_id, size, [], source)
    boxes = cells.boxes()
    for i in range(len(cells)):
        if positives_only and not flags[i]:
            continue
        out.annotations.append(
            Annotation(
                id=f"{image_id}/cell{int(cells.id[i])}",
                image=image_id,
                point=(float(cells.x[i]), float(cells.y[i])),
                box=None if points_only else tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                label=MITOSIS if flags[i] else NON_MITOSIS,
                extra=_truth(cells, i),
            )
        )
    return out


def crowd_set(
    cells: CellTable,
    boxes: Sequence[CrowdBox],
    *,
    image_id: str,
    n_crowd: int | None = None,
    size: SizeWH | None = None,
    source: str | None = None,
) -> AnnotationSet:
    """Crowd boxes as ``mitosis`` boxes with their agreement score.

    ``extra`` holds ``raters`` (who drew it) and the truth of the cell the box was drawn on
    (``cell_id``, ``m``, ``kind``, ``phase``); a box of coincident false positives has
    ``cell_id`` None, ``m`` 0.0 and ``kind`` ``"background"``.
    """
    row_of = {int(c): i for i, c in enumerate(cells.id)}
    raters = [f"crowd{j + 1}" for j in range(n_crowd)] if n_crowd else []
    if not raters:
        raters = sorted({r for b in boxes for r in b.raters}, key=_natural)
    out = _empty_set(image_id, size, raters, source)
    for k, b in enumerate(boxes):
        if b.cell is not None and b.cell in row_of:
            extra = _truth(cells, row_of[b.cell])
        else:
            extra = {"cell_id": None, "m": 0.0, "kind": "background", "phase": "none"}
        extra["raters"] = list(b.raters)
        out.annotations.append(
            Annotation(
                id=f"{image_id}/crowd{k}",
                image=image_id,
                box=b.box,
                label=MITOSIS,
                agreement=b.agreement,
                extra=extra,
            )
        )
    return out

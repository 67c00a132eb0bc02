"""Labelling processes: every label kind of the three papers from one known truth.

A synthetic scene knows each cell's latent mitosis score ``m`` (:class:`CellTable`). Real labels
see that truth only through people, so each process here draws labels from ``m`` the way its
study did:

- **Pathologists** (the meningioma study): a :class:`RaterPanel` of ``n_raters`` raters gives each
  cell 0 / 0.5 / 1 (or 0 / 1) from a noisy, biased view of ``m``; some cells are rated again, up
  to ``max_repeats`` times per rater, each time with fresh intra-rater noise
  (:func:`rate_pathologists`).
- **Consensus** binary labels (as CCMCT) and consensus **centroids** (as TUPAC16), from those
  votes (:func:`consensus`, :func:`consensus_centroids`).
- **Crowd** boxes (as the TCGA crowd study): a :class:`CrowdPanel` of noisy crowd raters boxes the
  cells it believes mitotic, plus random false positives; boxes of different raters that overlap
  are clustered and a cluster is kept when at least ``min_raters`` raters drew it, with agreement
  ``a`` = raters in the cluster / crowd size (:func:`crowd_boxes`, :func:`cluster_boxes`).
- **Image-level presence** (the weak-label study): an image is positive when it holds at least one
  positive cell (:func:`image_presence`).

:func:`label_scene` runs all of them on one scene and returns the labels as
:class:`~mitokit.io.annotations.AnnotationSet` objects of the project's one annotation model, each
annotation carrying the truth (``extra["m"]``, ``extra["kind"]``) so evaluation can use it.

Everything random goes through an explicit seed (an int or a :class:`numpy.random.Generator`);
the same seed gives the same labels.

Where each process lives: :mod:`~mitokit.data.synthetic.pathologists`,
:mod:`~mitokit.data.synthetic.consensus` (consensus and image-level presence),
:mod:`~mitokit.data.synthetic.crowd` and :mod:`~mitokit.data.synthetic.label_sets` (the
annotation sets); this module runs them together and gathers their public names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mitokit.data.synthetic._draws import Seed, _children
from mitokit.data.synthetic.cells import CellTable
from mitokit.data.synthetic.consensus import (
    Rule,
    consensus,
    consensus_centroids,
    image_presence,
)
from mitokit.data.synthetic.crowd import CrowdBox, CrowdPanel, cluster_boxes, crowd_boxes
from mitokit.data.synthetic.label_sets import FORMAT, consensus_set, crowd_set, pathologist_set
from mitokit.data.synthetic.pathologists import RaterPanel, Scale, rate_pathologists
from mitokit.io.annotations import AnnotationSet, Vote
from mitokit.types import SizeWH

__all__ = [
    "FORMAT",
    "CrowdBox",
    "CrowdPanel",
    "RaterPanel",
    "Rule",
    "Scale",
    "SceneLabels",
    "Seed",
    "cluster_boxes",
    "consensus",
    "consensus_centroids",
    "consensus_set",
    "crowd_boxes",
    "crowd_set",
    "image_presence",
    "label_scene",
    "pathologist_set",
    "rate_pathologists",
]


@dataclass
class SceneLabels:
    """Every label kind of one scene, drawn from its truth.

    Attributes:
        image_id: The scene's image id.
        votes: Pathologists' votes per cell (table order).
        positive: (N,) int64 consensus per cell.
        crowd_boxes: The crowd's kept boxes.
        pathologists: Every cell with its votes (meningioma-style probabilistic labels).
        consensus: Every cell labelled by the consensus (CCMCT-style, with hard negatives).
        centroids: Consensus mitoses as points only (TUPAC16-style).
        crowd: Crowd boxes with agreement (TCGA crowd-style).
        image_label: 1 when the scene holds a consensus mitosis (weak-label-style).
        truth_image_label: 1 when some cell has ``m > 0.5`` (the truth-based variant).
    """

    image_id: str
    votes: list[tuple[Vote, ...]]
    positive: np.ndarray
    crowd_boxes: list[CrowdBox]
    pathologists: AnnotationSet
    consensus: AnnotationSet
    centroids: AnnotationSet
    crowd: AnnotationSet
    image_label: int
    truth_image_label: int


def label_scene(
    cells: CellTable,
    *,
    image_id: str,
    seed: Seed,
    panel: RaterPanel | None = None,
    crowd: CrowdPanel | None = None,
    rule: Rule = "majority",
    size: SizeWH | None = None,
) -> SceneLabels:
    """Run every labelling process on one scene.

    The pathologists and the crowd draw from separate streams of ``seed``, so changing one
    panel leaves the other's labels as they were.

    Args:
        cells: The scene's truth.
        image_id: Id of the scene's image.
        seed: Seed of all draws.
        panel: The pathologists (:class:`RaterPanel` defaults).
        crowd: The crowd (:class:`CrowdPanel` defaults).
        rule: Consensus rule (:func:`consensus`).
        size: (width, height) of the image: recorded in the sets and bounds the crowd's random
            false positives (else the box around the cells).

    Returns:
        A :class:`SceneLabels`.
    """
    panel = RaterPanel() if panel is None else panel
    crowd = CrowdPanel() if crowd is None else crowd
    rng_path, rng_crowd = _children(seed, 2)
    votes = rate_pathologists(cells, panel=panel, seed=rng_path)
    positive = consensus(votes, rule=rule) if len(cells) else np.zeros(0, dtype=np.int64)
    extent = (0.0, 0.0, float(size[0]), float(size[1])) if size is not None else None
    kept = crowd_boxes(cells, panel=crowd, seed=rng_crowd, extent=extent)
    image_ids = [image_id] * len(cells)
    return SceneLabels(
        image_id=image_id,
        votes=votes,
        positive=positive,
        crowd_boxes=kept,
        pathologists=pathologist_set(
            cells, votes, image_id=image_id, size=size, raters=panel.rater_ids
        ),
        consensus=consensus_set(cells, positive, image_id=image_id, size=size),
        centroids=consensus_set(
            cells, positive, image_id=image_id, positives_only=True, points_only=True, size=size
        ),
        crowd=crowd_set(cells, kept, image_id=image_id, n_crowd=crowd.n_crowd, size=size),
        image_label=image_presence(image_ids, positive, images=[image_id])[image_id],
        truth_image_label=image_presence(image_ids, np.asarray(cells.m) > 0.5, images=[image_id])[
            image_id
        ],
    )

"""Figures of label sets."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from mitokit.io.annotations import AnnotationSet
from mitokit.io.atomic import atomic_path
from mitokit.labels.aggregate import Repeats, aggregate_votes


def plot_score_distribution(
    annotations: AnnotationSet,
    path: str | os.PathLike,
    *,
    bins: int = 20,
    repeats: Repeats = "pool",
    title: str | None = None,
) -> dict[int, np.ndarray]:
    """Histogram of probabilistic scores, stacked and coloured by number of votes per object.

    The first paper's Fig. 1 (left): how often each label value occurs, and how many ratings
    stand behind it. Objects without votes are left out.

    Returns:
        Number of votes -> counts per bin, as drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[int, list[float]] = {}
    for ann in annotations:
        if ann.votes:
            s = aggregate_votes(ann.votes, repeats=repeats)
            groups.setdefault(s.n_votes, []).append(s.score)
    if not groups:
        raise ValueError("no object carries votes: nothing to plot")
    edges = np.linspace(0.0, 1.0, bins + 1)
    keys = sorted(groups)
    drawn = {k: np.histogram(groups[k], bins=edges)[0] for k in keys}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    bottom = np.zeros(bins)
    cmap = plt.get_cmap("viridis", max(len(keys), 2))
    width = edges[1] - edges[0]
    for i, k in enumerate(keys):
        ax.bar(
            edges[:-1],
            drawn[k],
            width=width,
            bottom=bottom,
            align="edge",
            color=cmap(i),
            edgecolor="white",
            linewidth=0.5,
            label=f"{k} vote{'s' * (k != 1)}",
        )
        bottom += drawn[k]
    n_votes = Counter({k: len(v) for k, v in groups.items()})
    ax.set_xlabel(f"probabilistic label (mean vote: {annotations.vote_target})")
    ax.set_ylabel("objects")
    ax.set_xlim(0, 1)
    ax.set_title(title or f"Label distribution ({sum(n_votes.values())} rated objects)")
    ax.legend(title="ratings per object", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return drawn

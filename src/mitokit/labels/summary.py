"""A label file in numbers: images, classes, raters, votes, scores and agreement."""

from __future__ import annotations

from collections import Counter

import numpy as np

from mitokit.io.annotations import AnnotationSet
from mitokit.labels.aggregate import Repeats, aggregate_votes, object_scores
from mitokit.labels.agreement import agreement


def score_histogram(scores: np.ndarray, *, bins: int = 10) -> dict:
    """Histogram of probabilistic scores over [0, 1] (NaN scores left out).

    Returns:
        ``{"edges": [...], "counts": [...]}`` with ``bins`` equal bins; the last bin includes 1.
    """
    finite = scores[np.isfinite(scores)]
    counts, edges = np.histogram(finite, bins=bins, range=(0.0, 1.0))
    return {"edges": [round(float(e), 10) for e in edges], "counts": counts.tolist()}


def summarize(
    annotations: AnnotationSet,
    *,
    bins: int = 10,
    repeats: Repeats = "pool",
    level: str = "nominal",
) -> dict:
    """Summarise a label set.

    Returns:
        A JSON-friendly dict with ``images`` (listed by the source, annotated or not),
        ``annotated_images``, ``objects``, ``classes`` (class -> count), ``raters`` (count),
        ``rater_ids``, ``vote_target``, ``votes_per_object`` (number of votes -> objects),
        ``majority`` (from votes: positive / negative / tie counts), ``score_histogram`` (mean
        vote, else agreement), ``agreement`` (Fleiss' kappa, Krippendorff's alpha, unanimous
        share, the objects each covers) and ``agreement_text`` (the same in one line).
    """
    images = set(annotations.images) | {a.image for a in annotations}
    classes = Counter(a.label for a in annotations)
    raters = set(annotations.raters) | {v.rater for a in annotations for v in a.votes}
    votes_per_object = Counter(len(a.votes) for a in annotations)
    majority = Counter()
    for a in annotations:
        if a.votes:
            m = aggregate_votes(a.votes, repeats=repeats, tie="none").majority
            majority[{1: "positive", 0: "negative", None: "tie"}[m]] += 1
    scores = object_scores(annotations, repeats=repeats)
    unanimous_negative = sum(
        1 for a in annotations if a.votes and all(v.value == 0 for v in a.votes)
    )
    unanimous_positive = sum(
        1 for a in annotations if a.votes and all(v.value == 1 for v in a.votes)
    )
    agreed = agreement(annotations, level=level)  # type: ignore[arg-type]
    return {
        "source": annotations.source,
        "format": annotations.format,
        "images": len(images),
        "annotated_images": len({a.image for a in annotations}),
        "objects": len(annotations),
        "classes": dict(sorted(classes.items())),
        "raters": len(raters),
        "rater_ids": sorted(raters),
        "vote_target": annotations.vote_target,
        "votes_per_object": {str(k): v for k, v in sorted(votes_per_object.items())},
        "majority": dict(sorted(majority.items())),
        "unanimous": {"positive": unanimous_positive, "negative": unanimous_negative},
        "scored_objects": int(np.isfinite(scores).sum()),
        "score_histogram": score_histogram(scores, bins=bins),
        "agreement": agreed.to_dict(),
        "agreement_text": agreed.describe(),
    }

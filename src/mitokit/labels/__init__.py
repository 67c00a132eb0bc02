"""Multi-rater labels: aggregation, agreement, tile coarsening."""

from mitokit.labels.aggregate import VoteSummary, aggregate, aggregate_votes, object_scores
from mitokit.labels.agreement import Agreement, agreement
from mitokit.labels.coarsen import box_fraction_inside, coarsen_to_tiles, tile_scores
from mitokit.labels.figures import plot_score_distribution
from mitokit.labels.summary import summarize

__all__ = [
    "Agreement",
    "VoteSummary",
    "aggregate",
    "aggregate_votes",
    "agreement",
    "box_fraction_inside",
    "coarsen_to_tiles",
    "object_scores",
    "plot_score_distribution",
    "summarize",
    "tile_scores",
]

"""Former home of the tile-score evaluation, now :mod:`mitokit.metrics.tiles` (re-exported)."""

from mitokit.metrics.tiles import (
    DEFAULT_THRESHOLDS,
    TilePredictions,
    evaluate_tile_scores,
    plot_roc,
    read_tile_predictions,
    sweep_table,
    truth_tile_scores,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TilePredictions",
    "evaluate_tile_scores",
    "plot_roc",
    "read_tile_predictions",
    "sweep_table",
    "truth_tile_scores",
]

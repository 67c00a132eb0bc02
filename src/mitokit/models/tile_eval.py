"""Former home of the tile-score evaluation, now :mod:`mitokit.metrics.tiles` (re-exported)."""

from mitokit.metrics.tiles import *  # noqa: F403
from mitokit.metrics.tiles import __all__  # noqa: F401

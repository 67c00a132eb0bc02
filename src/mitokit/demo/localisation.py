"""Demo stage (being written)."""

from __future__ import annotations


def stage_localisation(out, report, **_) -> None:
    """Placeholder."""

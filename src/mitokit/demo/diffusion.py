"""Demo stage (being written)."""

from __future__ import annotations


def stage_diffusion(out, report, **_) -> None:
    """Placeholder."""

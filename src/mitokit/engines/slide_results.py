"""What the slide engine returns: one slide's findings and the outcome of a run over many.

:class:`SlideResult` is what :meth:`mitokit.engines.slide.SlidePredictor.predict_slide` found on
one slide (written out by :func:`mitokit.report.slide_outputs.write_slide_outputs`);
:class:`SlideOutcome` and :class:`RunSummary` record what :meth:`~mitokit.engines.slide.
SlidePredictor.run` did with each slide (``run_summary.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.data.tissue import TissueMask
from mitokit.metrics.hotspot import Hotspot


@dataclass
class SlideResult:
    """What :meth:`SlidePredictor.predict_slide` found on one slide.

    Attributes:
        path: The slide file.
        size: Level-0 ``(width, height)``.
        mpp: Microns per pixel at level 0.
        mpp_source: ``"file"`` or ``"argument"``.
        kind: ``"points"`` (detectors, localisers) or ``"tiles"`` (tile classifiers).
        points: ``(N, 3)`` level-0 ``x, y, score`` of the detections, highest score first (for
            tile models: the centres of the positive tiles' cores).
        tile_boxes: ``(T, 4)`` level-0 boxes of the tiles read.
        tile_scores: ``(T,)`` the model's score of each tile.
        threshold: The score threshold applied.
        tissue: The tissue mask.
        hotspot: The most active 10-HPF region.
        thumbnail: ``(h, w, 3)`` uint8 thumbnail.
        heat: ``(h, w)`` float32 map in [0, 1] over the thumbnail.
        settings: How the slide was read (level, scale, overlap ...), for the summary.
        seconds: Wall time of the prediction.
    """

    path: Path
    size: tuple[int, int]
    mpp: float
    mpp_source: str
    kind: str
    points: np.ndarray
    tile_boxes: np.ndarray
    tile_scores: np.ndarray
    threshold: float
    tissue: TissueMask
    hotspot: Hotspot
    thumbnail: np.ndarray
    heat: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The slide's file name (the image id of its detections)."""
        return self.path.name

    @property
    def tissue_area_mm2(self) -> float:
        """Area of the tissue mask in mm2."""
        w, h = self.size
        return self.tissue.fraction * w * h * (self.mpp * 1e-3) ** 2

    @property
    def positive_tiles(self) -> int:
        """Tiles scoring at least the threshold."""
        return int(np.count_nonzero(self.tile_scores >= self.threshold))

    @property
    def mitotic_count(self) -> int | None:
        """Number of detected figures (None for tile models, which count tiles)."""
        return len(self.points) if self.kind == "points" else None

    def summary(self) -> dict[str, Any]:
        """The content of ``summary.json`` (:func:`mitokit.report.slide_outputs.slide_summary`)."""
        from mitokit.report.slide_outputs import slide_summary

        return slide_summary(self)


@dataclass(frozen=True)
class SlideOutcome:
    """What happened to one slide of a run.

    Attributes:
        slide: The slide file.
        status: ``"done"``, ``"skipped"`` (already done) or ``"failed"``.
        folder: Its output folder.
        error: The one-line reason of a failure.
        count: Detections (positive tiles for tile models) of a slide done now.
        seconds: Time spent on it.
    """

    slide: str
    status: str
    folder: str
    error: str | None = None
    count: int | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (None fields left out)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class RunSummary:
    """The outcome of :meth:`SlidePredictor.run` on this process's share of the slides.

    Attributes:
        out_dir: The output folder.
        rank: This process's rank.
        world_size: Number of processes sharing the slides.
        total: Slides given to the run (all ranks).
        slides: This rank's slides, in order.
    """

    out_dir: Path
    rank: int = 0
    world_size: int = 1
    total: int = 0
    slides: list[SlideOutcome] = field(default_factory=list)

    def _with(self, status: str) -> list[SlideOutcome]:
        return [s for s in self.slides if s.status == status]

    @property
    def done(self) -> list[SlideOutcome]:
        """Slides processed by this run."""
        return self._with("done")

    @property
    def skipped(self) -> list[SlideOutcome]:
        """Slides skipped because their output was already complete."""
        return self._with("skipped")

    @property
    def failed(self) -> list[SlideOutcome]:
        """Slides that could not be processed."""
        return self._with("failed")

    @property
    def path(self) -> Path:
        """Where the run summary is written."""
        name = "run_summary.json" if self.world_size == 1 else f"run_summary.rank{self.rank}.json"
        return self.out_dir / name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "out": str(self.out_dir),
            "rank": self.rank,
            "world_size": self.world_size,
            "slides_total": self.total,
            "slides_this_rank": len(self.slides),
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "slides": [s.to_dict() for s in self.slides],
        }


__all__ = ["RunSummary", "SlideOutcome", "SlideResult"]

"""Whole-slide inference: stream a slide's tissue tiles through a model and count mitoses.

``SlidePredictor(predictor).run(slides, out_dir)`` runs any :class:`~mitokit.models.predictors.
Predictor` (detectors, the weak localiser, tile classifiers) over whole slides:

1. the slide is opened; its microns per pixel must be known (from the file or ``mpp=``/
   ``--mpp``, never guessed), as every output is also given in micrometres and mm2;
2. a tissue mask is computed on the thumbnail (an empty mask is an error); only tiles touching
   tissue are read;
3. tiles overlap (by default the larger of 1/8 of a tile and 10 um, about one mitotic figure)
   and are read at the level matching the model's mpp (resized where no level matches; level 0
   when the model has no mpp) by background threads into a bounded pool of batch buffers
   (:mod:`mitokit.engines.slide_stream`), so memory does not grow with the slide;
4. points scoring at least the threshold (the model's own ``threshold`` if it has one, else 0.5)
   are mapped to level-0 pixels and kept only inside the *core* of their tile (the half-overlap
   rule), then points of different tiles closer than 7.5 um are merged (highest score kept), so
   a figure on a tile border is counted once; points on glass (farther than 25 um from the
   tissue mask) are dropped;
5. the hotspot, the 4:3 rectangle of 10 high-power fields (2.37 mm2) holding the most figures on
   tissue, is found with an integral image (:mod:`mitokit.metrics.hotspot`).

Tile classifiers and regressors (``tile_classifier``, ``tile_regressor``) give no points: their
"detections" are the tiles scoring at least the threshold (placed at the centre of the tile's
core), the hotspot holds the most positive tiles, and ``mitotic_count`` is null.

Per slide, ``OUT/<slide stem>/`` (the stem made a safe file name, see
:func:`slide_folder_names`) holds, written as one folder that appears whole or not at all:

- ``detections.csv``: ``x, y, score, x_um, y_um`` (level-0 pixels; micrometres from the origin);
- ``detections.geojson``: QuPath detections (Points, class ``mitosis``, ``score`` measurement;
  boxes of the positive tiles for tile models);
- ``tiles.csv``: every tile read, ``x1, y1, x2, y2, score``;
- ``heatmap.png``: the model's heat maps, the density of detections or the tile scores, blended
  on the thumbnail, with the hotspot drawn;
- ``summary.json`` (written last): count, tissue area, count per mm2, the hotspot and settings.

Over many slides (:meth:`SlidePredictor.run`): a slide whose ``summary.json`` exists is skipped
(so an interrupted run resumes), a slide that cannot be processed (unreadable file, missing mpp,
no tissue) is reported in one line and skipped while the others go on, and each process of a
``torchrun`` job takes the slides ``i`` with ``i % WORLD_SIZE == RANK``. The run's outcome is
written to ``OUT/run_summary.json`` (``run_summary.rank<r>.json`` per rank under torchrun).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.data.tissue import TissueMask, mask_from_rgb, require_tissue
from mitokit.engines.slide_stream import (
    TilePlan,
    in_core,
    merge_points,
    plan_tiles,
    read_geometry,
    stream_batches,
)
from mitokit.errors import MitokitError, input_error
from mitokit.metrics.hotspot import Hotspot, find_hotspot, hotspot_size_px

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide",
    ".qptiff", ".btf", ".png", ".jpg", ".jpeg", ".bmp",
)  # fmt: skip
"""Files of these types are taken from a folder given as input (any file named directly is)."""

TILE_SCORE_TASKS = ("tile_classifier", "tile_regressor")
"""Tasks whose predictors give a tile score and no points."""

DEFAULT_THRESHOLD = 0.5
"""Score threshold when neither the caller nor the model gives one."""

DEFAULT_OVERLAP_UM = 10.0
"""Default overlap of neighbouring tiles: about one mitotic figure (or 1/8 tile if larger)."""

DEFAULT_MERGE_RADIUS_UM = 7.5
"""Points of different tiles closer than this are one figure (the MIDOG matching radius)."""

DEFAULT_TISSUE_MARGIN_UM = 25.0
"""Points farther than this from the tissue mask (on glass) are dropped."""

THUMBNAIL_SIZE = 1024
"""Longest side of the thumbnail the tissue mask and the heat map are made on."""

SUMMARY = "summary.json"
DETECTIONS_CSV = "detections.csv"
DETECTIONS_GEOJSON = "detections.geojson"
TILES_CSV = "tiles.csv"
HEATMAP = "heatmap.png"


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
        """The content of ``summary.json``."""
        from mitokit import __version__

        area = self.tissue_area_mm2
        count = self.mitotic_count
        hotspot = self.hotspot.to_dict()
        hotspot["count_per_mm2"] = _ratio(self.hotspot.count, self.hotspot.area_mm2)
        hotspot["counts"] = "figures" if self.kind == "points" else "positive tiles"
        return {
            "slide": str(self.path),
            "name": self.name,
            "width": self.size[0],
            "height": self.size[1],
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "kind": self.kind,
            "threshold": self.threshold,
            "mitotic_count": count,
            "tissue_area_mm2": round(area, 6),
            "mitotic_count_per_mm2": None if count is None else _ratio(count, area),
            "positive_tiles": self.positive_tiles,
            "positive_tiles_per_mm2": _ratio(self.positive_tiles, area),
            "hotspot": hotspot,
            "tiles": len(self.tile_scores),
            "seconds": round(self.seconds, 3),
            "tiles_per_s": _ratio(len(self.tile_scores), self.seconds),
            **self.settings,
            "files": {
                "detections_csv": DETECTIONS_CSV,
                "detections_geojson": DETECTIONS_GEOJSON,
                "tiles_csv": TILES_CSV,
                "heatmap": HEATMAP,
            },
            "mitokit": __version__,
        }


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


class SlidePredictor:
    """Runs a :class:`~mitokit.models.predictors.Predictor` over whole slides.

    Args:
        predictor: The model (see :func:`mitokit.models.predictors.load_predictor`).
        batch_size: Tiles per model call.
        workers: Reader threads (default: up to 4, one per CPU core).
        threshold: Keep points (tile models: count tiles) scoring at least this; default the
            predictor's ``threshold`` attribute if it has one, else 0.5. A predictor that
            takes its points from a thresholded map (``thresholds_maps`` true: the weak
            localiser) gets it as its map threshold, so a lower one also finds more points.
        tile_size: Force a tile size; it must be the predictor's, or a multiple of its
            ``tile_multiple`` attribute where it has one (fully convolutional models).
        overlap_um: Overlap of neighbouring tiles in micrometres (default: the larger of 1/8
            tile and 10 um, at most half a tile).
        merge_radius_um: Points of different tiles within this distance are merged.
        min_tissue: Read tiles whose tissue fraction is above this (0: any tile touching tissue).
        tissue_margin_um: Drop points farther than this from the tissue mask (tiles touching
            tissue also cover glass, where debris may be detected); None keeps every point.
            The margin keeps figures at the edge of the tissue that the coarse mask cuts off.
        channels_last: Hand batches to the model in channels-last memory layout (the layout the
            tiles are read in, so no copy; faster convolutions on CPU). Default: on CPU only.
            A predictor must then reshape its input with ``reshape``, not ``view``.
        progress: Show a progress bar per slide (on stderr, when it is a terminal).
        log: Called with one line per slide that fails; default prints to stderr.

    Raises:
        MitokitError: A tile size that does not fit the model, or a setting out of range.
    """

    def __init__(
        self,
        predictor: Any,
        *,
        batch_size: int = 16,
        workers: int | None = None,
        threshold: float | None = None,
        tile_size: int | None = None,
        overlap_um: float | None = None,
        merge_radius_um: float = DEFAULT_MERGE_RADIUS_UM,
        min_tissue: float = 0.0,
        tissue_margin_um: float | None = DEFAULT_TISSUE_MARGIN_UM,
        channels_last: bool | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.tile_size = _fit_tile_size(predictor, tile_size)
        if int(batch_size) < 1:
            raise input_error(None, f"batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.workers = max(1, int(workers) if workers else min(4, os.cpu_count() or 1))
        if threshold is None:
            threshold = getattr(predictor, "threshold", None)
        self.threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise input_error(None, f"threshold must be in [0, 1], got {threshold}")
        if getattr(predictor, "thresholds_maps", False):
            predictor.threshold = self.threshold
        if overlap_um is not None and not (math.isfinite(overlap_um) and overlap_um >= 0):
            raise input_error(None, f"overlap must be >= 0 um, got {overlap_um}")
        self.overlap_um = overlap_um
        if not (math.isfinite(merge_radius_um) and merge_radius_um >= 0):
            raise input_error(None, f"merge radius must be >= 0 um, got {merge_radius_um}")
        self.merge_radius_um = float(merge_radius_um)
        if not 0.0 <= float(min_tissue) < 1.0:
            raise input_error(None, f"min_tissue must be in [0, 1), got {min_tissue}")
        self.min_tissue = float(min_tissue)
        if tissue_margin_um is not None and not (
            math.isfinite(tissue_margin_um) and tissue_margin_um >= 0
        ):
            raise input_error(None, f"tissue margin must be >= 0 um, got {tissue_margin_um}")
        self.tissue_margin_um = tissue_margin_um
        if channels_last is None:
            channels_last = torch.device(predictor.device).type == "cpu"
        self.channels_last = bool(channels_last)
        self.progress = progress
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def model_input(self, tiles: torch.Tensor) -> torch.Tensor:
        """A ``BxHxWx3`` uint8 batch as the model's ``Bx3xHxW`` float input in [0, 1].

        The copy to the device (asynchronous from pinned memory) comes first, then the
        conversion to float on the device.
        """
        device = torch.device(self.predictor.device)
        if device.type != "cpu":
            tiles = tiles.to(device, non_blocking=True)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = tiles.permute(0, 3, 1, 2).to(torch.float32, memory_format=layout)
        return x.div_(255.0)

    @property
    def kind(self) -> str:
        """``"tiles"`` for tile classifiers and regressors, ``"points"`` otherwise."""
        return "tiles" if self.predictor.task in TILE_SCORE_TASKS else "points"

    # -- one slide ------------------------------------------------------------------------------

    def predict_slide(
        self, path: str | os.PathLike, *, mpp: float | None = None, desc: str | None = None
    ) -> SlideResult:
        """Run the model over one slide (nothing is written).

        Args:
            path: The slide or image file.
            mpp: Microns per pixel at level 0, overriding the file's; needed where it has none.
            desc: Label of the progress bar (default: the file name).

        Raises:
            MitokitError: An unreadable slide, no mpp, no tissue, or a read error half-way.
        """
        from mitokit.io.slides import open_slide

        start = time.perf_counter()
        path = Path(path)
        with open_slide(path, mpp=mpp) as slide:
            slide_mpp = slide.mpp_or_none
            if slide_mpp is None:
                raise input_error(path, "no microns-per-pixel in the file; pass --mpp (mpp=...)")
            size = slide.dimensions
            thumb = slide.get_thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            ds = (size[0] / thumb.shape[1], size[1] / thumb.shape[0])
            mask = TissueMask(mask_from_rgb(thumb, downsample=math.sqrt(ds[0] * ds[1])), ds)
            require_tissue(mask, path)
            geometry = read_geometry(
                slide, tile_size=self.tile_size, model_mpp=self.predictor.mpp, slide_mpp=slide_mpp
            )
            mpp_source = slide.mpp_source or "file"
        overlap = self._overlap_px(geometry.scale * slide_mpp)
        plan = plan_tiles(size, geometry, overlap=overlap, mask=mask, min_tissue=self.min_tissue)
        canvas = _Canvas(thumb.shape[:2], ds)
        points, tile_ids, scores = self._stream(path, mpp, plan, size, canvas, desc or path.name)

        radius = self.merge_radius_um / slide_mpp
        keep = merge_points(points, tile_ids, radius=radius) if len(points) else np.zeros(0, int)
        points = points[keep]
        if self.tissue_margin_um is not None and len(points):
            points = points[_on_tissue(points, mask, self.tissue_margin_um / slide_mpp)]
        boxes = plan.boxes
        if self.kind == "tiles":
            positive = scores >= self.threshold
            centres = _core_centres(plan.cores[positive], boxes[positive], size)
            points = np.concatenate([centres, scores[positive, None]], axis=1)
            points = points[np.argsort(-points[:, 2], kind="stable")]
        hotspot = find_hotspot(points, slide_size=size, mpp=slide_mpp, tissue=mask)
        heat = canvas.final(self.kind, points, hotspot_size_px(slide_mpp)[1], plan, scores)
        settings = {
            "model": {
                "task": self.predictor.task,
                "tile_size": self.tile_size,
                "mpp": self.predictor.mpp,
                "device": str(self.predictor.device),
            },
            "reading": {
                "level": geometry.level,
                "level_downsample": round(geometry.level_downsample, 6),
                "read_size": geometry.read_size,
                "level0_px_per_model_px": round(geometry.scale, 6),
                "overlap_model_px": overlap,
                "merge_radius_um": self.merge_radius_um,
                "min_tissue": self.min_tissue,
                "tissue_margin_um": self.tissue_margin_um,
            },
        }
        return SlideResult(
            path=path,
            size=(int(size[0]), int(size[1])),
            mpp=float(slide_mpp),
            mpp_source=mpp_source,
            kind=self.kind,
            points=points,
            tile_boxes=boxes,
            tile_scores=scores,
            threshold=self.threshold,
            tissue=mask,
            hotspot=hotspot,
            thumbnail=thumb,
            heat=heat,
            settings=settings,
            seconds=time.perf_counter() - start,
        )

    def _overlap_px(self, um_per_model_px: float) -> int:
        t = self.tile_size
        if self.overlap_um is not None:
            overlap = round(self.overlap_um / um_per_model_px)
            if overlap >= t:
                raise input_error(
                    None, f"overlap of {self.overlap_um:g} um is a whole tile ({t} px) or more"
                )
            return int(overlap)
        wanted = max(math.ceil(t / 8), math.ceil(DEFAULT_OVERLAP_UM / um_per_model_px))
        return int(min(wanted, t // 2))

    def _stream(
        self,
        path: Path,
        mpp: float | None,
        plan: TilePlan,
        size: tuple[int, int],
        canvas: _Canvas,
        desc: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed the planned tiles to the model; (points, their tiles, tile scores)."""
        from tqdm.auto import tqdm

        from mitokit.io.slides import open_slide

        device = torch.device(self.predictor.device)
        cuda = device.type == "cuda"
        origins = plan.origins.astype(np.float64)
        scale = plan.geometry.scale
        foot = plan.geometry.footprint
        w0, h0 = size
        scores = np.zeros(len(plan), dtype=np.float64)
        found: list[np.ndarray] = []
        found_tiles: list[np.ndarray] = []
        bar = tqdm(
            total=len(plan),
            desc=desc,
            unit="tile",
            leave=False,
            disable=None if self.progress else True,
            file=sys.stderr,
        )
        batches = stream_batches(
            lambda: open_slide(path, mpp=mpp),
            plan,
            batch_size=self.batch_size,
            workers=self.workers,
            pin_memory=cuda,
        )
        try:
            for batch in batches:
                x = self.model_input(batch.tensor)
                if not cuda:
                    batch.release()  # x is a copy: the readers may refill the buffer now
                with torch.no_grad():
                    preds = self.predictor.predict(x)
                if cuda:
                    torch.cuda.current_stream(device).synchronize()  # the copy is done
                batch.release()
                if len(preds) != len(batch.tiles):
                    raise RuntimeError(
                        f"predictor returned {len(preds)} predictions for {len(batch.tiles)} tiles"
                    )
                for t, pred in zip(batch.tiles.tolist(), preds, strict=True):
                    scores[t] = float(pred.tile_score)
                    if pred.heatmap is not None:
                        ox, oy = origins[t]
                        canvas.paint_heatmap((ox, oy, ox + foot, oy + foot), pred.heatmap)
                    pts = np.asarray(pred.points, dtype=np.float64).reshape(-1, 3)
                    if not len(pts):
                        continue
                    pts = pts[pts[:, 2] >= self.threshold]
                    level0 = pts.copy()
                    level0[:, :2] = origins[t] + pts[:, :2] * scale
                    inside = (
                        (level0[:, 0] >= 0)
                        & (level0[:, 0] < w0)
                        & (level0[:, 1] >= 0)
                        & (level0[:, 1] < h0)
                    )
                    level0 = level0[inside & in_core(level0, plan.cores[t])]
                    if len(level0):
                        found.append(level0)
                        found_tiles.append(np.full(len(level0), t, dtype=np.int64))
                bar.update(len(batch.tiles))
        finally:
            batches.close()
            bar.close()
        if not found:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64), scores
        return np.concatenate(found), np.concatenate(found_tiles), scores

    # -- many slides -----------------------------------------------------------------------------

    def run(
        self,
        inputs: str | os.PathLike | Iterable[str | os.PathLike],
        out_dir: str | os.PathLike,
        *,
        mpp: float | None = None,
        overwrite: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> RunSummary:
        """Predict every slide of ``inputs`` into ``out_dir/<slide stem>/``.

        The folder's name is the stem made safe (:func:`slide_folder_names`). Temporaries a
        killed run left in ``out_dir`` are removed first; nothing else there is touched.

        Args:
            inputs: Slide files and folders of slides (their files with a slide or image
                suffix, hidden files excluded).
            out_dir: The output folder.
            mpp: Microns per pixel for every slide, overriding the files' values.
            overwrite: Redo slides already done (default: skip them).
            rank: This process's rank (default: ``RANK`` of torchrun's environment, else 0).
            world_size: Number of processes (default: ``WORLD_SIZE``, else 1).

        Returns:
            What happened to each of this rank's slides; also written to the run summary file.

        Raises:
            MitokitError: A missing input, a folder without slides, or two slides that would
                share an output folder (see :func:`slide_folder_names`). Problems of single
                slides do not raise: they are logged, recorded and skipped.
            OutputError: An output could not be written (no space left, a read-only folder);
                the run stops, as no other slide would fare better.
        """
        from mitokit.engines.distributed import env_world
        from mitokit.io.atomic import (
            OutputError,
            make_folder,
            remove_stale_temporaries,
            write_text_atomic,
        )
        from mitokit.io.names import child_path

        slides = find_slides(inputs)
        names = slide_folder_names(slides)
        if rank is None or world_size is None:
            env_size, env_rank, _ = env_world()
            world_size = env_size if world_size is None else world_size
            rank = env_rank if rank is None else rank
        mine = shard(slides, rank=rank, world_size=world_size)
        out = make_folder(out_dir)
        remove_stale_temporaries(out)  # left by a killed run; those of live runs are locked
        summary = RunSummary(out, rank=rank, world_size=world_size, total=len(slides))
        for k, path in enumerate(mine, start=1):
            folder = out / names[path]
            start = time.perf_counter()
            try:
                folder = child_path(out, names[path])
                if not overwrite and (folder / SUMMARY).is_file():
                    summary.slides.append(SlideOutcome(str(path), "skipped", str(folder)))
                    continue
                result = self.predict_slide(path, mpp=mpp, desc=f"[{k}/{len(mine)}] {path.name}")
                write_slide_outputs(result, folder)
            except OutputError:
                raise  # the output folder cannot take files: no other slide would fare better
            except MitokitError as exc:
                self.log(f"mitokit: error: {exc} (slide skipped)")
                summary.slides.append(SlideOutcome(str(path), "failed", str(folder), str(exc)))
                continue
            count = result.mitotic_count
            summary.slides.append(
                SlideOutcome(
                    str(path),
                    "done",
                    str(folder),
                    count=result.positive_tiles if count is None else count,
                    seconds=round(time.perf_counter() - start, 3),
                )
            )
        write_text_atomic(summary.path, json.dumps(summary.to_dict(), indent=2) + "\n")
        return summary


# ---------------------------------------------------------------------------------- outputs


def write_slide_outputs(result: SlideResult, folder: str | os.PathLike) -> Path:
    """Write a slide's files into ``folder``, which appears complete or not at all.

    An existing ``folder`` is replaced only once the new one is complete.

    Returns:
        The folder.
    """
    from mitokit.io.atomic import atomic_dir
    from mitokit.report.heatmap import render_heatmap, save_png

    folder = Path(folder)
    with atomic_dir(folder, overwrite=True) as tmp:
        _write_detections_csv(result, tmp / DETECTIONS_CSV)
        _write_detections_geojson(result, tmp / DETECTIONS_GEOJSON)
        _write_tiles_csv(result, tmp / TILES_CSV)
        dsx, dsy = result.tissue.downsample
        x1, y1, x2, y2 = result.hotspot.box
        heat = result.heat
        if heat.shape == result.tissue.mask.shape:
            heat = heat * result.tissue.mask  # no colour on glass
        image = render_heatmap(
            result.thumbnail,
            heat,
            box=(x1 / dsx, y1 / dsy, x2 / dsx, y2 / dsy),
            points=result.points[:, :2] / np.array([dsx, dsy]) if len(result.points) else None,
        )
        save_png(tmp / HEATMAP, image)
        (tmp / SUMMARY).write_text(json.dumps(result.summary(), indent=2) + "\n", "utf-8")
    return folder


def _write_detections_csv(result: SlideResult, path: Path) -> None:
    lines = ["x,y,score,x_um,y_um"]
    m = result.mpp
    for x, y, s in result.points.tolist():
        lines.append(f"{x:.2f},{y:.2f},{s:.6g},{x * m:.3f},{y * m:.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_tiles_csv(result: SlideResult, path: Path) -> None:
    lines = ["x1,y1,x2,y2,score"]
    for (x1, y1, x2, y2), s in zip(
        result.tile_boxes.tolist(), result.tile_scores.tolist(), strict=True
    ):
        lines.append(f"{x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f},{s:.6g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_detections_geojson(result: SlideResult, path: Path) -> None:
    from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
    from mitokit.io.formats.geojson import write_geojson
    from mitokit.types import MITOSIS

    name = result.name
    anns = []
    if result.kind == "points":
        for k, (x, y, s) in enumerate(result.points.tolist(), start=1):
            anns.append(Annotation(str(k), name, point=(x, y), label=MITOSIS, score=s))
    else:
        positive = np.flatnonzero(result.tile_scores >= result.threshold)
        order = positive[np.argsort(-result.tile_scores[positive], kind="stable")]
        w, h = result.size
        for k, t in enumerate(order.tolist(), start=1):
            x1, y1, x2, y2 = result.tile_boxes[t].tolist()
            box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            anns.append(
                Annotation(str(k), name, box=box, label=MITOSIS, score=float(result.tile_scores[t]))
            )
    w, h = result.size
    info = ImageInfo(name, file_name=name, width=w, height=h, mpp=result.mpp)
    annotations = AnnotationSet(anns, {name: info}, source=str(result.path))
    write_geojson(annotations, path, object_type="detection")


class _Canvas:
    """Heat accumulated on the thumbnail grid while tiles are predicted."""

    def __init__(self, shape: tuple[int, int], downsample: tuple[float, float]) -> None:
        self.shape = shape
        self.downsample = downsample
        self.heatmaps: np.ndarray | None = None

    def _to_canvas(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        dx, dy = self.downsample
        return (box[0] / dx, box[1] / dy, box[2] / dx, box[3] / dy)

    def paint_heatmap(self, box: Sequence[float], heatmap: np.ndarray) -> None:
        from mitokit.report.heatmap import paint_max

        if self.heatmaps is None:
            self.heatmaps = np.zeros(self.shape, dtype=np.float32)
        values = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
        paint_max(self.heatmaps, self._to_canvas(box), values)

    def final(
        self,
        kind: str,
        points: np.ndarray,
        hotspot_height_px: float,
        plan: TilePlan,
        scores: np.ndarray,
    ) -> np.ndarray:
        """The map shown: the model's heat maps, else point density, else tile scores."""
        from mitokit.report.heatmap import paint_max, point_density

        if self.heatmaps is not None:
            return self.heatmaps
        if kind == "points":
            sigma = 0.1 * hotspot_height_px / math.sqrt(self.downsample[0] * self.downsample[1])
            return point_density(points, self.shape, self.downsample, sigma)
        canvas = np.zeros(self.shape, dtype=np.float32)
        boxes = plan.boxes
        cores = np.clip(plan.cores, boxes[:, [0, 1, 0, 1]], boxes[:, [2, 3, 2, 3]])
        for core, s in zip(cores.tolist(), np.clip(scores, 0, 1).tolist(), strict=True):
            paint_max(canvas, self._to_canvas(core), s)
        return canvas


def _on_tissue(points: np.ndarray, mask: TissueMask, margin_px: float) -> np.ndarray:
    """Whether level-0 points lie within ``margin_px`` of the tissue mask."""
    from scipy import ndimage

    dx, dy = mask.downsample
    r = margin_px / math.sqrt(dx * dy)  # in mask pixels
    grown = mask.mask
    if r > 0 and not grown.all():
        grown = ndimage.distance_transform_edt(~grown) <= max(r, 1.0)
    h, w = grown.shape
    c = np.clip((points[:, 0] / dx).astype(np.int64), 0, w - 1)
    rows = np.clip((points[:, 1] / dy).astype(np.int64), 0, h - 1)
    return grown[rows, c]


def _core_centres(cores: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centres of the cores, each cut to its tile and the slide."""
    w, h = size
    lo = np.maximum(np.maximum(cores[:, :2], boxes[:, :2]), 0.0)
    hi = np.minimum(np.minimum(cores[:, 2:], boxes[:, 2:]), [float(w), float(h)])
    return (lo + hi) / 2.0


def _ratio(a: float, b: float) -> float | None:
    return round(float(a) / float(b), 6) if b > 0 else None


# ------------------------------------------------------------------------ inputs and shards


def find_slides(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The slide files named by ``inputs``, in order, each once.

    A folder contributes its files (not sub-folders) whose suffix is in
    :data:`SLIDE_SUFFIXES`, sorted by name; hidden files are left out. A file named directly is
    taken whatever its suffix.

    Raises:
        MitokitError: A missing path, or a folder holding no slide.
    """
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items:
        raise input_error(None, "no slide given")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SLIDE_SUFFIXES
            )
            if not found:
                raise input_error(p, "folder holds no slide or image file")
        elif p.exists():
            found = [p]
        else:
            raise input_error(p, "no such file or folder")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def shard(items: Sequence[Any], *, rank: int, world_size: int) -> list[Any]:
    """The items of one process: those at positions ``i`` with ``i % world_size == rank``.

    Raises:
        MitokitError: ``world_size < 1`` or a rank outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise input_error(None, f"rank {rank} is not in [0, world size {world_size})")
    return [item for i, item in enumerate(items) if i % world_size == rank]


def slide_folder_names(slides: Sequence[Path]) -> dict[Path, str]:
    """The output folder name of each slide: its stem, made safe by :func:`safe_name`.

    ``..tiff`` gets ``_``, ``a\nb.svs`` gets ``a_b``; a stem that is already a plain file name
    keeps it. Two slides whose names would clash are refused, never numbered apart, since a
    resumed run must find each slide's folder under the same name: the same stem, stems that
    become the same safe name (``a b`` and ``a_b`` do not, ``a/b`` and ``a_b`` do), stems that
    differ only in case (one folder on macOS and Windows), and a stem named like the run summary.

    Raises:
        MitokitError: Two slides would share an output folder.
    """
    import re

    from mitokit.io.names import name_key, safe_name

    names: dict[Path, str] = {}
    first: dict[str, tuple[Path, str]] = {}
    for p in slides:
        name = safe_name(p.stem)
        key = name_key(name)
        if re.fullmatch(r"run_summary(\.rank\d+)?\.json", key):
            raise input_error(p, f"its output folder {name!r} would be named like the run summary")
        if key in first:
            other, other_stem = first[key]
            if other_stem == p.stem:
                why = f"has the same name stem as {other}"
            else:
                why = (
                    f"would get the output folder {name!r} of {other} (names are compared "
                    "ignoring case, unsafe characters replaced)"
                )
            raise input_error(p, f"{why}; their outputs would share a folder")
        first[key] = (p, p.stem)
        names[p] = name
    return names


def _fit_tile_size(predictor: Any, forced: int | None) -> int:
    native = int(predictor.tile_size)
    if forced is None or int(forced) == native:
        return native
    forced = int(forced)
    multiple = getattr(predictor, "tile_multiple", None)
    if multiple and forced >= int(multiple) and forced % int(multiple) == 0:
        return forced
    also = f" (or a multiple of {int(multiple)})" if multiple else ""
    raise input_error(
        None,
        f"tile size {forced} does not fit the model, which takes {native}-pixel tiles{also}",
    )


__all__ = [
    "DEFAULT_MERGE_RADIUS_UM",
    "DEFAULT_OVERLAP_UM",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TISSUE_MARGIN_UM",
    "SLIDE_SUFFIXES",
    "RunSummary",
    "SlideOutcome",
    "SlidePredictor",
    "SlideResult",
    "find_slides",
    "shard",
    "slide_folder_names",
    "write_slide_outputs",
]

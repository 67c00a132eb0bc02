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

This module streams and merges; its parts live beside it: :mod:`mitokit.engines.slide_stream`
(tile plan, reader threads, merging), :mod:`mitokit.engines.slide_points` (tile predictions to
level-0 points), :mod:`mitokit.engines.slide_inputs` (slides, shards, folder names, what is read
before the tiles), :mod:`mitokit.engines.slide_results` (what it returns) and
:mod:`mitokit.report.slide_outputs` (the files above, and the heat map's canvas).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.engines.distributed import given_or_env_world
from mitokit.engines.slide_inputs import (
    SLIDE_SUFFIXES,
    _Scan,
    _scan_slide,
    find_slides,
    fit_tile_size,
    plan_opener,
    shard,
    slide_folder_names,
)
from mitokit.engines.slide_points import _Collected, _core_centres, _on_tissue
from mitokit.engines.slide_results import RunSummary, SlideOutcome, SlideResult
from mitokit.engines.slide_stream import (
    ReadGeometry,
    TilePlan,
    merge_points,
    plan_tiles,
    stream_batches,
)
from mitokit.errors import MitokitError, input_error
from mitokit.io.slides.reader import READERS
from mitokit.metrics.hotspot import find_hotspot, hotspot_size_px
from mitokit.report.slide_outputs import (
    DETECTIONS_CSV,
    DETECTIONS_GEOJSON,
    HEATMAP,
    SUMMARY,
    TILES_CSV,
    HeatCanvas,
    write_slide_outputs,
)

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
        reader: ``"auto"``: read tiled TIFFs through tifffile where its pixels equal OpenSlide's
            (see :mod:`mitokit.io.slides.reader`); ``"slide"``: always ``open_slide``'s backend.
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
        reader: str = "auto",
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.tile_size = fit_tile_size(predictor, tile_size)
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
        if channels_last is None:  # PyTorch on the CPU; an ONNX graph reads contiguous input
            channels_last = torch.device(predictor.device).type == "cpu" and (
                getattr(predictor, "backend", "torch") == "torch"
            )
        self.channels_last = bool(channels_last)
        if reader not in READERS:
            raise input_error(None, f"reader must be one of {READERS}, got {reader!r}")
        self.reader = reader
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
        start = time.perf_counter()
        path = Path(path)
        scan = _scan_slide(
            path,
            mpp,
            tile_size=self.tile_size,
            model_mpp=self.predictor.mpp,
            thumbnail=THUMBNAIL_SIZE,
        )
        size = scan.size
        overlap = self._overlap_px(scan.geometry.scale * scan.mpp)
        plan = plan_tiles(
            size, scan.geometry, overlap=overlap, mask=scan.mask, min_tissue=self.min_tissue
        )
        canvas = HeatCanvas(scan.thumbnail.shape[:2], scan.downsample)
        opener, backend = plan_opener(path, mpp, plan, self.reader, scan.backend)
        points, tile_ids, scores = self._stream(opener, plan, size, canvas, desc or path.name)
        points = self._final_points(points, tile_ids, scores, plan, scan)
        hotspot = find_hotspot(points, slide_size=size, mpp=scan.mpp, tissue=scan.mask)
        heat = canvas.final(self.kind, points, hotspot_size_px(scan.mpp)[1], plan, scores)
        return SlideResult(
            path=path,
            size=(int(size[0]), int(size[1])),
            mpp=float(scan.mpp),
            mpp_source=scan.mpp_source,
            kind=self.kind,
            points=points,
            tile_boxes=plan.boxes,
            tile_scores=scores,
            threshold=self.threshold,
            tissue=scan.mask,
            hotspot=hotspot,
            thumbnail=scan.thumbnail,
            heat=heat,
            settings=self._settings(scan.geometry, overlap, backend),
            seconds=time.perf_counter() - start,
        )

    def _final_points(
        self,
        points: np.ndarray,
        tile_ids: np.ndarray,
        scores: np.ndarray,
        plan: TilePlan,
        scan: _Scan,
    ) -> np.ndarray:
        """The slide's detections: cross-tile duplicates merged, points on glass dropped.

        For tile models: the centres of the positive tiles' cores, highest score first.
        """
        radius = self.merge_radius_um / scan.mpp
        keep = merge_points(points, tile_ids, radius=radius) if len(points) else np.zeros(0, int)
        points = points[keep]
        if self.tissue_margin_um is not None and len(points):
            points = points[_on_tissue(points, scan.mask, self.tissue_margin_um / scan.mpp)]
        if self.kind == "tiles":
            positive = scores >= self.threshold
            centres = _core_centres(plan.cores[positive], plan.boxes[positive], scan.size)
            points = np.concatenate([centres, scores[positive, None]], axis=1)
            points = points[np.argsort(-points[:, 2], kind="stable")]
        return points

    def _settings(self, geometry: ReadGeometry, overlap: int, reader: str) -> dict[str, Any]:
        """How the slide was read, for its summary."""
        return {
            "model": {
                "task": self.predictor.task,
                "tile_size": self.tile_size,
                "mpp": self.predictor.mpp,
                "device": str(self.predictor.device),
                "backend": getattr(self.predictor, "backend", "torch"),
            },
            "reading": {
                "reader": reader,
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
        opener: Callable[[], Any],
        plan: TilePlan,
        size: tuple[int, int],
        canvas: HeatCanvas,
        desc: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed the planned tiles to the model; (points, their tiles, tile scores)."""
        from tqdm.auto import tqdm

        cuda = torch.device(self.predictor.device).type == "cuda"
        collected = _Collected(plan, size, canvas, self.threshold)
        bar = tqdm(
            total=len(plan),
            desc=desc,
            unit="tile",
            leave=False,
            disable=None if self.progress else True,
            file=sys.stderr,
        )
        batches = stream_batches(
            opener,
            plan,
            batch_size=self.batch_size,
            workers=self.workers,
            pin_memory=cuda,
        )
        try:
            for batch in batches:
                collected.add(batch.tiles, self._predict_batch(batch))
                bar.update(len(batch.tiles))
        finally:
            batches.close()
            bar.close()
        return collected.result()

    def _predict_batch(self, batch: Any) -> Sequence[Any]:
        """The model's predictions for a batch; its buffer handed back to the readers."""
        device = torch.device(self.predictor.device)
        cuda = device.type == "cuda"
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
        return preds

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
        from mitokit.io.atomic import make_folder, remove_stale_temporaries, write_text_atomic

        slides = find_slides(inputs)
        names = slide_folder_names(slides)
        rank, world_size = given_or_env_world(rank, world_size)
        mine = shard(slides, rank=rank, world_size=world_size)
        out = make_folder(out_dir)
        remove_stale_temporaries(out)  # left by a killed run; those of live runs are locked
        summary = RunSummary(out, rank=rank, world_size=world_size, total=len(slides))
        for k, path in enumerate(mine, start=1):
            desc = f"[{k}/{len(mine)}] {path.name}"
            outcome = self._run_one(path, out, names[path], mpp=mpp, overwrite=overwrite, desc=desc)
            summary.slides.append(outcome)
        write_text_atomic(summary.path, json.dumps(summary.to_dict(), indent=2) + "\n")
        return summary

    def _run_one(
        self,
        path: Path,
        out: Path,
        name: str,
        *,
        mpp: float | None,
        overwrite: bool,
        desc: str,
    ) -> SlideOutcome:
        """Predict one slide into ``out/name`` unless it is done; what happened to it.

        Raises:
            OutputError: An output could not be written (the run stops).
        """
        from mitokit.io.atomic import OutputError
        from mitokit.io.names import child_path

        folder = out / name
        start = time.perf_counter()
        try:
            folder = child_path(out, name)
            if not overwrite and (folder / SUMMARY).is_file():
                return SlideOutcome(str(path), "skipped", str(folder))
            result = self.predict_slide(path, mpp=mpp, desc=desc)
            write_slide_outputs(result, folder)
        except OutputError:
            raise  # the output folder cannot take files: no other slide would fare better
        except MitokitError as exc:
            self.log(f"mitokit: error: {exc} (slide skipped)")
            return SlideOutcome(str(path), "failed", str(folder), str(exc))
        count = result.mitotic_count
        return SlideOutcome(
            str(path),
            "done",
            str(folder),
            count=result.positive_tiles if count is None else count,
            seconds=round(time.perf_counter() - start, 3),
        )


__all__ = [
    "DEFAULT_MERGE_RADIUS_UM",
    "DEFAULT_OVERLAP_UM",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TISSUE_MARGIN_UM",
    "DETECTIONS_CSV",
    "DETECTIONS_GEOJSON",
    "HEATMAP",
    "SLIDE_SUFFIXES",
    "SUMMARY",
    "TILES_CSV",
    "RunSummary",
    "SlideOutcome",
    "SlidePredictor",
    "SlideResult",
    "find_slides",
    "shard",
    "slide_folder_names",
    "write_slide_outputs",
]

"""The files of one slide's prediction: detections (CSV, GeoJSON), tiles, heat map, summary.

:func:`write_slide_outputs` writes what :meth:`mitokit.engines.slide.SlidePredictor.predict_slide`
found into one folder that appears whole or not at all (the file names below, ``summary.json``
last); :class:`HeatCanvas` is the map the engine paints while the tiles are predicted (the
model's heat maps, else the density of detections, else the tile scores).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mitokit.engines.slide_results import SlideResult
    from mitokit.engines.slide_stream import TilePlan

SUMMARY = "summary.json"
DETECTIONS_CSV = "detections.csv"
DETECTIONS_GEOJSON = "detections.geojson"
TILES_CSV = "tiles.csv"
HEATMAP = "heatmap.png"


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


def slide_summary(result: SlideResult) -> dict[str, Any]:
    """The content of ``summary.json``: counts, areas, the hotspot, settings and file names.

    Args:
        result: What the slide engine found on the slide.
    """
    from mitokit import __version__

    area = result.tissue_area_mm2
    count = result.mitotic_count
    hotspot = result.hotspot.to_dict()
    hotspot["count_per_mm2"] = _ratio(result.hotspot.count, result.hotspot.area_mm2)
    hotspot["counts"] = "figures" if result.kind == "points" else "positive tiles"
    return {
        "slide": str(result.path),
        "name": result.name,
        "width": result.size[0],
        "height": result.size[1],
        "mpp": result.mpp,
        "mpp_source": result.mpp_source,
        "kind": result.kind,
        "threshold": result.threshold,
        "mitotic_count": count,
        "tissue_area_mm2": round(area, 6),
        "mitotic_count_per_mm2": None if count is None else _ratio(count, area),
        "positive_tiles": result.positive_tiles,
        "positive_tiles_per_mm2": _ratio(result.positive_tiles, area),
        "hotspot": hotspot,
        "tiles": len(result.tile_scores),
        "seconds": round(result.seconds, 3),
        "tiles_per_s": _ratio(len(result.tile_scores), result.seconds),
        **result.settings,
        "files": {
            "detections_csv": DETECTIONS_CSV,
            "detections_geojson": DETECTIONS_GEOJSON,
            "tiles_csv": TILES_CSV,
            "heatmap": HEATMAP,
        },
        "mitokit": __version__,
    }


def _ratio(a: float, b: float) -> float | None:
    return round(float(a) / float(b), 6) if b > 0 else None


class HeatCanvas:
    """Heat accumulated on the thumbnail grid while tiles are predicted.

    Args:
        shape: ``(h, w)`` of the thumbnail.
        downsample: Level-0 pixels per thumbnail pixel, ``(x, y)``.
    """

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


__all__ = [
    "DETECTIONS_CSV",
    "DETECTIONS_GEOJSON",
    "HEATMAP",
    "SUMMARY",
    "TILES_CSV",
    "HeatCanvas",
    "slide_summary",
    "write_slide_outputs",
]

"""Synthetic datasets on disk, in the formats real data uses.

Each writer fills a folder with images, label files of every kind and a ``manifest.json`` that
records the generator version, the seed, the parameters and the true ``m`` of every object, so
every later command runs on the output unchanged and every result can be checked against truth:

- patches: ``images/patch_000000.png`` (cell-centred), ``labels.csv`` (mitokit CSV: a point at
  the centre of each patch with the pathologists' votes; class = majority);
- tiles: ``images/tile_0000.png`` plus ``pathologists.csv`` (votes), ``consensus.geojson`` and
  ``consensus.json`` (points and boxes, imposters as ``non_mitosis``), ``centroids.csv``
  (consensus mitoses only), ``crowd.json`` (COCO boxes with agreement), ``image_labels.csv``;
- slide: ``slide.tiff`` (pyramidal, tiled, with mpp) plus the same label files for the slide.

Files are written into a temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitokit import __version__
from mitokit.data.synthetic.cells import CellTable
from mitokit.data.synthetic.labelling import CrowdPanel, RaterPanel, label_scene, rate_pathologists
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations
from mitokit.io.atomic import write_text_atomic
from mitokit.labels.aggregate import aggregate_votes
from mitokit.types import MITOSIS, NON_MITOSIS

GENERATOR_VERSION = "1"
"""Bumped whenever the same seed and parameters would give different pixels or labels."""

Progress = Callable[[int], None] | None


def _params_dict(obj: Any) -> Any:
    if obj is None:
        return None
    if is_dataclass(obj):
        return {k: _params_dict(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _params_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_params_dict(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _write_manifest(
    out: Path, kind: str, seed: int, parameters: dict, files: dict, objects: list
) -> dict:
    """Write ``out/manifest.json`` (generator, kind, seed, parameters, files and the truth of
    every object) and return it."""
    manifest = {
        "generator": {
            "name": "mitokit.data.synthetic",
            "version": GENERATOR_VERSION,
            "mitokit": __version__,
        },
        "kind": kind,
        "seed": seed,
        "parameters": _params_dict(parameters),
        "files": files,
        "objects": objects,
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def _labelling_parameters(
    panel: RaterPanel | None, crowd: CrowdPanel | None, parameters: dict | None, **more: Any
) -> dict:
    """The labelling processes (their defaults where None), ``more``, then ``parameters``."""
    return {
        "panel": panel or RaterPanel(),
        "crowd": crowd or CrowdPanel(),
        **more,
        **(parameters or {}),
    }


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG", optimize=False)


def write_patch_dataset(
    out: str | os.PathLike,
    images: np.ndarray,
    cells: CellTable,
    *,
    seed: int,
    panel: RaterPanel | None = None,
    parameters: dict | None = None,
    progress: Progress = None,
) -> dict:
    """Write cell-centred patches with per-rater votes.

    Args:
        out: Folder to fill (must exist; use :func:`mitokit.io.atomic.atomic_dir`).
        images: (N, S, S, 3) uint8 patches, each centred on one cell.
        cells: The N centre cells (their truth).
        seed: Seed of the raters (the manifest records it).
        panel: The pathologists (default :class:`RaterPanel` ``()``).
        parameters: Generator parameters to record.
        progress: Called every 100 patches with the number written so far.

    Returns:
        The manifest, as written to ``manifest.json``.
    """
    out = Path(out)
    if len(images) != len(cells):
        raise ValueError(f"{len(images)} patches for {len(cells)} cells")
    panel = RaterPanel() if panel is None else panel
    votes = rate_pathologists(cells, panel=panel, seed=seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    size = int(images.shape[1])
    anns, info, objects = [], {}, []
    for i, image in enumerate(images):
        name = f"patch_{i:06d}.png"
        _save_png(out / "images" / name, image)
        major = aggregate_votes(votes[i], repeats="rater_mean").majority if votes[i] else 0
        truth = cells.subset([i]).to_records()[0]
        anns.append(
            Annotation(
                id=name[:-4],
                image=name,
                point=(size / 2, size / 2),
                label=MITOSIS if major == 1 else NON_MITOSIS,
                votes=tuple(votes[i]),
                extra={"m": truth["m"], "kind": truth["kind"], "phase": truth["phase"]},
            )
        )
        info[name] = ImageInfo(name, file_name=f"images/{name}", width=size, height=size)
        objects.append({"image": name, **truth})
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1)
    labels = AnnotationSet(anns, info, list(panel.rater_ids), source=str(out), format="synthetic")
    write_annotations(labels, out / "labels.csv")
    return _write_manifest(
        out,
        "patches",
        seed,
        {"panel": panel, **(parameters or {})},
        {"images": "images/", "labels": "labels.csv"},
        objects,
    )


def _write_scene_labels(out: Path, scenes: Sequence[Any], image_labels: dict[str, int]) -> dict:
    merged = {
        k: AnnotationSet.merge([getattr(s, k) for s in scenes])
        for k in ("pathologists", "consensus", "centroids", "crowd")
    }
    write_annotations(merged["pathologists"], out / "pathologists.csv")
    write_annotations(merged["consensus"], out / "consensus.geojson")
    write_annotations(merged["consensus"], out / "consensus.json")
    write_annotations(merged["centroids"], out / "centroids.csv")
    write_annotations(merged["crowd"], out / "crowd.json", bbox_format="xyxy")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "label"])
    for image, label in image_labels.items():
        w.writerow([image, label])
    write_text_atomic(out / "image_labels.csv", buf.getvalue())
    return {
        "pathologists": "pathologists.csv",
        "consensus": ["consensus.geojson", "consensus.json"],
        "centroids": "centroids.csv",
        "crowd": "crowd.json",
        "image_labels": "image_labels.csv",
    }


def write_tile_dataset(
    out: str | os.PathLike,
    tiles: Iterable[tuple[np.ndarray, CellTable]],
    *,
    seed: int,
    panel: RaterPanel | None = None,
    crowd: CrowdPanel | None = None,
    parameters: dict | None = None,
    progress: Progress = None,
) -> dict:
    """Write tiles with every label kind (votes, consensus, centroids, crowd boxes, presence).

    Args:
        out: Folder to fill.
        tiles: (image HxWx3 uint8, cells on it in tile pixels) per tile; an iterator is
            consumed one tile at a time, so memory does not grow with the number of tiles.
        seed: Seed of the labelling processes (tile ``i`` uses the stream ``(seed, 1, i)``).
        panel, crowd: The pathologists and the crowd boxing mitoses (defaults
            :class:`RaterPanel` ``()`` and :class:`CrowdPanel` ``()``).
        parameters: Generator parameters to record in the manifest.
        progress: Called after each tile with the number of tiles written so far.

    Returns:
        The manifest, as written to ``manifest.json``.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    scenes, objects, image_labels = [], [], {}
    for i, (image, cells) in enumerate(tiles):
        name = f"tile_{i:04d}.png"
        _save_png(out / "images" / name, image)
        h, w = image.shape[:2]
        scene = label_scene(
            cells,
            image_id=name,
            seed=np.random.default_rng([int(seed), 1, i]),
            panel=panel,
            crowd=crowd,
            size=(w, h),
        )
        scenes.append(scene)
        image_labels[name] = scene.image_label
        objects.extend({"image": name, **r} for r in cells.to_records())
        if progress is not None:
            progress(i + 1)
    files = {"images": "images/", **_write_scene_labels(out, scenes, image_labels)}
    return _write_manifest(
        out, "tiles", seed, _labelling_parameters(panel, crowd, parameters), files, objects
    )


def write_slide_labels(
    out: str | os.PathLike,
    cells: CellTable,
    *,
    slide_name: str,
    size: tuple[int, int],
    seed: int,
    panel: RaterPanel | None = None,
    crowd: CrowdPanel | None = None,
    parameters: dict | None = None,
) -> dict:
    """Write the label files and manifest of a synthetic slide already written to ``out``."""
    out = Path(out)
    scene = label_scene(
        cells,
        image_id=slide_name,
        seed=np.random.default_rng([int(seed), 2]),
        panel=panel,
        crowd=crowd,
        size=size,
    )
    files = {
        "slide": slide_name,
        **_write_scene_labels(out, [scene], {slide_name: scene.image_label}),
    }
    objects = [{"image": slide_name, **r} for r in cells.to_records()]
    return _write_manifest(
        out,
        "slide",
        seed,
        _labelling_parameters(panel, crowd, parameters, size=list(size)),
        files,
        objects,
    )

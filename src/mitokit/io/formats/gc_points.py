"""Grand-Challenge "Multiple points" JSON: MIDOG 2021/2022/2025 ground truth and submissions.

One file per image::

    {"type": "Multiple points",
     "points": [{"name": "mitotic figure", "point": [x_mm, y_mm, 0], "probability": 0.92}, ...],
     "version": {"major": 1, "minor": 0}}

Coordinates are in millimetres from the image's top-left corner; level-0 pixels are
``px = mm * 1000 / mpp``, so reading and writing need the image's microns-per-pixel (never
guessed). ``name`` gives the class through :func:`canonical_class` (``"mitotic figure"`` ->
``mitosis``, ``"non-mitotic figure"`` -> ``non_mitosis``), ``default_label`` where it is absent;
``probability`` becomes the object's ``score``.

Reading is liberal where the meaning is clear (no ``name``, no ``probability``, no ``version``,
further keys such as ``"type": "Point"`` per point, a point of two numbers without z) and strict
where it is not: ``points`` not a list, a point that is not a list of 2-3 finite numbers, a
non-finite probability are errors naming the file and the point.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.atomic import write_text_atomic
from mitokit.io.formats._common import (
    all_images,
    dumps_json,
    load_json,
    make_annotation,
    number,
    optional_number,
    short,
    text_value,
)
from mitokit.types import MITOSIS, NON_MITOSIS

FORMAT = "gc_points"
TYPE = "Multiple points"
NAMES = {MITOSIS: "mitotic figure", NON_MITOSIS: "non-mitotic figure"}
"""The name written per canonical class (other classes keep their own name)."""


def is_gc_points(data: Any) -> bool:
    """Whether parsed JSON is a Grand-Challenge "Multiple points" object."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("type"), str)
        and data["type"].strip().lower() == TYPE.lower()
        and isinstance(data.get("points"), list)
    )


def check_mpp(mpp: Any, path: Path) -> float:
    """The mpp as a positive finite float; a missing one is an error naming the file."""
    if mpp is None:
        raise input_error(
            path,
            "Grand-Challenge points are in millimetres: the image's mpp is needed to convert "
            "them to pixels (pass mpp=, or --mpp on the command line)",
        )
    value = optional_number(mpp, "mpp", path, text=True)
    if value is None or value <= 0:
        raise input_error(path, f"mpp must be a positive number, got {short(mpp)}")
    return value


def read_gc_points(
    path: Path,
    *,
    mpp: float | None = None,
    image: str | None = None,
    default_label: str = MITOSIS,
) -> AnnotationSet:
    """Read a Grand-Challenge "Multiple points" file.

    Args:
        path: The file.
        mpp: Microns per pixel of the image (required).
        image: Image id of the points; the file's stem by default.
        default_label: Class of points without a ``name``.

    Returns:
        One point per entry, ids ``<image>_<n>`` (n counts from 1), the image listed with its
        mpp.

    Raises:
        MitokitError: No mpp, invalid JSON, ``points`` not a list, a malformed point.
    """
    return gc_points_from_json(
        load_json(path), Path(path), mpp=mpp, image=image, default_label=default_label
    )


def gc_points_from_json(
    data: Any,
    path: Path,
    *,
    mpp: float | None = None,
    image: str | None = None,
    default_label: str = MITOSIS,
) -> AnnotationSet:
    """Build the set from parsed JSON (see :func:`read_gc_points`)."""
    path = Path(path)
    mpp_value = check_mpp(mpp, path)
    scale = 1000.0 / mpp_value
    if not isinstance(data, dict):
        raise input_error(path, 'not a Grand-Challenge "Multiple points" object')
    points = data.get("points")
    if not isinstance(points, list):
        raise input_error(path, f"'points' must be a list ({short(points)})")
    image_id = path.stem if image is None else str(image)
    default_label = canonical_class(default_label)
    annotations: list[Annotation] = []
    for k, item in enumerate(points):
        where = f"point #{k + 1}"
        if not isinstance(item, dict):
            raise input_error(path, f"{where} is not an object ({short(item)})")
        coords = item.get("point")
        if not isinstance(coords, list) or len(coords) not in (2, 3):
            raise input_error(
                path, f"{where}: 'point' must be [x, y] or [x, y, z] ({short(coords)})"
            )
        x = number(coords[0], f"{where} x", path) * scale
        y = number(coords[1], f"{where} y", path) * scale
        if len(coords) == 3:
            number(coords[2], f"{where} z", path)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise input_error(path, f"{where} is too large to convert to pixels")
        name = item.get("name")
        label = default_label if name is None else canonical_class(text_value(name, where, path))
        score = optional_number(item.get("probability"), f"{where} probability", path)
        annotations.append(
            make_annotation(
                path,
                where,
                id=f"{image_id}_{k + 1}",
                image=image_id,
                point=(x, y),
                label=label,
                score=score,
            )
        )
    return AnnotationSet(
        annotations, {image_id: ImageInfo(image_id, mpp=mpp_value)}, [], str(path), FORMAT
    )


def write_gc_points(
    annotations: AnnotationSet,
    path: Path,
    *,
    mpp: float | None = None,
    indent: int | None = 2,
) -> None:
    """Write one image's objects as a Grand-Challenge "Multiple points" file (atomically).

    A point object is written at its point, a box at its centre; the class as ``name``
    (:data:`NAMES`), the score (where there is one) as ``probability``, z as 0.

    Args:
        annotations: The set; it must hold one image (select one with ``image=`` in
            :func:`mitokit.io.formats.write`).
        path: The output file.
        mpp: Microns per pixel; overrides the image's own (as ``--mpp`` does everywhere),
            required where the image has none.
        indent: JSON indentation; None writes one line.

    Raises:
        MitokitError: Several images or none, or no mpp.
    """
    path = Path(path)
    images = all_images(annotations)
    if len(images) != 1:
        names = ", ".join(repr(i) for i in list(images)[:5]) or "none"
        raise input_error(
            path,
            f"a Grand-Challenge points file holds one image, the set has {len(images)} "
            f"({names}); choose one (image=, --image)",
        )
    info = next(iter(images.values()))
    scale = check_mpp(mpp if mpp is not None else info.mpp, path) / 1000.0
    points = []
    for ann in annotations.annotations:
        x, y = ann.center
        entry: dict[str, Any] = {
            "name": NAMES.get(ann.label, ann.label),
            "point": [x * scale, y * scale, 0],
        }
        if ann.score is not None:
            entry["probability"] = ann.score
        points.append(entry)
    data = {"type": TYPE, "points": points, "version": {"major": 1, "minor": 0}}
    write_text_atomic(path, dumps_json(data, indent))

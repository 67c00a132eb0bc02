"""What every reader's output goes through: the border and uniqueness rules of reading.

Real files are taken as published where the meaning is clear: a box crossing its image's border is
clipped, an object centre just outside the border (:data:`BORDER_TOLERANCE_PX`) is kept; what was
adjusted is counted. What cannot be interpreted (an object wholly or far outside its image,
duplicate ids) is an error naming the file; under ``strict`` every adjustment is one too.
"""

from __future__ import annotations

import math

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.io.formats._common import PathLike, short

BORDER_TOLERANCE_PX = 25.0
"""How far outside its image an object's centre may lie and still be kept: half of the 50 px box
MIDOG draws around a figure (a figure cut by the border has its box centre outside)."""


def validate(aset: AnnotationSet, path: PathLike, *, strict: bool = False) -> AnnotationSet:
    """Checks every reader's output goes through; what real files need is adjusted and counted.

    * A box crossing its image's border (or reaching below 0 where the size is unknown) is
      clipped to the image; its centre before clipping stays the object's point, so evaluation
      by centre sees the published position. Counted as ``clipped_boxes``.
    * An object centre on or just outside the border, at most :data:`BORDER_TOLERANCE_PX`
      away, is kept as it is (``border_points``, counted where strictly outside).
    * A box wholly outside its image, a centre further out, duplicate object ids and agreements
      outside [0, 1] are errors. Non-finite numbers and boxes with x2 < x1 never get this far
      (:class:`Annotation` refuses them).
    * With ``strict`` every adjustment, including those a reader made (``adjustments`` already
      set, e.g. a split MultiPolygon), is an error instead.

    Returns:
        ``aset``, changed in place: annotations replaced where clipped, ``adjustments`` counted.
    """
    counts = dict(aset.adjustments)
    if strict and counts:
        kind, n = next(iter(counts.items()))
        raise input_error(path, f"{n} object(s) would need adjusting ({kind}); refused (--strict)")
    seen: dict[str, int] = {}
    out = []
    for k, ann in enumerate(aset.annotations):
        if ann.id in seen:
            raise input_error(
                path,
                f"annotation id {short(ann.id)} appears twice (objects #{seen[ann.id] + 1} "
                f"and #{k + 1}); ids must be unique",
            )
        seen[ann.id] = k
        if ann.agreement is not None and not 0.0 <= ann.agreement <= 1.0:
            raise input_error(
                path, f"annotation {ann.id}: agreement {ann.agreement:g} is outside [0, 1]"
            )
        place = _Place(ann, aset.images.get(ann.image))
        if ann.box is not None:
            ann = _clip_box(ann, place, path, strict, counts)
        if _centre_outside(ann, place, path, strict):
            counts["border_points"] = counts.get("border_points", 0) + 1
        out.append(ann)
    aset.annotations = out
    aset.adjustments = {kind: n for kind, n in counts.items() if n}
    return aset


def check_centres(aset: AnnotationSet, path: PathLike | None, *, strict: bool = False) -> int:
    """The centre rule of :func:`validate`, without changing anything.

    Returns:
        How many centres lie just outside their image (within :data:`BORDER_TOLERANCE_PX`).

    Raises:
        MitokitError: A centre further out, or under ``strict`` outside at all.
    """
    return sum(
        _centre_outside(ann, _Place(ann, aset.images.get(ann.image)), path, strict)
        for ann in aset.annotations
    )


class _Place:
    """An object's image for the rules: its extent (infinite where unknown) and its names in
    messages."""

    def __init__(self, ann: Annotation, info: ImageInfo | None) -> None:
        self.width = math.inf if info is None or info.width is None else float(info.width)
        self.height = math.inf if info is None or info.height is None else float(info.height)
        self.where = f"annotation {ann.id} on image {ann.image!r}"
        self.size = (
            ""
            if info is None or math.isinf(self.width) or math.isinf(self.height)
            else f" of size {info.width}x{info.height}"
        )


def _centre_outside(ann: Annotation, place: _Place, path: PathLike | None, strict: bool) -> bool:
    """Whether the object's centre lies outside its image but near enough to be kept."""
    x, y = ann.center
    outside = max(-x, -y, x - place.width, y - place.height)
    if outside <= 0:
        return False
    if strict or outside > BORDER_TOLERANCE_PX:
        reason = (
            "refused (--strict)"
            if outside <= BORDER_TOLERANCE_PX
            else (f"more than {BORDER_TOLERANCE_PX:g} px outside")
        )
        raise input_error(
            path,
            f"{place.where}: centre ({x:g}, {y:g}) lies outside the image{place.size}; {reason}",
        )
    return True


def _clip_box(
    ann: Annotation, place: _Place, path: PathLike, strict: bool, counts: dict[str, int]
) -> Annotation:
    where = place.where + place.size
    x1, y1, x2, y2 = ann.box  # type: ignore[misc]
    c1, d1 = max(x1, 0.0), max(y1, 0.0)
    c2, d2 = min(x2, place.width), min(y2, place.height)
    if c2 < c1 or d2 < d1 or (c2 == c1 and x2 > x1) or (d2 == d1 and y2 > y1):
        raise input_error(
            path, f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies wholly outside the image"
        )
    if (c1, d1, c2, d2) == (x1, y1, x2, y2):
        return ann
    if strict:
        raise input_error(
            path,
            f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) crosses the image border; "
            "refused (--strict)",
        )
    counts["clipped_boxes"] = counts.get("clipped_boxes", 0) + 1
    return ann.with_(point=ann.center, box=(c1, d1, c2, d2))

"""One annotation model for every label format.

An :class:`Annotation` is one object (a cell, a mitotic figure, an imposter) on one image or slide:
a point or a box in level-0 pixels, a canonical class, optional per-rater votes (repeats allowed),
an optional agreement score, and an optional prediction score. An :class:`AnnotationSet` holds the
annotations of one or many images together with the list of images the source names, annotated
or not, and the raters it knows.

Readers and writers for the concrete formats live in :mod:`mitokit.io.formats`; use
:func:`read_annotations` and :func:`write_annotations`, which detect the format from content.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mitokit.types import MITOSIS, NON_MITOSIS, BoxXYXY, PointXY

# Category names seen in the field, lower-cased, mapped to the canonical classes.
_CLASS_SYNONYMS = {
    "mitosis": MITOSIS,
    "mitoses": MITOSIS,
    "mitotic figure": MITOSIS,
    "mitotic figures": MITOSIS,
    "mitotic": MITOSIS,
    "mitotic_figure": MITOSIS,
    "mf": MITOSIS,
    "non_mitosis": NON_MITOSIS,
    "non-mitosis": NON_MITOSIS,
    "nonmitosis": NON_MITOSIS,
    "not mitosis": NON_MITOSIS,
    "not_mitosis": NON_MITOSIS,
    "not mitotic figure": NON_MITOSIS,
    "non mitotic figure": NON_MITOSIS,
    "non-mitotic figure": NON_MITOSIS,
    "nonmitotic figure": NON_MITOSIS,
    "non-mitotic": NON_MITOSIS,
    "imposter": NON_MITOSIS,
    "impostor": NON_MITOSIS,
    "mitotic-like figure": NON_MITOSIS,
    "mitotic like figure": NON_MITOSIS,
    "mitotic figure lookalike": NON_MITOSIS,
    "mitotic figure look-alike": NON_MITOSIS,
    "mitotic cell lookalike": NON_MITOSIS,
    "mitotic cell look-alike": NON_MITOSIS,
    "mitosis lookalike": NON_MITOSIS,
    "mitosis look-alike": NON_MITOSIS,
    "lookalike": NON_MITOSIS,
    "look-alike": NON_MITOSIS,
    "hard negative": NON_MITOSIS,
    "negative": NON_MITOSIS,
}


def canonical_class(name: str) -> str:
    """Map a category name of any format to ``mitosis``, ``non_mitosis`` or itself.

    Names that are neither are kept as given (stripped), so no class is lost.
    """
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    return _CLASS_SYNONYMS.get(key, _CLASS_SYNONYMS.get(key.replace(" ", "_"), str(name).strip()))


@dataclass(frozen=True)
class Vote:
    """One rating of one object by one rater.

    ``value`` is the rater's belief that the object is a mitosis (the positive class of the
    study), in [0, 1]: 1 = yes, 0 = no, 0.5 = unsure (the 0/0.5/1 scale of probabilistic labels).
    A rater who rated the same object several times has several votes.
    """

    rater: str
    value: float


@dataclass(frozen=True)
class ImageInfo:
    """An image or slide named by a label source (annotated or not)."""

    id: str
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    mpp: float | None = None


@dataclass(frozen=True)
class Annotation:
    """One annotated object.

    Attributes:
        id: Identifier, unique within its set (kept from the source where it has one).
        image: Identifier of the image or slide the object is on.
        point: Centre (x, y) in level-0 pixels, or None for a box-only object.
        box: (x1, y1, x2, y2) in level-0 pixels, or None for a point-only object.
        label: ``mitosis``, ``non_mitosis`` or any other class name, kept as given.
        votes: Per-rater votes; repeated votes of one rater are kept.
        agreement: Agreement of the raters on this object in [0, 1] (crowd agreement, fraction of
            pathologists), or None.
        score: A model's confidence for a prediction, or None for ground truth.
        extra: Other per-object fields of the source (phase labels, dataset, ...), by name.
    """

    id: str
    image: str
    point: PointXY | None = None
    box: BoxXYXY | None = None
    label: str = MITOSIS
    votes: tuple[Vote, ...] = ()
    agreement: float | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.point is None and self.box is None:
            raise ValueError(f"annotation {self.id!r} has neither a point nor a box")
        if self.point is not None:
            x, y = self.point
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"annotation {self.id!r} has a non-finite point {self.point}")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not all(math.isfinite(v) for v in self.box):
                raise ValueError(f"annotation {self.id!r} has a non-finite box {self.box}")
            if x2 < x1 or y2 < y1:
                raise ValueError(f"annotation {self.id!r} has a box with x2 < x1 or y2 < y1")
        for name in ("agreement", "score"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"annotation {self.id!r} has a non-finite {name} ({value})")
        for vote in self.votes:
            if not (math.isfinite(vote.value) and 0.0 <= vote.value <= 1.0):
                raise ValueError(
                    f"annotation {self.id!r} has a vote of {vote.value} outside [0, 1]"
                )

    @property
    def center(self) -> PointXY:
        """The point, or the centre of the box."""
        if self.point is not None:
            return self.point
        x1, y1, x2, y2 = self.box  # type: ignore[misc]
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)

    def box_or_square(self, size: float) -> BoxXYXY:
        """The box, or a square of side ``size`` pixels centred on the point."""
        if self.box is not None:
            return self.box
        x, y = self.point  # type: ignore[misc]
        h = size / 2.0
        return (x - h, y - h, x + h, y + h)

    def with_(self, **changes) -> Annotation:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class AnnotationSet:
    """Annotations of one or many images, with the images and raters the source names.

    Attributes:
        annotations: The objects.
        images: Images or slides the source lists, by id, annotated or not.
        raters: Rater ids the source knows (also those without a vote here).
        source: Where the set came from (a path), for messages.
        format: The format it was read from.
        vote_target: What a vote of 1 says yes to (``mitosis`` unless the source rates another
            property, e.g. ``atypical`` for AMi-Br's per-rater atypicality votes).
        adjustments: What reading changed to take the source as published, counted by kind
            (``clipped_boxes``, ``border_points``, ``multipolygon_split``); see
            :func:`adjustment_notes`. Empty where the source was taken as it is.
    """

    annotations: list[Annotation] = field(default_factory=list)
    images: dict[str, ImageInfo] = field(default_factory=dict)
    raters: list[str] = field(default_factory=list)
    source: str | None = None
    format: str | None = None
    vote_target: str = MITOSIS
    adjustments: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.annotations)

    def __iter__(self) -> Iterator[Annotation]:
        return iter(self.annotations)

    def by_image(self) -> dict[str, list[Annotation]]:
        """Annotations grouped by image id; every listed image appears, possibly empty."""
        groups: dict[str, list[Annotation]] = {image_id: [] for image_id in self.images}
        for ann in self.annotations:
            groups.setdefault(ann.image, []).append(ann)
        return groups

    def filter(self, *, label: str | None = None, image: str | None = None) -> AnnotationSet:
        """A set with only the annotations of one class and/or one image."""
        kept = [
            a
            for a in self.annotations
            if (label is None or a.label == label) and (image is None or a.image == image)
        ]
        images = (
            self.images if image is None else {k: v for k, v in self.images.items() if k == image}
        )
        return AnnotationSet(
            kept,
            dict(images),
            list(self.raters),
            self.source,
            self.format,
            self.vote_target,
            dict(self.adjustments),
        )

    @classmethod
    def merge(cls, sets: Iterable[AnnotationSet]) -> AnnotationSet:
        """Concatenate sets; images and raters are united in order of appearance."""
        out = cls()
        for s in sets:
            out.annotations.extend(s.annotations)
            for k, v in s.images.items():
                out.images.setdefault(k, v)
            for r in s.raters:
                if r not in out.raters:
                    out.raters.append(r)
            out.source = s.source if out.source is None else out.source
            out.format = s.format if out.format in (None, s.format) else "mixed"
            for kind, n in s.adjustments.items():
                out.adjustments[kind] = out.adjustments.get(kind, 0) + n
        return out

    def check_inside(self, path: str | os.PathLike | None = None, *, strict: bool = False) -> None:
        """Raise if an object's centre lies outside its image further than reading allows.

        The rule of the readers (:func:`read_annotations`): a centre on or within
        :data:`~mitokit.io.formats.BORDER_TOLERANCE_PX` outside its image's border passes, a
        centre further out (or below 0 where the image's size is unknown) is an error. Nothing
        is changed: reading clips boxes and counts what it kept, this only checks.

        Args:
            path: The file named in the message (default: the set's ``source``).
            strict: Refuse any centre outside the image, as ``read_annotations(strict=True)``.

        Raises:
            MitokitError: A centre outside beyond the tolerance (any distance under ``strict``).
        """
        from mitokit.io.formats._validate import check_centres

        check_centres(self, path or self.source, strict=strict)


_ADJUSTMENT_TEXT = {
    "clipped_boxes": "{n} box(es) crossed the image border and were clipped",
    "border_points": (
        "{n} object centre(s) lay just outside the image border (within half a box) and were kept"
    ),
    "multipolygon_split": (
        "{n} MultiPolygon(s) with separate parts were read as one object per part"
    ),
}


def adjustment_notes(aset: AnnotationSet) -> list[str]:
    """One line per kind of adjustment reading made, naming the source (empty if none)."""
    where = f"{aset.source}: " if aset.source else ""
    notes = []
    for kind, n in aset.adjustments.items():
        if n:
            text = _ADJUSTMENT_TEXT.get(kind, "{n} object(s) adjusted (" + kind + ")")
            notes.append(where + text.format(n=n))
    return notes


def read_annotations(
    path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the user-facing word
    strict: bool | None = None,
    **options,
) -> AnnotationSet:
    """Read an annotation file (or a folder of MITOS-ATYPIA-14 CSVs) of any supported format.

    The format is detected from the content unless ``format`` names it. ``options`` go to the
    reader (for example ``columns=("row", "col")`` for a centroid CSV).

    Real files are read as published: a box crossing its image's border is clipped to the image
    (its centre kept as the object's point), an object centre on or just outside the border
    (within half a box, :data:`~mitokit.io.formats.BORDER_TOLERANCE_PX`) is kept, a
    MultiPolygon of separate parts becomes one object per part. What was adjusted is counted in
    the set's ``adjustments``, logged once on the ``mitokit`` logger (the CLI prints it on
    stderr) and listed by :func:`adjustment_notes`.

    Args:
        path: The file or folder.
        format: The format's name; detected from the content when None.
        strict: Refuse what would be adjusted instead (None: the current default, see
            :func:`mitokit.io.formats.strict_reading`).
        **options: Reader options.

    Raises:
        MitokitError: The file is missing, empty, of unknown format, or malformed; an object
            wholly outside its image, duplicate object ids; under ``strict`` anything that
            would be adjusted. The message names the file.
    """
    from mitokit.io import formats

    return formats.read(Path(path), format=format, strict=strict, **options)


def write_annotations(
    annotations: AnnotationSet,
    path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002
    **options,
) -> None:
    """Write annotations; the format follows ``format`` or the file extension.

    ``.geojson`` -> QuPath GeoJSON, ``.json`` -> COCO JSON, ``.csv`` -> CSV table. The file is
    written to a temporary name and renamed into place.
    """
    from mitokit.io import formats

    formats.write(annotations, Path(path), format=format, **options)

"""Centroid CSVs: one point per line, ``x,y`` or ``row,col``, optionally a third column.

TUPAC16's ground truth lists ``row,col`` (y first); most other tools write ``x,y``. Say which
with ``columns``; a header naming the columns (``x,y``, ``row,col``, ``y,x,score`` ...) is
recognised and, where ``columns`` is not given, decides the order. A header may also name an
image column (``image``, ``image_id``, ``slide``, ``file``, ``filename``, ``tile``) and a class
column (``label``, ``class``, ``category``): ``image,x,y,score`` keeps each row on its own image
(without one, every point is on the image named by the file's stem). Fields may be separated by
commas, semicolons, tabs or spaces; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.formats._common import make_annotation, number, read_text, short
from mitokit.types import MITOSIS

FORMAT = "centroid_csv"

_X_NAMES = {"x", "col", "column", "c", "cx", "x_center", "xc"}
_Y_NAMES = {"y", "row", "r", "cy", "y_center", "yc"}
_SCORE_NAMES = {"score", "confidence", "prob", "probability", "p"}
_AGREEMENT_NAMES = {"agreement"}
_IMAGE_NAMES = {"image", "image_id", "slide", "slide_id", "file", "filename", "file_name", "tile"}
_LABEL_NAMES = {"label", "class", "category"}
_ORDERS = {("x", "y"): (0, 1), ("y", "x"): (1, 0), ("col", "row"): (0, 1), ("row", "col"): (1, 0)}
_SPLIT = re.compile(r"\s*[,;\t]\s*|\s+")


def split_fields(line: str) -> list[str]:
    """Fields of one line separated by commas, semicolons, tabs or runs of spaces.

    A line holding a comma (else a semicolon, else a tab) is split on that character alone, as a
    CSV (quotes honoured), so image names with spaces survive; otherwise on runs of spaces.
    """
    line = line.strip()
    for delimiter in (",", ";", "\t"):
        if delimiter in line:
            try:
                fields = next(csv.reader([line], delimiter=delimiter))
            except (csv.Error, StopIteration):
                break
            return [f.strip() for f in fields]
    return _SPLIT.split(line)


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def header_roles(fields: list[str]) -> dict[str, int] | None:
    """Column index per role (x, y, score, agreement, image, label) from a header, or None if
    unrecognised."""
    roles: dict[str, int] = {}
    for i, name in enumerate(f.strip().lower() for f in fields):
        for role, names in (
            ("x", _X_NAMES),
            ("y", _Y_NAMES),
            ("score", _SCORE_NAMES),
            ("agreement", _AGREEMENT_NAMES),
            ("image", _IMAGE_NAMES),
            ("label", _LABEL_NAMES),
        ):
            if name in names and role not in roles:
                roles[role] = i
    return roles if "x" in roles and "y" in roles else None


def read_centroid_csv(
    path: Path,
    *,
    columns: tuple[str, str] | None = None,
    label: str = MITOSIS,
    image: str | None = None,
    third: str = "score",
) -> AnnotationSet:
    """Read a centroid CSV.

    Args:
        path: The file.
        columns: Order of the two coordinate columns: ``("x", "y")`` (the default without a
            header) or ``("row", "col")`` (TUPAC16); ``("y", "x")`` and ``("col", "row")`` are
            the same orders by other names. Given, it overrides a header.
        label: Class of every point (through :func:`canonical_class`) where the file has no
            class column.
        image: Image id of the points; the file's stem by default. Not allowed where the
            header names an image column.
        third: What a third column holds: ``"score"`` (a prediction's confidence) or
            ``"agreement"``.

    Returns:
        Points with ids ``<image>_<n>`` (n counts each image's points from 1).

    Raises:
        MitokitError: A line with a non-numeric or non-finite value or a wrong number of fields.
    """
    path = Path(path)
    _check_options(path, columns, third)
    image_id = path.stem if image is None else str(image)
    label = canonical_class(label)
    roles: dict[str, int] | None = None
    annotations: list[Annotation] = []
    images: dict[str, ImageInfo] = {}
    per_image: dict[str, int] = {}
    first = True
    for lineno, raw in enumerate(read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = split_fields(line)
        if first:
            first = False
            if not all(is_number(f) for f in fields[:2]):
                roles = _header(path, fields, lineno, line, image)
                continue
        where = f"line {lineno}"
        cols = _columns(path, fields, where, line, roles, columns, third)
        x, y, score, agreement = _values(path, fields, where, cols)
        on = image_id
        if cols.image is not None:
            on = fields[cols.image]
            if not on:
                raise input_error(path, f"{where}: empty image name")
        images.setdefault(on, ImageInfo(on))
        per_image[on] = per_image.get(on, 0) + 1
        annotations.append(
            make_annotation(
                path,
                where,
                id=f"{on}_{per_image[on]}",
                image=on,
                point=(x, y),
                label=label if cols.label is None else canonical_class(fields[cols.label] or label),
                score=score,
                agreement=agreement,
            )
        )
    if not images:
        images[image_id] = ImageInfo(image_id)
    return AnnotationSet(annotations, images, [], str(path), FORMAT)


class _Columns(NamedTuple):
    """Where a line's values are: field indices (None: the line has no such value)."""

    x: int
    y: int
    score: int | None
    agreement: int | None
    image: int | None
    label: int | None


def _check_options(path: Path, columns: tuple[str, str] | None, third: str) -> None:
    """Refuse a coordinate order or a third-column meaning :func:`read_centroid_csv` lacks."""
    if columns is not None:
        key = tuple(str(c).strip().lower() for c in columns)
        if key not in _ORDERS:
            raise input_error(
                path, f"columns must be ('x', 'y') or ('row', 'col'), not {tuple(columns)!r}"
            )
    if third not in ("score", "agreement"):
        raise input_error(path, f"third must be 'score' or 'agreement', not {third!r}")


def _header(
    path: Path, fields: list[str], lineno: int, line: str, image: str | None
) -> dict[str, int]:
    """The roles a header line names; an error for a line that is neither header nor point."""
    roles = header_roles(fields)
    if roles is None:
        raise input_error(
            path, f"line {lineno}: not a point and not a known header ({short(line)})"
        )
    if "image" in roles and image is not None:
        raise input_error(
            path,
            f"the header names an image column ({fields[roles['image']]!r}); image= does not apply",
        )
    return roles


def _columns(
    path: Path,
    fields: list[str],
    where: str,
    line: str,
    roles: dict[str, int] | None,
    columns: tuple[str, str] | None,
    third: str,
) -> _Columns:
    """Where a line's values are: from the header's roles, else from ``columns`` and ``third``.

    Raises:
        MitokitError: Too few fields for the header, or not 2 or 3 fields without one.
    """
    if roles is not None and columns is None:
        cols = _Columns(
            roles["x"],
            roles["y"],
            roles.get("score"),
            roles.get("agreement"),
            roles.get("image"),
            roles.get("label"),
        )
        needed = max(i for i in (cols.x, cols.y, cols.image, cols.label) if i is not None)
        if len(fields) <= needed:
            raise input_error(path, f"{where}: too few fields ({short(line)})")
        return cols
    if len(fields) not in (2, 3):
        raise input_error(
            path,
            f"{where}: expected 2 or 3 fields, got {len(fields)} ({short(line)})",
        )
    ix, iy = _ORDERS[tuple(c.lower() for c in (columns or ("x", "y")))]  # type: ignore[index]
    return _Columns(
        ix,
        iy,
        2 if third == "score" else None,
        2 if third == "agreement" else None,
        None,
        None,
    )


def _values(
    path: Path, fields: list[str], where: str, cols: _Columns
) -> tuple[float, float, float | None, float | None]:
    """x, y, score and agreement of a line (None where the line has none)."""
    x = number(fields[cols.x], f"{where}: x", path, text=True)
    y = number(fields[cols.y], f"{where}: y", path, text=True)
    score = agreement = None
    if cols.score is not None and cols.score < len(fields):
        score = number(fields[cols.score], f"{where}: score", path, text=True)
    if cols.agreement is not None and cols.agreement < len(fields):
        agreement = number(fields[cols.agreement], f"{where}: agreement", path, text=True)
    return x, y, score, agreement

"""SlideRunner SQLite databases (MITOS 2012, TUPAC16, MIDOG, CCMCT ... label sets).

Tables used: ``Slides`` (one image per row), ``Classes``, ``Persons`` (one rater per row),
``Annotations`` (``slide``, ``type``, ``agreedClass``, optionally ``deleted``),
``Annotations_coordinates`` (``annoId``, ``coordinateX``, ``coordinateY``, ``orderIdx``) and
``Annotations_label`` (``annoId``, ``person``, ``class``: one row per rater's label).

Annotation types, as SlideRunner defines them (``dataAccess/annotations.py``):

========  ==============  ===========================================================
type      SlideRunner     here
========  ==============  ===========================================================
1         spot            point at its coordinate
4         special spot    point at its coordinate
2         area            box from the min / max of its two corners
5         circle          stored as two corners; centre = their midpoint, radius = half
                          the x distance (as SlideRunner draws it): point + box
3         polygon         box of its bounds, point = area centroid of the polygon
6         image label     no location: skipped
========  ==============  ===========================================================

``agreedClass`` gives the label (class name through :func:`canonical_class`); where it is empty
or 0, the classes of the per-rater labels decide by clear majority, else the label is
``unknown``. Each ``Annotations_label`` row becomes a vote (rater = person name, value 1.0 where
the rater's class is ``mitosis``, else 0.0). Rows with ``deleted`` = 1 and annotations without
coordinates are skipped.

Image ids: the slide's ``filename``; where file names repeat (TUPAC16's auxiliary set has
73 folders of ``01.tif`` ...), ``<directory>/<filename>``, and failing that ``<filename>#<uid>``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote, canonical_class
from mitokit.io.formats._common import (
    make_annotation,
    number,
    short,
    unique_names,
    vote_value_for_class,
)

FORMAT = "sliderunner"
SQLITE_MAGIC = b"SQLite format 3\x00"

TYPE_NAMES = {1: "spot", 2: "area", 3: "polygon", 4: "special_spot", 5: "circle", 6: "image"}

_REQUIRED = {
    "Slides": ("uid", "filename"),
    "Classes": ("uid", "name"),
    "Annotations": ("uid", "slide", "type", "agreedClass"),
    "Annotations_coordinates": ("annoId", "coordinateX", "coordinateY"),
}
_OPTIONAL = {
    "Persons": ("uid", "name"),
    "Annotations_label": ("annoId", "person", "class"),
}


def read_sliderunner(path: Path) -> AnnotationSet:
    """Read a SlideRunner database (opened read-only; the file is never changed).

    Raises:
        MitokitError: Not an SQLite file, a malformed or truncated database, a missing table or
            column (named), a reference to an unknown slide or class, a non-numeric coordinate.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise input_error(path, "no such file") from None
    except OSError as err:
        raise input_error(path, f"cannot read the file ({err.strerror or err})") from None
    if head != SQLITE_MAGIC:
        raise input_error(path, "not an SQLite database (SlideRunner)")
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            con.text_factory = _decode  # text that is not UTF-8 must not raise
            return _read(con, path)
    except sqlite3.Error as err:
        raise input_error(path, f"SQLite error: {err}") from None
    except UnicodeDecodeError:  # sqlite's message quotes a corrupt, non-UTF-8 schema
        raise input_error(path, "SQLite error: malformed database (text is not UTF-8)") from None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _columns(con: sqlite3.Connection, table: str) -> dict[str, str]:
    """Column names of ``table``, by lower-case name."""
    rows = con.execute(f'PRAGMA table_info("{table}")').fetchall()
    return {str(r[1]).lower(): str(r[1]) for r in rows}


def _read(con: sqlite3.Connection, path: Path) -> AnnotationSet:
    cols = _schema(con, path)

    def select(table: str, names: list[str], order: list[str]) -> list[tuple]:
        return _select(con, cols[table], names, order)

    classes = {
        uid: _name(name, f"class{uid}") for uid, name in select("Classes", ["uid", "name"], ["uid"])
    }
    persons: dict[Any, str] = {}
    if "Persons" in cols:
        for uid, name in select("Persons", ["uid", "name"], ["uid"]):
            persons[uid] = _name(name, f"person{uid}")
    images, slide_ids = _slides(
        select("Slides", ["uid", "filename", "directory", "width", "height"], ["uid"]), path
    )
    coords = _grouped(
        select(
            "Annotations_coordinates", ["annoId", "coordinateX", "coordinateY"], ["orderIdx", "uid"]
        )
    )
    labels: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    if "Annotations_label" in cols:
        labels = _grouped(select("Annotations_label", ["annoId", "person", "class"], ["uid"]))
    raters = list(dict.fromkeys(persons.values()))
    annotations: list[Annotation] = []
    for uid, slide, kind, agreed, deleted in select(
        "Annotations", ["uid", "slide", "type", "agreedClass", "deleted"], ["uid"]
    ):
        if deleted not in (None, 0, "0", ""):
            continue
        where = f"annotation uid {short(uid)}"
        if slide not in slide_ids:
            raise input_error(path, f"{where} refers to unknown slide {short(slide)}")
        if kind == 6 or not coords.get(uid):
            continue  # an image-level label or no coordinates: no location
        votes = _votes(labels.get(uid, []), classes, persons, raters, where, path)
        label = _label(agreed, classes, [v[1] for v in votes], where, path)
        point, box = _geometry(kind, coords[uid], where, path)
        annotations.append(
            make_annotation(
                path,
                where,
                id=str(uid),
                image=slide_ids[slide],
                point=point,
                box=box,
                label=label,
                votes=tuple(Vote(r, vote_value_for_class(c)) for r, c in votes),
                extra={"sliderunner_type": TYPE_NAMES.get(kind, kind)},
            )
        )
    return AnnotationSet(annotations, images, raters, str(path), FORMAT)


def _schema(con: sqlite3.Connection, path: Path) -> dict[str, dict[str, str]]:
    """Per table present: its columns by lower-case name, and its real name under ``__table__``.

    Raises:
        MitokitError: A required table is missing, or a table lacks a column it needs.
    """
    tables = {
        str(name).lower(): str(name)
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table','view')")
    }
    cols: dict[str, dict[str, str]] = {}
    for table, needed in list(_REQUIRED.items()) + list(_OPTIONAL.items()):
        real = tables.get(table.lower())
        if real is None:
            if table in _OPTIONAL:
                continue
            raise input_error(path, f"SlideRunner database without table {table!r}")
        have = _columns(con, real)
        missing = [c for c in needed if c.lower() not in have]
        if missing:
            raise input_error(path, f"table {table!r} lacks column(s) {', '.join(missing)}")
        cols[table] = have
        cols[table]["__table__"] = real
    return cols


def _select(
    con: sqlite3.Connection, have: dict[str, str], names: list[str], order: list[str]
) -> list[tuple]:
    """The rows of a table (columns from :func:`_schema`): ``names`` (NULL where absent)."""
    fields = ", ".join(f'"{have[n.lower()]}"' if n.lower() in have else "NULL" for n in names)
    order_by = ", ".join(f'"{have[n.lower()]}"' for n in order if n.lower() in have)
    sql = f'SELECT {fields} FROM "{have["__table__"]}"'
    if order_by:
        sql += f" ORDER BY {order_by}"
    return con.execute(sql).fetchall()


def _grouped(rows: list[tuple]) -> dict[Any, list[tuple[Any, ...]]]:
    """Rows ``(annoId, *values)`` as annotation id -> its value tuples, in row order."""
    out: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for anno_id, *values in rows:
        out[anno_id].append(tuple(values))
    return out


def _votes(
    rows: list[tuple[Any, ...]],
    classes: dict[Any, str],
    persons: dict[Any, str],
    raters: list[str],
    where: str,
    path: Path,
) -> list[tuple[str, str]]:
    """(rater, canonical class) of an annotation's label rows; new raters added to ``raters``.

    Raises:
        MitokitError: A label of a class the database does not list.
    """
    votes = []
    for person, cls in rows:
        if cls not in classes:
            raise input_error(path, f"{where} has a label of unknown class {short(cls)}")
        rater = persons.get(person, f"person{person}")
        if rater not in raters:
            raters.append(rater)
        votes.append((rater, canonical_class(classes[cls])))
    return votes


def _name(value: Any, fallback: str) -> str:
    if value is None:
        return fallback
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _slides(rows: list[tuple], path: Path) -> tuple[dict[str, ImageInfo], dict[Any, str]]:
    names, alternatives, infos = [], [], []
    for uid, filename, directory, width, height in rows:
        name = _name(filename, f"slide{uid}")
        alt = []
        if directory not in (None, ""):
            alt.append(f"{_name(directory, '').rstrip('/')}/{name}")
        names.append(name)
        alternatives.append(alt)
        infos.append((uid, name, _size(width), _size(height)))
    ids = unique_names(names, alternatives)
    images: dict[str, ImageInfo] = {}
    slide_ids: dict[Any, str] = {}
    for (uid, name, width, height), image_id in zip(infos, ids, strict=True):
        slide_ids[uid] = image_id
        images[image_id] = ImageInfo(image_id, name, width, height)
    return images, slide_ids


def _size(value: Any) -> int | None:
    """A slide size where it is a positive whole number; SlideRunner leaves it empty often."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if value > 0 else None


def _label(agreed: Any, classes: dict[Any, str], voted: list[str], where: str, path: Path) -> str:
    if agreed not in (None, 0, ""):
        if agreed not in classes:
            raise input_error(path, f"{where} has unknown agreedClass {short(agreed)}")
        return canonical_class(classes[agreed])
    counts = Counter(voted).most_common()
    if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]):
        return counts[0][0]
    return "unknown"


def _geometry(
    kind: Any, points: list[tuple[Any, Any]], where: str, path: Path
) -> tuple[tuple[float, float] | None, tuple[float, float, float, float] | None]:
    xy = [
        (number(x, f"{where}: coordinateX", path), number(y, f"{where}: coordinateY", path))
        for x, y in points
    ]
    if kind in (1, 4):
        return xy[0], None
    if kind in (2, 5, 3) and len(xy) < (3 if kind == 3 else 2):
        raise input_error(path, f"{where}: a {TYPE_NAMES[kind]} with {len(xy)} coordinate(s)")
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    if kind == 2:
        return None, (min(xs), min(ys), max(xs), max(ys))
    if kind == 5:
        cx, cy = (xy[0][0] + xy[1][0]) / 2, (xy[0][1] + xy[1][1]) / 2
        r = abs(xy[1][0] - xy[0][0]) / 2
        return (cx, cy), (cx - r, cy - r, cx + r, cy + r)
    if kind == 3:
        return polygon_centroid(xy), (min(xs), min(ys), max(xs), max(ys))
    raise input_error(path, f"{where} has unknown annotation type {short(kind)}")


def polygon_centroid(xy: list[tuple[float, float]]) -> tuple[float, float]:
    """Area centroid of a simple polygon; the vertex mean where its area is zero."""
    area2 = cx = cy = 0.0
    n = len(xy)
    for i in range(n):
        x0, y0 = xy[i]
        x1, y1 = xy[(i + 1) % n]
        cross = x0 * y1 - x1 * y0
        area2 += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(area2) < 1e-12:
        return (sum(p[0] for p in xy) / n, sum(p[1] for p in xy) / n)
    return (cx / (3 * area2), cy / (3 * area2))

"""Readers and writers of the annotation formats of the field, behind one ``read`` / ``write``.

* ``mitos_atypia14``: MITOS-ATYPIA-14 ``<frame>_mitosis.csv`` / ``<frame>_not_mitosis.csv``, or
  a folder of them (read);
* ``centroid_csv``: ``x,y[,score]`` or ``row,col`` points, e.g. TUPAC16 (read);
* ``csv``: mitokit's CSV table, every field, exact round trip (read, write);
* ``coco``: COCO / MIDOG JSON, ``xywh`` or ``xyxy`` boxes (read, write);
* ``sliderunner``: SlideRunner SQLite database (read);
* ``geojson``: QuPath GeoJSON (read, write);
* ``amibr``: AMi-Br CSV with per-expert atypicality votes (read);
* ``gc_points``: Grand-Challenge "Multiple points" JSON in millimetres, MIDOG's ground truth and
  submissions, one file per image; needs the image's ``mpp`` (read, write);
* ``asap_xml``: ASAP XML, dots / point sets / polygons / rectangles (read);
* ``imagescope_xml``: Aperio ImageScope XML regions, with ``MicronsPerPixel`` (read);
* ``imagefolder``: a folder of class sub-folders of patch images, torchvision's ImageFolder
  layout, one object per image (read).

:func:`detect_format` tells the format from the content (rules in its docstring); ``format=``
overrides it. Every reader returns an :class:`~mitokit.io.annotations.AnnotationSet` whose
``source`` is the path and ``format`` the format's name, listing every image the source names;
every problem with the input raises :class:`~mitokit.errors.MitokitError` naming the file.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet, adjustment_notes
from mitokit.io.formats import (
    amibr,
    asap_xml,
    centroid_csv,
    coco,
    gc_points,
    geojson,
    imagefolder,
    imagescope_xml,
    mitos_csv,
    sliderunner,
    table_csv,
)
from mitokit.io.formats._common import decode_text, parse_json, read_text
from mitokit.io.formats._validate import BORDER_TOLERANCE_PX, validate
from mitokit.io.formats._xml import leading_tags

READERS: dict[str, Callable[..., AnnotationSet]] = {
    "mitos_atypia14": mitos_csv.read_mitos_atypia14,
    "centroid_csv": centroid_csv.read_centroid_csv,
    "csv": table_csv.read_table_csv,
    "coco": coco.read_coco,
    "sliderunner": sliderunner.read_sliderunner,
    "geojson": geojson.read_geojson,
    "amibr": amibr.read_amibr,
    "gc_points": gc_points.read_gc_points,
    "asap_xml": asap_xml.read_asap_xml,
    "imagescope_xml": imagescope_xml.read_imagescope_xml,
    "imagefolder": imagefolder.read_imagefolder,
}
"""Reader per format name."""

WRITERS: dict[str, Callable[..., None]] = {
    "csv": table_csv.write_table_csv,
    "coco": coco.write_coco,
    "geojson": geojson.write_geojson,
    "gc_points": gc_points.write_gc_points,
}
"""Writer per format name."""

ALIASES = {
    "mitos": "mitos_atypia14",
    "mitos-atypia-14": "mitos_atypia14",
    "centroid": "centroid_csv",
    "table": "csv",
    "midog": "coco",
    "json": "coco",
    "qupath": "geojson",
    "sqlite": "sliderunner",
    "ami-br": "amibr",
    "gc": "gc_points",
    "grand-challenge": "gc_points",
    "multiple-points": "gc_points",
    "midog-points": "gc_points",
    "asap": "asap_xml",
    "imagescope": "imagescope_xml",
    "aperio": "imagescope_xml",
    "image-folder": "imagefolder",
    "class-folders": "imagefolder",
}
"""Other names accepted for ``format``."""

EXTENSIONS = {".geojson": "geojson", ".json": "coco", ".csv": "csv"}
"""Output format per file extension."""

_JSON_READERS: dict[str, Callable[..., AnnotationSet]] = {
    "coco": coco.coco_from_json,
    "geojson": geojson.geojson_from_json,
    "gc_points": gc_points.gc_points_from_json,
}
_HEAD_BYTES = 1 << 20

write_geojson_per_image = geojson.write_geojson_per_image


def format_name(name: str, path: str | os.PathLike | None = None) -> str:
    """The canonical name of a format (aliases resolved, case ignored).

    Raises:
        MitokitError: An unknown name.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in READERS:
        known = ", ".join(READERS)
        raise input_error(path, f"unknown annotation format {name!r} (known: {known})")
    return key


def detect_format(path: str | os.PathLike) -> str:
    """The format of an annotation file (or folder) from its content.

    Rules, in order:

    * a folder holding ``*_mitosis.csv`` / ``*_not_mitosis.csv`` files -> ``mitos_atypia14``;
      otherwise a folder with two or more sub-folders holding images -> ``imagefolder``;
    * a file starting with the SQLite magic ``"SQLite format 3\\0"`` -> ``sliderunner``;
    * JSON (first character ``{`` or ``[``): ``"type": "FeatureCollection"``/``"Feature"``, a
      ``features`` list, or a list of Features -> ``geojson``; an object with ``images`` and
      ``annotations`` -> ``coco``; an object with ``"type": "Multiple points"`` (case ignored)
      and a ``points`` list -> ``gc_points``;
    * XML (first character ``<``): root ``ASAP_Annotations`` -> ``asap_xml``; root
      ``Annotations`` holding ``Regions`` (or empty) -> ``imagescope_xml``;
    * text, by its first line that is not blank (nor a ``#`` comment): a header with
      ``expert1_atypical`` -> ``amibr``; a header with all of mitokit's columns (or the
      ``# mitokit:`` line) -> ``csv``; otherwise a name ending in ``_mitosis.csv`` /
      ``_not_mitosis.csv`` -> ``mitos_atypia14`` (also for an empty file); a line starting with
      a number (or an empty file) or a header naming x/y or row/col columns -> ``centroid_csv``.

    Raises:
        MitokitError: Missing path, or ``"<path>: unknown annotation format (...)"``.
    """
    return _sniff(Path(path))[0]


_STRICT: contextvars.ContextVar[bool] = contextvars.ContextVar("mitokit_strict", default=False)
log = logging.getLogger("mitokit")


@contextlib.contextmanager
def strict_reading(strict: bool = True) -> Iterator[None]:
    """Within the block, :func:`read` refuses what it would adjust unless told otherwise.

    The CLI's ``--strict`` sets this around a command, so every label file the command reads,
    however deep in the library, is read strictly.
    """
    token = _STRICT.set(bool(strict))
    try:
        yield
    finally:
        _STRICT.reset(token)


def read(
    path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the user-facing word
    strict: bool | None = None,
    hints: dict[str, Any] | None = None,
    **options: Any,
) -> AnnotationSet:
    """Read annotations of any supported format.

    Args:
        path: A file, or a folder of MITOS-ATYPIA-14 label files.
        format: Format name or alias; detected from the content when None.
        strict: Refuse what would be adjusted (boxes crossing the border, centres just
            outside it, split MultiPolygons) instead of adjusting and counting it; None takes
            the default set by :func:`strict_reading` (off).
        hints: What the caller knows about the data, e.g. ``{"mpp": 0.25}`` from a command's
            ``--mpp``: each is passed on as an option only to a reader that takes it (gc_points
            needs the mpp; the others ignore it); an explicit option wins.
        **options: Reader options, e.g. ``columns=("row", "col")`` (centroid_csv),
            ``bbox_format="xyxy"`` (coco), ``image="slide.svs"`` (centroid_csv, geojson),
            ``mpp=0.25`` (gc_points), ``positive="Atypical"`` (imagefolder).

    Returns:
        The set, with ``source = str(path)`` and ``format`` = the format's name, checked and
        adjusted by :func:`~mitokit.io.formats._validate.validate` (its ``adjustments`` count what
        was changed, and a note is logged on the ``mitokit`` logger).

    Raises:
        MitokitError: Missing or empty (0-byte) file, unknown format, an option the format does
            not take, or malformed content; the message names the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise input_error(path, "no such file or folder")
    if strict is None:
        strict = _STRICT.get()
    if path.is_file() and path.stat().st_size == 0 and mitos_csv.split_name(path.name) is None:
        # MITOS-ATYPIA-14 writes an empty file for a frame without objects; elsewhere an empty
        # file is a failed export or a truncated copy, never "no objects".
        raise input_error(path, "is empty (0 bytes): not a label file")
    payload = None
    if format is None:
        name, payload = _sniff(path)
    else:
        name = format_name(format, path)
    reader = READERS[name]
    _check_options(reader, options, name, path)
    options = {**_taken(reader, hints), **options}
    try:
        if payload is not None and name in _JSON_READERS:
            result = _JSON_READERS[name](payload, path, **options)
        else:
            result = reader(path, **options)
    except RecursionError:
        raise input_error(path, "nested too deeply to read") from None
    result.source = str(path)
    result.format = name
    result = validate(result, path, strict=strict)
    for note in adjustment_notes(result):
        log.warning(note)
    return result


def write(
    annotations: AnnotationSet,
    path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002
    image: str | None = None,
    hints: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Write annotations atomically; the format follows ``format`` or the extension.

    Args:
        annotations: The set to write.
        path: Output file: ``.geojson`` -> QuPath GeoJSON, ``.json`` -> COCO JSON, ``.csv`` ->
            mitokit's CSV table.
        format: ``"geojson"``, ``"coco"`` or ``"csv"`` (or an alias), overriding the extension.
        image: Write only this image's objects (QuPath imports one file per image; see also
            :func:`write_geojson_per_image`).
        hints: As for :func:`read`: given only to a writer that takes them (``mpp``).
        **options: Writer options: ``object_type`` (geojson), ``bbox_format`` and
            ``point_box_size`` (coco), ``indent`` (geojson, coco, gc_points), ``mpp``
            (gc_points).

    Raises:
        MitokitError: An unknown or read-only format, an extension that names no format, an
            unknown image, or an option the writer does not take.
    """
    path = Path(path)
    if format is None:
        name = EXTENSIONS.get(path.suffix.lower())
        if name is None:
            raise input_error(
                path,
                f"cannot tell the output format from the extension {path.suffix!r} "
                f"(use .geojson, .json or .csv, or give format=)",
            )
    else:
        name = format_name(format, path)
        if name not in WRITERS:
            raise input_error(
                path, f"format {name!r} cannot be written (writable: {', '.join(WRITERS)})"
            )
    writer = WRITERS[name]
    _check_options(writer, options, name, path)
    options = {**_taken(writer, hints), **options}
    if image is not None:
        if image not in annotations.images and not any(a.image == image for a in annotations):
            raise input_error(path, f"no image {image!r} in the annotations")
        annotations = annotations.filter(image=image)
    writer(annotations, path, **options)


def _check_options(func: Callable, options: dict[str, Any], name: str, path: Path) -> None:
    accepted = [
        p.name for p in inspect.signature(func).parameters.values() if p.kind == p.KEYWORD_ONLY
    ]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise input_error(
            path, f"option(s) {', '.join(unknown)} do not apply to format {name!r} ({takes})"
        )


def _taken(func: Callable, hints: dict[str, Any] | None) -> dict[str, Any]:
    """The hints (not None) that ``func`` takes as keyword options."""
    if not hints:
        return {}
    params = inspect.signature(func).parameters
    return {
        k: v
        for k, v in hints.items()
        if v is not None and k in params and params[k].kind == params[k].KEYWORD_ONLY
    }


def _unknown(path: Path, why: str):
    return input_error(path, f"unknown annotation format ({why})")


def _sniff(path: Path) -> tuple[str, Any]:
    """(format, parsed JSON or None) for ``path``."""
    if path.is_dir():
        if mitos_csv.label_files(path):
            return "mitos_atypia14", None
        if imagefolder.is_imagefolder(path):
            return "imagefolder", None
        raise _unknown(
            path,
            "a folder without *_mitosis.csv or *_not_mitosis.csv files, nor two or more class "
            "sub-folders of images",
        )
    if not path.exists():
        raise input_error(path, "no such file or folder")
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
            whole = len(head) < _HEAD_BYTES
    except OSError as err:
        raise input_error(path, f"cannot read the file ({err.strerror or err})") from None
    if head.startswith(sliderunner.SQLITE_MAGIC):
        return "sliderunner", None
    text = _head_text(head, whole, path)
    first = text.lstrip()[:1]
    if first in ("{", "["):
        if not whole:
            text = read_text(path)
        data = parse_json(text, path)
        if geojson.is_geojson(data):
            return "geojson", data
        if isinstance(data, dict) and "images" in data and "annotations" in data:
            return "coco", data
        if gc_points.is_gc_points(data):
            return "gc_points", data
        raise _unknown(
            path,
            "JSON that is neither GeoJSON features, COCO with images and annotations, nor "
            'Grand-Challenge "Multiple points"',
        )
    if first == "<":
        return _sniff_xml(path), None
    return _sniff_text(text, path), None


def _sniff_xml(path: Path) -> str:
    tags = leading_tags(path)
    root = tags[0] if tags else ""
    if root == asap_xml.ROOT:
        return "asap_xml"
    if root == imagescope_xml.ROOT and ("Regions" in tags or len(tags) == 1):
        return "imagescope_xml"
    raise _unknown(path, f"XML with root element <{root[:60]}>")


def _head_text(head: bytes, whole: bool, path: Path) -> str:
    if b"\x00" in head[:4096]:
        raise _unknown(path, "binary content")
    try:
        return decode_text(head, path)
    except MitokitError:
        if not whole:
            # The head may end inside a multi-byte character: drop up to 3 bytes.
            for cut in (1, 2, 3):
                try:
                    return head[:-cut].decode("utf-8-sig")
                except UnicodeDecodeError:
                    continue
        raise _unknown(path, "neither SQLite, JSON nor UTF-8 text") from None


def _sniff_text(text: str, path: Path) -> str:
    mitos = mitos_csv.split_name(path.name) is not None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(table_csv.MARKER):
            return "csv"
        if stripped.startswith("#"):
            continue
        try:
            fields = next(csv.reader([stripped]))
        except (csv.Error, StopIteration):
            fields = [stripped]
        if amibr.is_amibr_header(fields):
            return "amibr"
        if table_csv.is_table_header(fields):
            return "csv"
        if mitos:
            return "mitos_atypia14"  # its reader names the bad line, if any
        parts = centroid_csv.split_fields(stripped)
        if centroid_csv.is_number(parts[0]):
            return "centroid_csv"
        if centroid_csv.header_roles(parts) is not None:
            return "centroid_csv"
        raise _unknown(path, f"first line {stripped[:60]!r} is no known header")
    return "mitos_atypia14" if mitos else "centroid_csv"


__all__ = [
    "ALIASES",
    "BORDER_TOLERANCE_PX",
    "EXTENSIONS",
    "READERS",
    "WRITERS",
    "detect_format",
    "format_name",
    "read",
    "strict_reading",
    "write",
    "write_geojson_per_image",
]

"""Helpers shared by the format readers and writers.

Every reader turns whatever a malformed file throws at it (a decode error, a missing key, a value
of the wrong type) into a :class:`~mitokit.errors.MitokitError` that names the file, the place
(line, object) and the problem. The helpers here do the checking so each reader stays short. The
rules every reader's output then goes through (border tolerance, unique ids) are in
:mod:`~mitokit.io.formats._validate`.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.types import MITOSIS, NON_MITOSIS

PathLike = str | os.PathLike


def short(value: Any, limit: int = 40) -> str:
    """A short ``repr`` of ``value`` for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_bytes(path: PathLike) -> bytes:
    """The content of ``path``; OS errors become :class:`MitokitError`."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise input_error(path, "no such file") from None
    except IsADirectoryError:
        raise input_error(path, "is a folder, not a file") from None
    except OSError as err:
        raise input_error(path, f"cannot read the file ({err.strerror or err})") from None


def decode_text(data: bytes, path: PathLike) -> str:
    """Decode UTF-8 (with or without a byte-order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise input_error(path, f"not UTF-8 text (bad byte at offset {err.start})") from None


def read_text(path: PathLike) -> str:
    """The UTF-8 text of ``path``."""
    return decode_text(read_bytes(path), path)


def parse_json(text: str, path: PathLike) -> Any:
    """Parse JSON text; every failure becomes a :class:`MitokitError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise input_error(
            path, f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except RecursionError:
        raise input_error(path, "invalid JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer literal with too many digits
        raise input_error(path, f"invalid JSON: {err}") from None


def load_json(path: PathLike) -> Any:
    """Read and parse a JSON file."""
    return parse_json(read_text(path), path)


def number(value: Any, what: str, path: PathLike, *, text: bool = False) -> float:
    """A finite float from a parsed value.

    Args:
        value: An int or float (JSON, SQLite), or with ``text=True`` also a string (CSV).
        what: Where the value is, for the message ("line 3: x").
        path: The file, for the message.
        text: Accept strings holding a number.

    Raises:
        MitokitError: The value is not a number or not finite.
    """
    if isinstance(value, bool):
        raise input_error(path, f"{what} is not a number ({short(value)})")
    if isinstance(value, (int, float)):
        try:
            result = float(value)
        except OverflowError:
            raise input_error(path, f"{what} is too large ({short(value)})") from None
    elif text and isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise input_error(path, f"{what} is not a number ({short(value)})") from None
    else:
        raise input_error(path, f"{what} is not a number ({short(value)})")
    if not math.isfinite(result):
        raise input_error(path, f"{what} is not finite ({short(value)})")
    return result


def optional_number(value: Any, what: str, path: PathLike, *, text: bool = False) -> float | None:
    """Like :func:`number`, but None (and an empty string) give None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return number(value, what, path, text=text)


def optional_size(value: Any, what: str, path: PathLike, *, text: bool = False) -> int | None:
    """A positive whole number of pixels, or None where the value is None or empty."""
    result = optional_number(value, what, path, text=text)
    if result is None:
        return None
    if result <= 0 or not result.is_integer():
        raise input_error(path, f"{what} must be a positive whole number ({short(value)})")
    return int(result)


def text_value(value: Any, what: str, path: PathLike) -> str:
    """A string identifier from a JSON/SQLite value (strings and integers are accepted)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    raise input_error(path, f"{what} is not a string ({short(value)})")


def point_of(coords: Any, what: str, path: PathLike) -> tuple[float, float]:
    """An (x, y) pair from a JSON list ``[x, y]`` (further entries, e.g. z, are ignored)."""
    if not isinstance(coords, list) or len(coords) < 2:
        raise input_error(path, f"{what} is not an [x, y] pair ({short(coords)})")
    return (number(coords[0], f"{what} x", path), number(coords[1], f"{what} y", path))


def make_annotation(path: PathLike, where: str, **fields: Any) -> Annotation:
    """Build an :class:`Annotation`; its ValueError becomes a :class:`MitokitError`."""
    try:
        return Annotation(**fields)
    except MitokitError:
        raise
    except ValueError as err:
        raise input_error(path, f"{where}: {err}") from None


def shape_annotations(
    path: PathLike,
    where: str,
    shapes: Sequence[tuple[Any, Any]],
    *,
    id: str,  # noqa: A002 - the Annotation field
    extra: dict[str, Any],
    **fields: Any,
) -> list[Annotation]:
    """One annotation per ``(point, box)`` of a multi-part object (a point set, a MultiPoint).

    A single shape keeps ``id``; several are ``<id>_1``, ``<id>_2`` ... Each gets its own copy
    of ``extra``.
    """
    return [
        make_annotation(
            path,
            where,
            id=id if len(shapes) == 1 else f"{id}_{n}",
            point=point,
            box=box,
            extra=dict(extra),
            **fields,
        )
        for n, (point, box) in enumerate(shapes, start=1)
    ]


def make_vote(rater: Any, value: Any, what: str, path: PathLike, *, text: bool = False) -> Vote:
    """A :class:`Vote` with a value checked to lie in [0, 1]."""
    v = number(value, f"{what} value", path, text=text)
    if not 0.0 <= v <= 1.0:
        raise input_error(path, f"{what} value {v:g} is outside [0, 1]")
    return Vote(str(rater), v)


def vote_value_for_class(label: str) -> float:
    """A rater's vote for a class: 1.0 if it is the canonical mitosis class, else 0.0."""
    return 1.0 if label == MITOSIS else 0.0


# ----------------------------------------------------------------------------------- votes


def votes_to_json(votes: Iterable[Vote]) -> list[dict[str, Any]]:
    """Votes as a JSON list of ``{"rater", "value"}`` objects."""
    return [{"rater": v.rater, "value": fmt_json_number(v.value)} for v in votes]


def votes_from_json(value: Any, what: str, path: PathLike) -> tuple[Vote, ...]:
    """Votes from a JSON list of ``{"rater", "value"}`` objects (None gives no votes)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise input_error(path, f"{what} votes must be a list ({short(value)})")
    votes = []
    for k, item in enumerate(value):
        where = f"{what} vote {k + 1}"
        if not isinstance(item, dict) or "rater" not in item or "value" not in item:
            raise input_error(path, f"{where} must be an object with rater and value")
        rater = text_value(item["rater"], f"{where} rater", path)
        votes.append(make_vote(rater, item["value"], where, path))
    return tuple(votes)


def _escape_rater(rater: str) -> str:
    return rater.replace("%", "%25").replace(";", "%3B").replace(":", "%3A")


def votes_to_text(votes: Iterable[Vote]) -> str:
    """Votes as ``"r1:1;r1:0.5;r2:0"`` (``%``, ``;`` and ``:`` in rater ids percent-escaped)."""
    return ";".join(f"{_escape_rater(v.rater)}:{fmt_number(v.value)}" for v in votes)


def votes_from_text(text: str, what: str, path: PathLike) -> tuple[Vote, ...]:
    """Parse the form written by :func:`votes_to_text`."""
    text = text.strip()
    if not text:
        return ()
    votes = []
    for k, item in enumerate(text.split(";")):
        rater, sep, value = item.rpartition(":")
        if not sep or not rater.strip():
            raise input_error(path, f"{what}: vote {k + 1} {short(item)} is not rater:value")
        votes.append(
            make_vote(unquote(rater.strip()), value, f"{what}: vote {k + 1}", path, text=True)
        )
    return tuple(votes)


# ------------------------------------------------------------------------------- numbers


def fmt_number(value: float) -> str:
    """Shortest text that reads back as the same float (whole numbers without ``.0``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def fmt_json_number(value: float) -> int | float:
    """A float as an int where it is whole (smaller JSON, same value when read back)."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


# -------------------------------------------------------------------------------- images


def image_to_json(info: ImageInfo) -> dict[str, Any]:
    """An :class:`ImageInfo` as a JSON object (fields that are None left out)."""
    out: dict[str, Any] = {"id": info.id}
    for name in ("file_name", "width", "height", "mpp"):
        value = getattr(info, name)
        if value is not None:
            out[name] = value
    return out


def image_from_json(value: Any, what: str, path: PathLike) -> ImageInfo:
    """An :class:`ImageInfo` from the JSON object written by :func:`image_to_json`."""
    if not isinstance(value, dict) or "id" not in value:
        raise input_error(path, f"{what} must be an object with an id ({short(value)})")
    file_name = value.get("file_name")
    mpp = optional_number(value.get("mpp"), f"{what} mpp", path)
    if mpp is not None and mpp <= 0:
        raise input_error(path, f"{what} mpp must be positive ({mpp:g})")
    return ImageInfo(
        id=text_value(value["id"], f"{what} id", path),
        file_name=None if file_name is None else text_value(file_name, f"{what} file_name", path),
        width=optional_size(value.get("width"), f"{what} width", path),
        height=optional_size(value.get("height"), f"{what} height", path),
        mpp=mpp,
    )


def all_images(aset: AnnotationSet) -> dict[str, ImageInfo]:
    """The set's images followed by images its annotations name that it does not list."""
    images = dict(aset.images)
    for ann in aset.annotations:
        if ann.image not in images:
            images[ann.image] = ImageInfo(ann.image)
    return images


def add_annotated_images(aset: AnnotationSet) -> AnnotationSet:
    """List every image an annotation names (in order of first appearance) in ``aset.images``."""
    for ann in aset.annotations:
        if ann.image not in aset.images:
            aset.images[ann.image] = ImageInfo(ann.image)
    return aset


def unique_names(names: Sequence[str], alternatives: Sequence[Sequence[str]]) -> list[str]:
    """Make names unique: where a name repeats, try its alternatives in turn.

    Args:
        names: The preferred name of each item.
        alternatives: Per item, fallbacks tried in order where the preferred name is not unique;
            the last resort appends ``#<position>``.
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    out = list(names)
    for level in range(max((len(a) for a in alternatives), default=0)):
        clash = [i for i, name in enumerate(out) if counts.get(name, 0) > 1]
        if not clash:
            return out
        for i in clash:
            if level < len(alternatives[i]):
                counts[out[i]] -= 1
                out[i] = alternatives[i][level]
                counts[out[i]] = counts.get(out[i], 0) + 1
    seen: set[str] = set()
    for i, name in enumerate(out):
        if counts.get(name, 0) > 1 or name in seen:
            out[i] = f"{name}#{i + 1}"
        seen.add(out[i])
    return out


def csv_header_columns(
    header: Sequence[str], required: Iterable[str], lineno: int, path: PathLike, *, lacks: str
) -> dict[str, int]:
    """Column index by name of a CSV header that must hold every ``required`` name.

    Raises:
        MitokitError: ``line <lineno>: <lacks> <missing names>``.
    """
    missing = [c for c in required if c not in header]
    if missing:
        raise input_error(path, f"line {lineno}: {lacks} {', '.join(missing)}")
    return {name: header.index(name) for name in header}


def csv_data_row(row: Sequence[str], header: Sequence[str], lineno: int, path: PathLike) -> bool:
    """Whether a CSV row holds data: False for a blank row, True for one as wide as the header.

    Raises:
        MitokitError: A non-blank row with another number of fields than the header.
    """
    if not any(cell.strip() for cell in row):
        return False
    if len(row) != len(header):
        raise input_error(path, f"line {lineno}: {len(row)} fields, the header has {len(header)}")
    return True


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None where ``path`` is not a readable PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return (width, height) if width > 0 and height > 0 else None


# -------------------------------------------------------------------------------- colours

CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    MITOSIS: (255, 0, 0),
    NON_MITOSIS: (0, 112, 255),
}


def class_color(label: str) -> tuple[int, int, int]:
    """A display colour per class: mitosis red, non-mitosis blue, others from a hash."""
    if label in CLASS_COLORS:
        return CLASS_COLORS[label]
    h = zlib.crc32(label.encode("utf-8"))
    return (64 + (h & 0xFF) % 192, 64 + ((h >> 8) & 0xFF) % 192, 64 + ((h >> 16) & 0xFF) % 192)


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats become None, numpy scalars plain numbers,
    tuples lists, anything else unknown its ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def dumps_json(data: Any, indent: int | None) -> str:
    """JSON text for a writer: no NaN, non-JSON values (numpy scalars, paths) as strings."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
            return obj.item()
        return str(obj)

    text = json.dumps(data, indent=indent, allow_nan=False, ensure_ascii=False, default=default)
    return text + "\n"

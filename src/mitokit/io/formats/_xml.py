"""XML helpers shared by the ASAP and ImageScope readers.

Parsing uses the standard library's :mod:`xml.etree.ElementTree`, whose expat refuses external
entities and, from expat 2.4.1 on, entity expansion beyond a small amplification factor ("billion
laughs"). Every parse failure becomes a :class:`~mitokit.errors.MitokitError` naming the file,
line and column.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: N817 - the usual name
from pathlib import Path

from mitokit.errors import input_error
from mitokit.io.formats._common import PathLike, number, read_bytes, short
from mitokit.types import BoxXYXY, PointXY

_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def _parse_error(path: PathLike, err: Exception):
    if isinstance(err, ET.ParseError) and getattr(err, "position", None):
        line, col = err.position
        msg = str(err).split(":")[0]
        return input_error(path, f"invalid XML at line {line} column {col + 1}: {msg}")
    return input_error(path, f"invalid XML: {err}")


def parse_xml(path: PathLike) -> ET.Element:
    """The root element of an XML file.

    Raises:
        MitokitError: Unreadable file or malformed XML (line and column named).
    """
    data = read_bytes(path)
    try:
        return ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError, RecursionError) as err:
        raise _parse_error(path, err) from None


def xml_root(path: PathLike, tag: str, title: str) -> ET.Element:
    """The root element of an XML file, which must be ``<tag>``.

    Raises:
        MitokitError: Unreadable file, malformed XML or another root element (``title`` names
            the format expected).
    """
    root = parse_xml(path)
    if root.tag != tag:
        raise input_error(path, f"not an {title} file (root element <{short(root.tag)}>)")
    return root


def one_image_root(path: Path, tag: str, title: str, image: str | None) -> tuple[ET.Element, str]:
    """The root element (which must be ``<tag>``) of a file that describes one image, and the
    image's id: ``image``, by default the file's stem.

    Raises:
        MitokitError: As :func:`xml_root`.
    """
    return xml_root(path, tag, title), path.stem if image is None else str(image)


def xml_points(
    elem: ET.Element,
    container: str,
    tag: str,
    where: str,
    path: PathLike,
    *,
    order: str | None = None,
) -> list[PointXY]:
    """The ``(X, Y)`` of an annotation's ``<container><tag .../></container>`` points.

    Args:
        elem: The annotation (or region) element.
        container: The tag holding the points (``Coordinates``, ``Vertices``).
        tag: The tag of one point (``Coordinate``, ``Vertex``).
        where: The annotation, for messages; a point is ``<where> <tag> #<n>``.
        path: The file, for messages.
        order: An attribute giving the points' order (``Order``); document order where it is
            None or a point lacks it.

    Raises:
        MitokitError: There are no points (``<where> has no <container>``), a bad order or
            coordinate (see :func:`xml_number`).
    """
    points = children(elem.find(container), tag)
    if not points:
        raise input_error(path, f"{where} has no {container.lower()}")
    keyed = []
    for j, point in enumerate(points):
        at = f"{where} {tag.lower()} #{j + 1}"
        raw = None if order is None else point.get(order)
        key = xml_number(point, order, at, path) if raw is not None and raw.strip() else j
        keyed.append((key, j, xml_xy(point, at, path)))
    return [xy for _, _, xy in sorted(keyed)]


def point_or_box(xy: list[PointXY]) -> tuple[PointXY | None, BoxXYXY | None]:
    """``(point, None)`` for one coordinate, ``(None, box)`` around several (:func:`bounds`)."""
    return (xy[0], None) if len(xy) == 1 else (None, bounds(xy))


def xml_xy(elem: ET.Element, where: str, path: PathLike) -> tuple[float, float]:
    """The ``(X, Y)`` attributes of a coordinate or vertex element (see :func:`xml_number`)."""
    return xml_number(elem, "X", where, path), xml_number(elem, "Y", where, path)


def leading_tags(path: Path, limit: int = 64) -> list[str]:
    """Tags of the first ``limit`` elements in document order (root first), for sniffing.

    Raises:
        MitokitError: Malformed XML before the ``limit``-th element.
    """
    tags: list[str] = []
    try:
        with open(path, "rb") as fh:
            for _, elem in ET.iterparse(fh, events=("start",)):
                tags.append(elem.tag)
                if len(tags) >= limit:
                    break
    except OSError as err:
        raise input_error(path, f"cannot read the file ({err.strerror or err})") from None
    except (ET.ParseError, ValueError, LookupError, RecursionError) as err:
        raise _parse_error(path, err) from None
    return tags


def xml_number(elem: ET.Element, name: str, where: str, path: PathLike) -> float:
    """A finite number from attribute ``name`` (a decimal comma, as some locales write, is read).

    Raises:
        MitokitError: The attribute is missing, not a number or not finite.
    """
    value = elem.get(name)
    if value is None:
        raise input_error(path, f"{where} has no {name}")
    if _DECIMAL_COMMA.match(value):
        value = value.replace(",", ".")
    return number(value, f"{where} {name}", path, text=True)


def children(elem: ET.Element | None, tag: str) -> list[ET.Element]:
    """Direct children of ``elem`` with tag ``tag`` (none where ``elem`` is None)."""
    return [] if elem is None else list(elem.findall(tag))


def bounds(xy: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """The box ``(x1, y1, x2, y2)`` around a non-empty list of points."""
    xs = [p[0] for p in xy]
    ys = [p[1] for p in xy]
    return (min(xs), min(ys), max(xs), max(ys))


def first_unique(names: list[str]) -> list[str]:
    """Names made unique: a repeated name keeps its first use, later ones get ``#<position>``."""
    seen: set[str] = set()
    out = []
    for k, name in enumerate(names):
        if name in seen:
            name = f"{name}#{k + 1}"
        seen.add(name)
        out.append(name)
    return out

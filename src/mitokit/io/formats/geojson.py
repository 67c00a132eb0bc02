"""QuPath GeoJSON: read QuPath's exports, write files QuPath imports.

Reading accepts a ``FeatureCollection``, a bare list of Features (QuPath's "Export objects"
default) or one Feature. Geometry: ``Point`` -> point, ``MultiPoint`` -> one point object per
position (QuPath stores point annotations as MultiPoint), ``Polygon`` -> the box of its bounds,
``MultiPolygon`` -> one box object per part (ids ``<id>_<n>``; the split is counted in the set's
``adjustments`` and refused under ``strict``). ``properties.classification.name`` (or a plain
string) gives the label through :func:`canonical_class`, ``default_label`` where there is none.
``properties.measurements``, a dict (QuPath >= 0.4) or a list of ``{name, value}`` (older QuPath),
gives ``score`` and ``agreement``. mitokit's own properties ``id``, ``image``, ``votes``, ``point``
and ``extra`` (also kept as ``metadata.mitokit_*`` strings, which QuPath preserves when it
re-exports annotations) are read back, so a written file round-trips.

Writing follows QuPath's GeoJSON conventions (``PathObjectTypeAdapters`` of QuPath 0.4/0.5):

* a ``FeatureCollection``; each object a Feature whose ``id`` is a UUID (QuPath's object id),
  derived with :func:`uuid.uuid5` from the set's source, the image and the object id, so the same
  input always gives the same file;
* geometry: ``Point`` for point objects, otherwise the box as a closed 5-vertex ``Polygon``
  (an object with both keeps its point in ``properties.point``);
* ``properties.objectType``: ``"detection"`` for objects with a score (predictions: light,
  uneditable, listed with their measurements) and ``"annotation"`` for ground truth; choose one
  for all with ``object_type``;
* ``properties.classification``: ``{"name": label, "color": [r, g, b]}``, mitosis red,
  non_mitosis blue, other classes a colour derived from the name;
* ``properties.measurements``: a dict with ``score``, ``agreement`` and, where there are votes,
  ``vote_mean`` and ``n_votes`` (so that QuPath can colour objects by them);
* mitokit's ``id``, ``image``, ``votes`` (and ``point``, ``extra``) as further properties, which
  QuPath ignores; the set's images, raters and vote target in a top-level ``mitokit`` member,
  which QuPath ignores too.

QuPath imports objects into the image that is open, so a file should hold one image's objects:
write with ``image=...`` (see :func:`mitokit.io.formats.write`) or use
:func:`write_geojson_per_image`, which writes ``<image stem>.geojson`` per image. A file with
several images holds them all, each object with its ``image`` property.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote, canonical_class
from mitokit.io.atomic import write_text_atomic
from mitokit.io.formats._common import (
    add_annotated_images,
    all_images,
    class_color,
    dumps_json,
    fmt_json_number,
    image_from_json,
    image_to_json,
    jsonable,
    load_json,
    number,
    point_of,
    shape_annotations,
    short,
    text_value,
    votes_from_json,
    votes_from_text,
    votes_to_json,
    votes_to_text,
)
from mitokit.types import MITOSIS

FORMAT = "geojson"
OBJECT_TYPES = ("auto", "annotation", "detection")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://mitokit/annotations")
_DERIVED = {"vote_mean", "n_votes"}


# ------------------------------------------------------------------------------------ reader


def read_geojson(
    path: Path, *, image: str | None = None, default_label: str = MITOSIS
) -> AnnotationSet:
    """Read a (QuPath) GeoJSON file.

    Args:
        path: The file.
        image: Image id of objects without an ``image`` property; the file's stem by default.
        default_label: Label of objects without a classification.

    Raises:
        MitokitError: Invalid JSON, no features, a feature without a supported geometry, a
            non-numeric or non-finite coordinate or measurement, a vote outside [0, 1].
    """
    return geojson_from_json(load_json(path), Path(path), image=image, default_label=default_label)


def is_geojson(data: Any) -> bool:
    """Whether parsed JSON looks like GeoJSON features."""
    if isinstance(data, dict):
        return data.get("type") in ("FeatureCollection", "Feature") or (
            isinstance(data.get("features"), list) and "annotations" not in data
        )
    if isinstance(data, list):
        return all(isinstance(f, dict) and f.get("type") == "Feature" for f in data)
    return False


def geojson_from_json(
    data: Any, path: Path, *, image: str | None = None, default_label: str = MITOSIS
) -> AnnotationSet:
    """Build the set from parsed GeoJSON (see :func:`read_geojson`)."""
    path = Path(path)
    meta: Any = None
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and "features" in data:
        features = data["features"]
        meta = data.get("mitokit")
        if not isinstance(features, list):
            raise input_error(path, "GeoJSON 'features' must be a list")
    else:
        raise input_error(path, "GeoJSON without features (need a FeatureCollection or a list)")
    fallback_image = path.stem if image is None else str(image)
    images, raters, vote_target = _meta(meta, path)
    default_label = canonical_class(default_label)
    annotations: list[Annotation] = []
    for k, feature in enumerate(features):
        annotations.extend(_feature(feature, k, fallback_image, default_label, path))
    for ann in annotations:
        for vote in ann.votes:
            if vote.rater not in raters:
                raters.append(vote.rater)
    aset = AnnotationSet(annotations, images, raters, str(path), FORMAT, vote_target)
    split = _split_multipolygons(features)
    if split:
        aset.adjustments["multipolygon_split"] = split
    if not aset.annotations and not aset.images:
        aset.images[fallback_image] = ImageInfo(fallback_image)
    return add_annotated_images(aset)


def _split_multipolygons(features: list) -> int:
    """How many features are MultiPolygons of several parts (read as one object per part)."""
    count = 0
    for feature in features:
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if isinstance(geometry, dict) and geometry.get("type") == "MultiPolygon":
            coords = geometry.get("coordinates")
            count += isinstance(coords, list) and len(coords) > 1
    return count


def _meta(meta: Any, path: Path):
    images = {}
    raters: list[str] = []
    vote_target = MITOSIS
    if meta is None:
        return images, raters, vote_target
    if not isinstance(meta, dict):
        raise input_error(path, "GeoJSON 'mitokit' member must be an object")
    raw_images = meta.get("images", [])
    if not isinstance(raw_images, list):
        raise input_error(path, "mitokit images must be a list")
    for k, item in enumerate(raw_images):
        info = image_from_json(item, f"mitokit image #{k + 1}", path)
        images[info.id] = info
    raw_raters = meta.get("raters", [])
    if not isinstance(raw_raters, list):
        raise input_error(path, "mitokit raters must be a list")
    raters = [text_value(r, "mitokit rater", path) for r in raw_raters]
    if meta.get("vote_target") is not None:
        vote_target = text_value(meta["vote_target"], "mitokit vote_target", path)
    return images, raters, vote_target


def _feature(
    feature: Any, k: int, fallback_image: str, default_label: str, path: Path
) -> list[Annotation]:
    """The objects of one feature (more than one for a MultiPoint or a MultiPolygon's parts)."""
    props, metadata = _properties(feature, f"feature #{k + 1}", path)
    ann_id = props.get("id", metadata.get("mitokit_id"))
    if ann_id is None:
        ann_id = feature.get("id", str(k + 1))
    ann_id = text_value(ann_id, f"feature #{k + 1} id", path)
    where = f"feature {ann_id}"
    image = props.get("image", metadata.get("mitokit_image"))
    image = fallback_image if image is None else text_value(image, f"{where} image", path)
    label = _classification(props.get("classification"), default_label, where, path)
    score, agreement, measurements = _measurements(props.get("measurements"), where, path)
    votes = _feature_votes(props, metadata, where, path)
    extra = props.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise input_error(path, f"{where}: extra must be an object")
    extra = dict(extra or {})
    if measurements:
        extra.setdefault("measurements", measurements)
    own_point = None
    if props.get("point") is not None:
        own_point = point_of(props["point"], f"{where} point", path)
    shapes = _shapes(feature.get("geometry"), own_point, where, path)
    return shape_annotations(
        path,
        where,
        shapes,
        id=ann_id,
        image=image,
        label=label,
        votes=votes,
        agreement=agreement,
        score=score,
        extra=extra,
    )


def _properties(feature: Any, where: str, path: Path) -> tuple[dict, dict]:
    """A feature's ``properties`` and their ``metadata`` (QuPath's), empty where absent."""
    if not isinstance(feature, dict):
        raise input_error(path, f"{where} is not an object")
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise input_error(path, f"{where}: properties must be an object")
    metadata = props.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    return props, metadata


def _feature_votes(props: dict, metadata: dict, where: str, path: Path) -> tuple[Vote, ...]:
    """The votes of a feature: mitokit's ``votes`` list, else QuPath metadata text, else none."""
    if props.get("votes") is not None:
        return votes_from_json(props["votes"], where, path)
    if isinstance(metadata.get("mitokit_votes"), str):
        return votes_from_text(metadata["mitokit_votes"], where, path)
    return ()


_Shape = tuple[tuple[float, float] | None, tuple[float, float, float, float] | None]


def _shapes(
    geometry: Any, own_point: tuple[float, float] | None, where: str, path: Path
) -> list[_Shape]:
    """(point, box) of each object a geometry holds.

    A Point or each point of a MultiPoint is a point; a Polygon is its bounding box (with the
    feature's own ``point`` where it has one); each part of a MultiPolygon is an object of its
    own.

    Raises:
        MitokitError: No geometry, an empty multi-geometry, or an unsupported geometry type.
    """
    if not isinstance(geometry, dict):
        raise input_error(path, f"{where} has no geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Point":
        return [(point_of(coords, f"{where} Point", path), None)]
    if kind == "MultiPoint":
        if not isinstance(coords, list) or not coords:
            raise input_error(path, f"{where}: MultiPoint without coordinates")
        return [(point_of(c, f"{where} MultiPoint", path), None) for c in coords]
    if kind == "Polygon":
        return [(own_point, _bounds(coords, 2, where, path))]
    if kind == "MultiPolygon":
        # Separate parts are separate objects: one box spanning them all would cover cells that
        # are no part of any of them. The caller counts the split (see _split_multipolygons).
        if not isinstance(coords, list) or not coords:
            raise input_error(path, f"{where}: MultiPolygon without coordinates")
        if len(coords) == 1:
            return [(own_point, _bounds(coords, 3, where, path))]
        return [
            (None, _bounds(part, 2, f"{where} part {n}", path))
            for n, part in enumerate(coords, start=1)
        ]
    raise input_error(path, f"{where} has unsupported geometry type {short(kind)}")


def _classification(value: Any, default: str, where: str, path: Path) -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return canonical_class(value)
    if isinstance(value, dict):
        name = value.get("name")
        if name is None and isinstance(value.get("names"), list):
            name = ": ".join(text_value(n, f"{where} class", path) for n in value["names"])
        if name is None:
            return default
        return canonical_class(text_value(name, f"{where} classification name", path))
    raise input_error(path, f"{where}: classification must be an object ({short(value)})")


def _measurements(value: Any, where: str, path: Path):
    """(score, agreement, other measurements) from QuPath's dict or list form."""
    if value is None:
        return None, None, {}
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, dict) or "name" not in item:
                raise input_error(path, f"{where}: a measurement must be {{name, value}}")
            items.append(
                (text_value(item["name"], f"{where} measurement", path), item.get("value"))
            )
    else:
        raise input_error(path, f"{where}: measurements must be an object or a list")
    score = agreement = None
    others = {}
    for name, raw in items:
        key = name.strip().lower()
        if key == "score":
            score = number(raw, f"{where} score", path)
        elif key == "agreement":
            agreement = number(raw, f"{where} agreement", path)
        elif key not in _DERIVED:
            others[name] = raw
    return score, agreement, others


def _bounds(coords: Any, depth: int, where: str, path: Path) -> tuple[float, float, float, float]:
    """Bounds of nested coordinate lists: ``depth`` levels of lists above each position."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(node: Any, level: int) -> None:
        if level == 0:
            x, y = point_of(node, f"{where} polygon vertex", path)
            xs.append(x)
            ys.append(y)
            return
        if not isinstance(node, list):
            raise input_error(path, f"{where}: malformed polygon coordinates")
        for child in node:
            walk(child, level - 1)

    walk(coords, depth)
    if not xs:
        raise input_error(path, f"{where}: polygon without coordinates")
    return (min(xs), min(ys), max(xs), max(ys))


# ------------------------------------------------------------------------------------ writer


def feature_uuid(source: str | None, image: str, ann_id: str, repeat: int = 0) -> str:
    """The deterministic UUID of an object in the written file."""
    key = f"{source or ''}\x00{image}\x00{ann_id}" + (f"\x00{repeat}" if repeat else "")
    return str(uuid.uuid5(_NAMESPACE, key))


def write_geojson(
    annotations: AnnotationSet,
    path: Path,
    *,
    object_type: str = "auto",
    indent: int | None = None,
) -> None:
    """Write the set as a QuPath-compatible GeoJSON FeatureCollection (atomically).

    Args:
        annotations: The set.
        path: The output file.
        object_type: ``"auto"`` (``detection`` for objects with a score, else ``annotation``),
            ``"annotation"`` or ``"detection"``.
        indent: JSON indentation; None writes one line.
    """
    if object_type not in OBJECT_TYPES:
        raise input_error(path, f"object_type must be one of {OBJECT_TYPES}, not {object_type!r}")
    seen: dict[tuple[str, str], int] = {}
    features = []
    for ann in annotations.annotations:
        key = (ann.image, ann.id)
        repeat = seen.get(key, 0)
        seen[key] = repeat + 1
        features.append(
            _to_feature(
                ann, feature_uuid(annotations.source, ann.image, ann.id, repeat), object_type
            )
        )
    meta: dict[str, Any] = {
        "images": [image_to_json(info) for info in all_images(annotations).values()],
    }
    if annotations.raters:
        meta["raters"] = list(annotations.raters)
    if annotations.vote_target != MITOSIS:
        meta["vote_target"] = annotations.vote_target
    data = {"type": "FeatureCollection", "features": features, "mitokit": jsonable(meta)}
    write_text_atomic(path, dumps_json(data, indent))


def _to_feature(ann: Annotation, feature_id: str, object_type: str) -> dict[str, Any]:
    if ann.box is not None:
        x1, y1, x2, y2 = (fmt_json_number(v) for v in ann.box)
        ring = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
    else:
        geometry = {"type": "Point", "coordinates": [fmt_json_number(v) for v in ann.point]}
    if object_type == "auto":
        object_type = "detection" if ann.score is not None else "annotation"
    measurements: dict[str, Any] = {}
    if ann.score is not None:
        measurements["score"] = fmt_json_number(ann.score)
    if ann.agreement is not None:
        measurements["agreement"] = fmt_json_number(ann.agreement)
    if ann.votes:
        measurements["vote_mean"] = sum(v.value for v in ann.votes) / len(ann.votes)
        measurements["n_votes"] = len(ann.votes)
    props: dict[str, Any] = {
        "objectType": object_type,
        "classification": {"name": ann.label, "color": list(class_color(ann.label))},
    }
    if measurements:
        props["measurements"] = measurements
    metadata = {"mitokit_id": ann.id, "mitokit_image": ann.image}
    if ann.votes:
        metadata["mitokit_votes"] = votes_to_text(ann.votes)
    props["metadata"] = metadata
    props["id"] = ann.id
    props["image"] = ann.image
    if ann.votes:
        props["votes"] = votes_to_json(ann.votes)
    if ann.box is not None and ann.point is not None:
        props["point"] = [fmt_json_number(v) for v in ann.point]
    if ann.extra:
        props["extra"] = jsonable(ann.extra)
    return {"type": "Feature", "id": feature_id, "geometry": geometry, "properties": props}


def image_file_stem(image_id: str) -> str:
    """A file stem for an image id: folders joined by ``_``, the extension dropped, made safe.

    The result is never empty, ``.`` or ``..`` and holds no separator (see
    :func:`mitokit.io.names.safe_name`).
    """
    from mitokit.io.names import safe_name

    name = image_id.replace("\\", "/").strip("/")
    last = name.rsplit("/", 1)[-1]
    if "." in last.strip("."):
        name = name[: len(name) - len(last)] + last.rsplit(".", 1)[0]
    stem = re.sub(r"[^\w.\-]+", "_", name.replace("/", "_")).strip("._")
    return safe_name(stem or "image")


def write_geojson_per_image(
    annotations: AnnotationSet,
    folder: str | Path,
    *,
    object_type: str = "auto",
    indent: int | None = None,
) -> dict[str, Path]:
    """Write one QuPath GeoJSON file per image into ``folder`` (what QuPath imports).

    Files are named after the image (``001.tiff`` -> ``001.geojson``, ``01/25.tif`` ->
    ``01_25.geojson``, an id such as ``../x`` stays inside ``folder``). Ids whose names clash
    (``a/b`` and ``a_b``; ``A`` and ``a``, one file on case-insensitive systems) are numbered
    apart, in the order of the images: ``a_b``, ``a_b_2`` ... Images without objects get an
    empty FeatureCollection, so every image has its file.

    Returns:
        The written file per image id.
    """
    from mitokit.io.names import child_path, distinct_names

    folder = Path(folder)
    written: dict[str, Path] = {}
    names = distinct_names(all_images(annotations), make=image_file_stem)
    for image_id, name in names.items():
        target = child_path(folder, f"{name}.geojson")
        write_geojson(
            annotations.filter(image=image_id), target, object_type=object_type, indent=indent
        )
        written[image_id] = target
    return written

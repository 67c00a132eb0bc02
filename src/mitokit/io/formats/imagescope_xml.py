"""Aperio ImageScope XML (read): the annotation files ImageScope / eSlide Manager save.

::

    <Annotations MicronsPerPixel="0.252">
      <Annotation Id="1" Name="mitosis" LineColor="65280">
        <Attributes>...</Attributes>
        <Regions>
          <Region Id="1" Type="0" Text="" NegativeROA="0">
            <Vertices><Vertex X="10" Y="20" Z="0"/> ...</Vertices>
          </Region> ...
        </Regions>
      </Annotation> ...
    </Annotations>

Each ``Annotation`` is a layer; each of its ``Region`` elements is one object. ImageScope's
``Type`` codes (0 freehand / polygon, 1 rectangle, 2 ellipse, 3 arrow, ... in the files seen;
they are not documented by the vendor) are not relied on, because every shape's vertices bound
it: a rectangle stores its four corners, an ellipse the two corners of its bounding box, a
polygon its outline. The rule is therefore: **a region with one vertex is a point; any other
region is the bounding box of its vertices.** ``Type`` is kept in ``extra["region_type"]``.
Regions with ``NegativeROA="1"`` are exclusions cut out of an analysis area, not objects, and
are skipped.

Class: the region's ``Text`` when it is not empty, else the layer's ``Name`` when it is not
empty, else ``default_label``; each through :func:`canonical_class`. Ids are
``<annotation Id>_<region Id>`` (positions where an Id is missing; a repeated id gets
``#<position>``). ``MicronsPerPixel`` on the root, when present and positive, becomes the
image's mpp (ImageScope writes 0 or nothing where it is unknown). One file describes one image:
its id is ``image``, by default the file's stem.

Malformed XML, a root other than ``Annotations``, a region without vertices, a missing,
non-numeric or non-finite ``X`` / ``Y`` and a negative or non-numeric ``MicronsPerPixel`` are
errors naming the file and the region.
"""

from __future__ import annotations

from pathlib import Path

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.formats._common import make_annotation, short
from mitokit.io.formats._xml import (
    children,
    first_unique,
    one_image_root,
    point_or_box,
    xml_number,
    xml_points,
)
from mitokit.types import MITOSIS

FORMAT = "imagescope_xml"
ROOT = "Annotations"


def read_imagescope_xml(
    path: Path, *, image: str | None = None, default_label: str = MITOSIS
) -> AnnotationSet:
    """Read an Aperio ImageScope XML file.

    Args:
        path: The file.
        image: Image id of the objects; the file's stem by default.
        default_label: Class of regions whose region text and layer name are both empty.

    Raises:
        MitokitError: Malformed XML, another root element, a region without vertices, a bad
            vertex or ``MicronsPerPixel`` (the layer and region are named).
    """
    path = Path(path)
    root, image_id = one_image_root(path, ROOT, "ImageScope XML", image)
    default_label = canonical_class(default_label)
    mpp = _mpp(root, path)
    found: list[tuple[str, str, dict]] = []  # (id, where, fields)
    for k, layer in enumerate(children(root, "Annotation")):
        layer_id = (layer.get("Id") or "").strip() or str(k + 1)
        layer_name = (layer.get("Name") or "").strip()
        for j, region in enumerate(children(layer.find("Regions"), "Region")):
            region_id = (region.get("Id") or "").strip() or str(j + 1)
            where = f"annotation {short(layer_id)} region {short(region_id)}"
            if (region.get("NegativeROA") or "").strip() == "1":
                continue
            xy = xml_points(region, "Vertices", "Vertex", where, path)
            text = (region.get("Text") or "").strip()
            label = canonical_class(text or layer_name) if text or layer_name else default_label
            extra = {"region_type": region.get("Type")} if region.get("Type") else {}
            if text:
                extra["text"] = text
            point, box = point_or_box(xy)
            fields = {"label": label, "extra": extra, "point": point, "box": box}
            found.append((f"{layer_id}_{region_id}", where, fields))
    ids = first_unique([f[0] for f in found])
    annotations: list[Annotation] = [
        make_annotation(path, where, id=ann_id, image=image_id, **fields)
        for ann_id, (_, where, fields) in zip(ids, found, strict=True)
    ]
    images = {image_id: ImageInfo(image_id, mpp=mpp)}
    return AnnotationSet(annotations, images, [], str(path), FORMAT)


def _mpp(root, path: Path) -> float | None:
    raw = root.get("MicronsPerPixel")
    if raw is None or not raw.strip():
        return None
    value = xml_number(root, "MicronsPerPixel", "the root element", path)
    if value < 0:
        raise input_error(path, f"MicronsPerPixel must not be negative ({value:g})")
    return value or None

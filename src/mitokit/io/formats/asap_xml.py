"""ASAP XML (read): the annotation files of ASAP, used by CAMELYON and TUPAC-era tools.

::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="A1" Type="Dot" PartOfGroup="mitosis" Color="#F4FA58">
          <Coordinates><Coordinate Order="0" X="1.5" Y="2.5"/></Coordinates>
        </Annotation> ...
      </Annotations>
      <AnnotationGroups><Group Name="mitosis" PartOfGroup="None" Color="..."/></AnnotationGroups>
    </ASAP_Annotations>

Shapes, by ``Type`` (case ignored): ``Dot`` -> a point (exactly one coordinate);
``PointSet`` -> one point per coordinate, ids ``<name>_<n>``; ``Measurement`` (a ruler line, no
object) -> skipped; ``Rectangle``, ``Polygon``, ``Spline`` and any other type -> the bounding box
of the coordinates (a single coordinate -> a point). Coordinates are taken in ``Order``
(document order where it is missing). The class is ``PartOfGroup`` through
:func:`canonical_class`; ``"None"`` or no group gives ``default_label``. Object ids are the
``Name`` attributes (a repeated name gets ``#<position>``). One file describes one image: its id is
``image``, by default the file's stem.

A decimal comma (``X="10,5"``, written by ASAP under some locales) is read as a decimal point.
Malformed XML, a root other than ``ASAP_Annotations``, an annotation without coordinates, a
missing, non-numeric or non-finite ``X`` / ``Y`` are errors naming the file and the annotation.
"""

from __future__ import annotations

from pathlib import Path

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.formats._common import shape_annotations, short
from mitokit.io.formats._xml import children, first_unique, one_image_root, point_or_box, xml_points
from mitokit.types import MITOSIS

FORMAT = "asap_xml"
ROOT = "ASAP_Annotations"
SKIPPED_TYPES = {"measurement"}


def read_asap_xml(
    path: Path, *, image: str | None = None, default_label: str = MITOSIS
) -> AnnotationSet:
    """Read an ASAP XML file.

    Args:
        path: The file.
        image: Image id of the objects; the file's stem by default.
        default_label: Class of annotations without a group.

    Raises:
        MitokitError: Malformed XML, another root element, an annotation without coordinates,
            a bad coordinate (the annotation and coordinate are named).
    """
    path = Path(path)
    root, image_id = one_image_root(path, ROOT, "ASAP XML", image)
    default_label = canonical_class(default_label)
    elems = children(root.find("Annotations"), "Annotation")
    names = first_unique([e.get("Name") or f"annotation {k + 1}" for k, e in enumerate(elems)])
    annotations: list[Annotation] = []
    for k, (elem, name) in enumerate(zip(elems, names, strict=True)):
        where = f"annotation #{k + 1} ({short(elem.get('Name') or '')})"
        kind = (elem.get("Type") or "").strip().lower()
        if kind in SKIPPED_TYPES:
            continue
        xy = xml_points(elem, "Coordinates", "Coordinate", where, path, order="Order")
        group = (elem.get("PartOfGroup") or "").strip()
        label = default_label if group in ("", "None") else canonical_class(group)
        extra = {"type": elem.get("Type")} if elem.get("Type") else {}
        if kind == "dot" and len(xy) != 1:
            raise input_error(path, f"{where}: a Dot needs one coordinate, it has {len(xy)}")
        shapes = [(p, None) for p in xy] if kind == "pointset" else [point_or_box(xy)]
        annotations += shape_annotations(
            path, where, shapes, id=name, image=image_id, label=label, extra=extra
        )
    return AnnotationSet(annotations, {image_id: ImageInfo(image_id)}, [], str(path), FORMAT)

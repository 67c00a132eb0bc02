"""COCO-style JSON, including MIDOG's variant with ``[x1, y1, x2, y2]`` boxes.

Standard COCO stores ``bbox`` as ``[x, y, width, height]``; the MIDOG 2021/2022 databases store
the corners ``[x1, y1, x2, y2]`` in the same field. The reader decides per file
(``bbox_format="auto"``), in this order:

1. ``info.bbox_format`` (``"xyxy"`` or ``"xywh"``), as mitokit's writer records it;
2. ``info.description`` or ``info.url`` mentioning MIDOG -> ``xyxy``;
3. some box with ``bbox[2] < bbox[0]`` or ``bbox[3] < bbox[1]`` -> ``xywh`` (cannot be corners);
4. image sizes known, and read as ``xywh`` some box centre falls outside its image while read as
   ``xyxy`` none does -> ``xyxy``;
5. at least 3 boxes whose ``bbox[2] - bbox[0]`` and ``bbox[3] - bbox[1]`` are the same for all,
   while ``bbox[2]`` itself varies -> ``xyxy`` (fixed-size boxes stored as corners, MIDOG's
   50 x 50 px; as ``xywh`` the width would have to grow exactly with x);
6. otherwise ``xywh``, standard COCO.

A file none of these rules settles (for example a single box, or boxes whose sizes are all
equal in both readings) is read as standard COCO; pass ``bbox_format`` to be explicit.

Images get their ``file_name`` as id (what users see; the numeric COCO id only links the
annotations). Category names go through :func:`canonical_class` ("mitotic figure" ->
``mitosis``, "not mitotic figure" -> ``non_mitosis``). Per-rater labels become votes: either
mitokit's ``"votes": [{"rater", "value"}]`` or a ``"labels"`` list of category ids (rater =
``rater<position>``) or of objects ``{"rater", "category_id" | "category" | "label"}``; a vote
is 1.0 where the rater's class is ``mitosis`` and 0.0 otherwise.

mitokit's writer adds a few keys COCO tools ignore, so that a round trip keeps everything:
``point`` (and ``synthetic_bbox`` for point-only objects, which get a square box of
``point_box_size`` pixels), ``score``, ``agreement``, ``votes``, ``mitokit_id`` (where an id is
not an integer), ``extra``; per image ``mitokit_id`` (where the id is not the file name),
``mitokit_file_name`` (null where the set had no file name) and ``mpp``; at top level
``raters`` and ``vote_target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote, canonical_class
from mitokit.io.atomic import write_text_atomic
from mitokit.io.formats._common import (
    add_annotated_images,
    all_images,
    dumps_json,
    fmt_json_number,
    jsonable,
    load_json,
    make_annotation,
    number,
    optional_number,
    optional_size,
    point_of,
    short,
    text_value,
    unique_names,
    vote_value_for_class,
    votes_from_json,
    votes_to_json,
)
from mitokit.types import MITOSIS, NON_MITOSIS

FORMAT = "coco"
BBOX_FORMATS = ("auto", "xyxy", "xywh")


def read_coco(path: Path, *, bbox_format: str = "auto") -> AnnotationSet:
    """Read a COCO / MIDOG JSON file.

    Args:
        path: The file.
        bbox_format: ``"auto"`` (see the module docs), ``"xyxy"`` (MIDOG) or ``"xywh"`` (COCO).

    Raises:
        MitokitError: Invalid JSON, missing ``images``/``annotations``/``categories``, an
            annotation without a valid ``bbox`` or with an unknown image or category id, a box
            with x2 < x1, a vote outside [0, 1].
    """
    return coco_from_json(load_json(path), Path(path), bbox_format=bbox_format)


def coco_from_json(data: Any, path: Path, *, bbox_format: str = "auto") -> AnnotationSet:
    """Build the set from parsed COCO JSON (see :func:`read_coco`)."""
    if bbox_format not in BBOX_FORMATS:
        raise input_error(path, f"bbox_format must be one of {BBOX_FORMATS}, not {bbox_format!r}")
    if not isinstance(data, dict):
        raise input_error(path, "COCO JSON must be an object with images and annotations")
    for key in ("images", "annotations"):
        if key not in data:
            raise input_error(path, f"COCO JSON without {key!r}")
        if not isinstance(data[key], list):
            raise input_error(path, f"COCO {key!r} must be a list")
    raw_anns = data["annotations"]
    images, image_by_coco_id = _images(data["images"], path)
    categories = _categories(data.get("categories"), path, needed=bool(raw_anns))
    for k, ann in enumerate(raw_anns):
        if not isinstance(ann, dict):
            raise input_error(path, f"annotation #{k + 1} is not an object")
    boxes = [_raw_box(ann, k, path) for k, ann in enumerate(raw_anns)]
    layout = bbox_format
    if layout == "auto":
        sizes = []
        for ann in raw_anns:
            info = images.get(image_by_coco_id.get(_key(ann.get("image_id")), ""))
            sizes.append(None if info is None else (info.width, info.height))
        layout = guess_bbox_format(data.get("info"), boxes, sizes)
    raters: list[str] = []
    top_raters = data.get("raters")
    if top_raters is not None:
        if not isinstance(top_raters, list):
            raise input_error(path, "COCO 'raters' must be a list")
        raters = [text_value(r, "rater", path) for r in top_raters]
    vote_target = data.get("vote_target", MITOSIS)
    vote_target = text_value(vote_target, "vote_target", path)
    annotations = []
    for k, (ann, box) in enumerate(zip(raw_anns, boxes, strict=True)):
        annotation = _annotation(ann, k, box, layout, images, image_by_coco_id, categories, path)
        for vote in annotation.votes:
            if vote.rater not in raters:
                raters.append(vote.rater)
        annotations.append(annotation)
    aset = AnnotationSet(annotations, images, raters, str(path), FORMAT, vote_target)
    return add_annotated_images(aset)


def guess_bbox_format(
    info: Any,
    boxes: list[tuple[float, float, float, float] | None],
    sizes: list[tuple[int | None, int | None] | None] | None = None,
) -> str:
    """``"xyxy"`` or ``"xywh"`` for a file's boxes, by the rules in the module docs.

    Args:
        info: The file's ``info`` object (or None).
        boxes: The raw ``bbox`` values as read (None where an object has no box).
        sizes: Per box, the (width, height) of its image where known.
    """
    if isinstance(info, dict):
        declared = info.get("bbox_format")
        if declared in ("xyxy", "xywh"):
            return declared
        for key in ("description", "url"):
            value = info.get(key)
            if isinstance(value, str) and "midog" in value.lower():
                return "xyxy"
    present = [b for b in boxes if b is not None]
    if any(b[2] < b[0] or b[3] < b[1] for b in present):
        return "xywh"
    if sizes is not None:
        outside_xywh = outside_xyxy = False
        for b, size in zip(boxes, sizes, strict=False):
            if b is None or size is None or size[0] is None or size[1] is None:
                continue
            w, h = size
            if not (0 <= b[0] + b[2] / 2 <= w and 0 <= b[1] + b[3] / 2 <= h):
                outside_xywh = True
            if not (0 <= (b[0] + b[2]) / 2 <= w and 0 <= (b[1] + b[3]) / 2 <= h):
                outside_xyxy = True
        if outside_xywh and not outside_xyxy:
            return "xyxy"
    if len(present) >= 3:
        spans = {(b[2] - b[0], b[3] - b[1]) for b in present}
        if len(spans) == 1 and len({b[2] for b in present}) > 1:
            return "xyxy"
    return "xywh"


def _key(value: Any) -> Any:
    """A COCO id as a dict key: 3 and 3.0 and "3" are different ids in JSON, 3 and 3.0 not."""
    if isinstance(value, (bool, list, dict)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _images(raw: list, path: Path) -> tuple[dict[str, ImageInfo], dict[Any, str]]:
    entries = []
    for k, im in enumerate(raw):
        where = f"image #{k + 1}"
        if not isinstance(im, dict):
            raise input_error(path, f"{where} is not an object")
        if "id" not in im:
            raise input_error(path, f"{where} has no id")
        coco_id = _key(im["id"])
        if coco_id is None:
            raise input_error(path, f"{where} has an invalid id ({short(im['id'])})")
        file_name = im.get("file_name")
        if "mitokit_file_name" in im:
            file_name = im["mitokit_file_name"]
        file_name = None if file_name is None else text_value(file_name, f"{where} file_name", path)
        own = im.get("mitokit_id")
        own = None if own is None else text_value(own, f"{where} mitokit_id", path)
        mpp = optional_number(im.get("mpp"), f"{where} mpp", path)
        if mpp is not None and mpp <= 0:
            raise input_error(path, f"{where} mpp must be positive")
        entries.append(
            (
                coco_id,
                own or file_name or str(coco_id),
                file_name,
                optional_size(im.get("width"), f"{where} width", path),
                optional_size(im.get("height"), f"{where} height", path),
                mpp,
            )
        )
    names = unique_names([e[1] for e in entries], [[f"{e[1]}#{e[0]}"] for e in entries])
    images: dict[str, ImageInfo] = {}
    by_coco_id: dict[Any, str] = {}
    for (coco_id, _, file_name, width, height, mpp), name in zip(entries, names, strict=True):
        if coco_id in by_coco_id:
            raise input_error(path, f"image id {short(coco_id)} appears twice")
        by_coco_id[coco_id] = name
        images[name] = ImageInfo(name, file_name, width, height, mpp)
    return images, by_coco_id


def _categories(raw: Any, path: Path, *, needed: bool) -> dict[Any, str]:
    if raw is None:
        if needed:
            raise input_error(path, "COCO JSON without 'categories'")
        return {}
    if not isinstance(raw, list):
        raise input_error(path, "COCO 'categories' must be a list")
    out: dict[Any, str] = {}
    for k, cat in enumerate(raw):
        where = f"category #{k + 1}"
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise input_error(path, f"{where} must be an object with id and name")
        key = _key(cat["id"])
        if key is None:
            raise input_error(path, f"{where} has an invalid id ({short(cat['id'])})")
        out[key] = canonical_class(text_value(cat["name"], f"{where} name", path))
    return out


def _raw_box(ann: dict, k: int, path: Path) -> tuple[float, float, float, float]:
    where = f"annotation #{k + 1}"
    if "bbox" not in ann:
        raise input_error(path, f"{where} has no bbox")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise input_error(path, f"{where}: bbox must be a list of 4 numbers ({short(bbox)})")
    return tuple(number(v, f"{where} bbox", path) for v in bbox)  # type: ignore[return-value]


def _annotation(
    ann: dict,
    k: int,
    raw: tuple[float, float, float, float],
    layout: str,
    images: dict[str, ImageInfo],
    image_by_coco_id: dict[Any, str],
    categories: dict[Any, str],
    path: Path,
) -> Annotation:
    where = f"annotation #{k + 1}"
    if "id" in ann:
        ann_id = text_value(ann["id"], f"{where} id", path)
        where = f"annotation {ann_id}"
    else:
        ann_id = str(k + 1)
    if ann.get("mitokit_id") is not None:
        ann_id = text_value(ann["mitokit_id"], f"{where} mitokit_id", path)
    image_key = _key(ann.get("image_id"))
    if "image_id" not in ann or image_key not in image_by_coco_id:
        raise input_error(path, f"{where} refers to unknown image_id {short(ann.get('image_id'))}")
    if "category_id" not in ann:
        raise input_error(path, f"{where} has no category_id")
    cat_key = _key(ann["category_id"])
    if cat_key not in categories:
        raise input_error(path, f"{where} has unknown category_id {short(ann['category_id'])}")
    if layout == "xyxy":
        x1, y1, x2, y2 = raw
        if x2 < x1 or y2 < y1:
            raise input_error(path, f"{where}: bbox with x2 < x1 or y2 < y1 ({short(list(raw))})")
    else:
        x1, y1, w, h = raw
        if w < 0 or h < 0:
            raise input_error(path, f"{where}: bbox with negative width or height")
        x2, y2 = x1 + w, y1 + h
    box: tuple[float, float, float, float] | None = (x1, y1, x2, y2)
    point = None
    if ann.get("point") is not None:
        point = point_of(ann["point"], f"{where} point", path)
    if ann.get("synthetic_bbox") is True and point is not None:
        box = None
    votes = votes_from_json(ann.get("votes"), where, path)
    if not votes and ann.get("labels") is not None:
        votes = _label_votes(ann["labels"], categories, where, path)
    extra = ann.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise input_error(path, f"{where}: extra must be an object")
    return make_annotation(
        path,
        where,
        id=ann_id,
        image=image_by_coco_id[image_key],
        point=point,
        box=box,
        label=categories[cat_key],
        votes=votes,
        agreement=optional_number(ann.get("agreement"), f"{where} agreement", path),
        score=optional_number(ann.get("score"), f"{where} score", path),
        extra=dict(extra or {}),
    )


def _label_votes(labels: Any, categories: dict[Any, str], where: str, path: Path):
    if not isinstance(labels, list):
        raise input_error(path, f"{where}: labels must be a list ({short(labels)})")
    by_name = {name: name for name in categories.values()}
    votes = []
    for k, item in enumerate(labels):
        rater: Any = f"rater{k + 1}"
        cat: Any = item
        if isinstance(item, dict):
            rater = item.get("rater", item.get("annotator", item.get("person", rater)))
            rater = text_value(rater, f"{where} label {k + 1} rater", path)
            cat = item.get("category_id", item.get("category", item.get("label")))
        if isinstance(cat, str) and not (cat.isascii() and cat.isdigit()):
            label = by_name.get(canonical_class(cat), canonical_class(cat))
        else:
            key = _key(int(cat) if isinstance(cat, str) else cat)
            if key not in categories:
                raise input_error(path, f"{where} label {k + 1}: unknown category {short(cat)}")
            label = categories[key]
        votes.append(Vote(rater, vote_value_for_class(label)))
    return tuple(votes)


# ------------------------------------------------------------------------------------ writer


def write_coco(
    annotations: AnnotationSet,
    path: Path,
    *,
    bbox_format: str = "xywh",
    point_box_size: float = 50.0,
    indent: int | None = None,
) -> None:
    """Write the set as COCO JSON (atomically).

    Args:
        annotations: The set.
        path: The output file.
        bbox_format: ``"xywh"`` (standard COCO, default) or ``"xyxy"`` (MIDOG style); recorded in
            ``info.bbox_format`` so that mitokit reads it back right.
        point_box_size: Side in pixels of the square box given to point-only objects (COCO needs
            a box; 50 px is MIDOG's box around a mitotic figure). The point is kept in ``point``
            and the box marked ``synthetic_bbox`` so that reading back gives a point again.
        indent: JSON indentation; None writes compact JSON.

    Categories: ``mitosis`` is 1 and ``non_mitosis`` 2 (as in MIDOG), always present; other
    labels follow from 3 in order of appearance.
    """
    if bbox_format not in ("xyxy", "xywh"):
        raise input_error(path, f"bbox_format must be 'xyxy' or 'xywh', not {bbox_format!r}")
    if not point_box_size > 0:
        raise input_error(path, f"point_box_size must be positive, not {point_box_size!r}")
    labels = [MITOSIS, NON_MITOSIS]
    for ann in annotations.annotations:
        if ann.label not in labels:
            labels.append(ann.label)
    category_id = {label: k + 1 for k, label in enumerate(labels)}
    images = all_images(annotations)
    image_id = {name: k + 1 for k, name in enumerate(images)}
    out_anns = [
        _annotation_entry(
            ann,
            number_id,
            renamed,
            image_id=image_id[ann.image],
            category_id=category_id[ann.label],
            bbox_format=bbox_format,
            point_box_size=point_box_size,
        )
        for ann, (number_id, renamed) in zip(
            annotations.annotations, _numbers(annotations.annotations), strict=True
        )
    ]
    data: dict[str, Any] = {
        "info": {"description": "mitokit annotations", "bbox_format": bbox_format},
        "images": [_image_entry(info, image_id[name]) for name, info in images.items()],
        "categories": [{"id": category_id[label], "name": label} for label in labels],
        "annotations": out_anns,
    }
    if annotations.raters:
        data["raters"] = list(annotations.raters)
    if annotations.vote_target != MITOSIS:
        data["vote_target"] = annotations.vote_target
    write_text_atomic(path, dumps_json(data, indent))


def _image_entry(info: ImageInfo, number_id: int) -> dict[str, Any]:
    """The COCO ``images`` entry of one image (its mitokit id and missing file name recorded)."""
    entry: dict[str, Any] = {"id": number_id, "file_name": info.file_name or info.id}
    if info.file_name != info.id:
        entry["mitokit_id"] = info.id
    if info.file_name is None:
        entry["mitokit_file_name"] = None  # COCO needs a file_name; the set had none
    if info.width is not None:
        entry["width"] = info.width
    if info.height is not None:
        entry["height"] = info.height
    if info.mpp is not None:
        entry["mpp"] = info.mpp
    return entry


def _numbers(anns: Sequence[Annotation]) -> list[tuple[int, str | None]]:
    """COCO's integer id of each object, and its own id where that is not the integer.

    An id that is an integer (as text) keeps its number unless an earlier object took it; the
    others get the lowest numbers no object uses, and keep their id as ``mitokit_id``.
    """
    used = {int(a.id) for a in anns if _is_int_text(a.id)}
    taken: set[int] = set()
    next_free = 1
    out: list[tuple[int, str | None]] = []
    for ann in anns:
        if _is_int_text(ann.id) and int(ann.id) not in taken:
            out.append((int(ann.id), None))
        else:
            while next_free in used or next_free in taken:
                next_free += 1
            out.append((next_free, ann.id))
        taken.add(out[-1][0])
    return out


def _annotation_entry(
    ann: Annotation,
    number_id: int,
    mitokit_id: str | None,
    *,
    image_id: int,
    category_id: int,
    bbox_format: str,
    point_box_size: float,
) -> dict[str, Any]:
    """The COCO ``annotations`` entry of one object (a point gets a synthetic square box)."""
    x1, y1, x2, y2 = ann.box_or_square(point_box_size)
    bbox = [x1, y1, x2, y2] if bbox_format == "xyxy" else [x1, y1, x2 - x1, y2 - y1]
    entry: dict[str, Any] = {
        "id": number_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [fmt_json_number(v) for v in bbox],
        "area": fmt_json_number((x2 - x1) * (y2 - y1)),
        "iscrowd": 0,
    }
    if mitokit_id is not None:
        entry["mitokit_id"] = mitokit_id
    if ann.point is not None:
        entry["point"] = [fmt_json_number(v) for v in ann.point]
        if ann.box is None:
            entry["synthetic_bbox"] = True
    if ann.score is not None:
        entry["score"] = fmt_json_number(ann.score)
    if ann.agreement is not None:
        entry["agreement"] = fmt_json_number(ann.agreement)
    if ann.votes:
        entry["votes"] = votes_to_json(ann.votes)
    if ann.extra:
        entry["extra"] = jsonable(ann.extra)
    return entry


def _is_int_text(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) < 16 and str(int(text)) == text

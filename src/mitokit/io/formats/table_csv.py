"""mitokit's own CSV table: one object per row, every field of :class:`Annotation`.

Layout (what :func:`write_table_csv` writes and :func:`read_table_csv` reads back exactly)::

    # mitokit: {"format": "csv", "version": 1}
    # vote_target: "atypical"                      (only when not "mitosis")
    # raters: ["expert1", "expert2"]
    # image: {"id": "001.tiff", "width": 7215, "height": 5412}
    id,image,x,y,x1,y1,x2,y2,label,agreement,score,votes[,extra]
    17,001.tiff,4361,371,4336,346,4386,396,mitosis,,0.93,r1:1;r1:0.5;r2:0

The ``#`` lines before the header carry what a row cannot (the images, annotated or not, the
raters, the vote target), each as ``# key: <JSON>``; ``pandas.read_csv(path, comment="#")`` reads
the table. Empty fields are None: a point-only object leaves x1..y2 empty, a box-only one x,y.
Votes are ``rater:value`` pairs joined by ``;`` (``%``, ``;`` and ``:`` in rater ids are
percent-escaped). ``extra`` is a JSON object, written only when some object has extra fields.
Numbers are written in their shortest exact form, so a round trip gives the same floats.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.atomic import write_text_atomic
from mitokit.io.formats._common import (
    add_annotated_images,
    csv_data_row,
    csv_header_columns,
    fmt_number,
    image_from_json,
    image_to_json,
    jsonable,
    make_annotation,
    number,
    optional_number,
    read_text,
    short,
    text_value,
    votes_from_text,
    votes_to_text,
)
from mitokit.types import MITOSIS

FORMAT = "csv"

COLUMNS = (
    "id", "image", "x", "y", "x1", "y1", "x2", "y2", "label", "agreement", "score", "votes",
)  # fmt: skip
"""The columns of the table, in the order written."""

MARKER = "# mitokit:"


def is_table_header(fields: list[str]) -> bool:
    """Whether a parsed first row is this format's header (all :data:`COLUMNS` present)."""
    names = {f.strip().lower() for f in fields}
    return set(COLUMNS) <= names


def write_table_csv(annotations: AnnotationSet, path: Path) -> None:
    """Write the set as mitokit's CSV table (atomically).

    Args:
        annotations: The set; its images, raters and vote target go into ``#`` lines.
        path: The output file.
    """
    has_extra = any(a.extra for a in annotations.annotations)
    buf = io.StringIO()
    buf.write(f"{MARKER} {json.dumps({'format': FORMAT, 'version': 1})}\n")
    if annotations.vote_target != MITOSIS:
        buf.write(f"# vote_target: {json.dumps(annotations.vote_target, ensure_ascii=False)}\n")
    if annotations.raters:
        buf.write(f"# raters: {json.dumps(list(annotations.raters), ensure_ascii=False)}\n")
    for info in annotations.images.values():
        image_json = json.dumps(jsonable(image_to_json(info)), ensure_ascii=False)
        buf.write(f"# image: {image_json}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + (("extra",) if has_extra else ()))
    for ann in annotations.annotations:
        point = ("", "") if ann.point is None else tuple(fmt_number(v) for v in ann.point)
        box = ("",) * 4 if ann.box is None else tuple(fmt_number(v) for v in ann.box)
        row = [
            ann.id,
            ann.image,
            *point,
            *box,
            ann.label,
            "" if ann.agreement is None else fmt_number(ann.agreement),
            "" if ann.score is None else fmt_number(ann.score),
            votes_to_text(ann.votes),
        ]
        if has_extra:
            row.append(json.dumps(jsonable(ann.extra), ensure_ascii=False) if ann.extra else "")
        writer.writerow(row)
    write_text_atomic(path, buf.getvalue())


def read_table_csv(path: Path) -> AnnotationSet:
    """Read mitokit's CSV table.

    Columns may come in any order; further unknown columns are kept in each object's ``extra``.
    Without the ``#`` lines, the images are those the rows name and there are no raters.

    Raises:
        MitokitError: A missing column, a row of the wrong length, a non-numeric or non-finite
            number, half a point or box, a vote outside [0, 1]; the message names the line.
    """
    path = Path(path)
    stream = io.StringIO(read_text(path), newline="")
    images: dict[str, ImageInfo] = {}
    raters: list[str] = []
    vote_target = MITOSIS
    preamble = 0  # lines before the header
    while True:
        pos = stream.tell()
        line = stream.readline()
        stripped = line.strip()
        if not line or (stripped and not stripped.startswith("#")):
            stream.seek(pos)
            break
        preamble += 1
        if not stripped:
            continue
        key, value = _meta(stripped, preamble, path)
        where = f"line {preamble}"
        if key == "vote_target":
            vote_target = text_value(value, f"{where}: vote_target", path)
        elif key == "raters":
            if not isinstance(value, list):
                raise input_error(path, f"{where}: raters must be a JSON list")
            raters = [text_value(r, f"{where}: rater", path) for r in value]
        elif key == "image":
            info = image_from_json(value, f"{where}: image", path)
            images[info.id] = info
    reader = csv.reader(stream)
    annotations: list[Annotation] = []
    header: list[str] | None = None
    try:
        for row in reader:
            lineno = preamble + reader.line_num
            if header is None:
                header = [h.strip().lower() for h in row]
                col = csv_header_columns(
                    header, COLUMNS, lineno, path, lacks="header lacks column(s)"
                )
                others = [n for n in header if n not in COLUMNS and n != "extra" and n]
                continue
            if not csv_data_row(row, header, lineno, path):
                continue
            annotations.append(_row(row, col, others, lineno, path))
    except csv.Error as err:
        raise input_error(path, f"malformed CSV ({err})") from None
    if header is None:
        raise input_error(path, "no header line (expected " + ",".join(COLUMNS) + ")")
    aset = AnnotationSet(annotations, images, raters, str(path), FORMAT, vote_target)
    return add_annotated_images(aset)


def _meta(line: str, lineno: int, path: Path) -> tuple[str, Any]:
    body = line.lstrip("#").strip()
    key, sep, value = body.partition(":")
    key = key.strip()
    if not sep or key not in ("mitokit", "vote_target", "raters", "image"):
        return "", None  # a plain comment
    try:
        return key, json.loads(value)
    except (ValueError, RecursionError):
        raise input_error(path, f"line {lineno}: invalid JSON after '{key}:'") from None


def _row(
    row: list[str], col: dict[str, int], others: list[str], lineno: int, path: Path
) -> Annotation:
    def cell(name: str) -> str:
        return row[col[name]].strip()

    where = f"line {lineno}"
    x, y = cell("x"), cell("y")
    point = None
    if x or y:
        point = (
            number(x, f"{where}: x", path, text=True),
            number(y, f"{where}: y", path, text=True),
        )
    corners = [cell(c) for c in ("x1", "y1", "x2", "y2")]
    box = None
    if any(corners):
        box = tuple(
            number(v, f"{where}: {name}", path, text=True)
            for v, name in zip(corners, ("x1", "y1", "x2", "y2"), strict=True)
        )
    extra: dict[str, Any] = {}
    if "extra" in col and cell("extra"):
        try:
            loaded = json.loads(cell("extra"))
        except (ValueError, RecursionError):
            raise input_error(path, f"{where}: extra is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise input_error(path, f"{where}: extra must be a JSON object ({short(loaded)})")
        extra.update(loaded)
    for name in others:
        extra[name] = row[col[name]]
    image = cell("image")
    if not image:
        raise input_error(path, f"{where}: empty image")
    label = cell("label")
    return make_annotation(
        path,
        where,
        id=cell("id") or f"{image}_{lineno}",
        image=image,
        point=point,
        box=box,
        label=canonical_class(label) if label else MITOSIS,
        votes=votes_from_text(cell("votes"), where, path),
        agreement=optional_number(cell("agreement"), f"{where}: agreement", path, text=True),
        score=optional_number(cell("score"), f"{where}: score", path, text=True),
        extra=extra,
    )

"""AMi-Br CSV: mitotic figures of MIDOG21 and TUPAC16 with three experts' atypicality votes.

Header of ``AMI-BR.csv`` (the published train split adds ``final_label`` and ``dataset_uid``)::

    ,slide,dataset,uid,x,y,expert1_label,expert2_label,expert1_atypical,expert2_atypical,
    expert3_atypical,majority_atypical

Each row is one mitotic figure at point (x, y) of image ``slide``; its label is ``mitosis`` and
its votes are the experts' atypicality calls: ``Vote("expert1", 1.0)`` for True (atypical),
0.0 for False. The set's :attr:`~AnnotationSet.vote_target` is therefore ``"atypical"``: a
vote of 1 says "atypical", not "mitosis". Object id ``<dataset>_<uid>`` (the patch file name
without ``.png``); ``extra`` keeps ``dataset``, ``uid``, ``expert1_label``, ``expert2_label``,
``majority_atypical``, ``patch`` (``<dataset>_<uid>.png``) and any further column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.io.formats._common import (
    csv_data_row,
    csv_header_columns,
    make_annotation,
    number,
    read_text,
    short,
)
from mitokit.types import MITOSIS

FORMAT = "amibr"
RATERS = ("expert1", "expert2", "expert3")
VOTE_TARGET = "atypical"

_REQUIRED = ("slide", "dataset", "uid", "x", "y") + tuple(f"{r}_atypical" for r in RATERS)
_INDEX_NAMES = ("", "unnamed: 0", "index")
_TRUE = {"true", "1", "yes", "t", "1.0"}
_FALSE = {"false", "0", "no", "f", "0.0"}


def is_amibr_header(fields: list[str]) -> bool:
    """Whether a parsed first row is an AMi-Br header."""
    names = {f.strip().lower() for f in fields}
    return "expert1_atypical" in names and "slide" in names


def parse_bool(text: str, what: str, path: Path) -> bool:
    """``True``/``False`` (also 1/0, yes/no) as written by pandas and by hand."""
    key = text.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise input_error(path, f"{what} is not True or False ({short(text)})")


def read_amibr(path: Path) -> AnnotationSet:
    """Read ``AMI-BR.csv`` or its train-split CSV.

    Raises:
        MitokitError: A missing column, a row of the wrong length, a non-numeric coordinate, a
            vote that is not True/False; the message names the line.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header: list[str] | None = None
    annotations: list[Annotation] = []
    images: dict[str, ImageInfo] = {}
    try:
        for row in reader:
            lineno = reader.line_num
            if header is None:
                if not any(c.strip() for c in row):
                    continue
                header = [h.strip() for h in row]
                lower = [h.lower() for h in header]
                col = csv_header_columns(
                    lower, _REQUIRED, lineno, path, lacks="AMi-Br header lacks"
                )
                continue
            if not csv_data_row(row, header, lineno, path):
                continue
            ann = _row(row, header, col, lineno, path)
            images.setdefault(ann.image, ImageInfo(ann.image, ann.image))
            annotations.append(ann)
    except csv.Error as err:
        raise input_error(path, f"malformed CSV ({err})") from None
    if header is None:
        raise input_error(path, "empty file: no AMi-Br header")
    return AnnotationSet(annotations, images, list(RATERS), str(path), FORMAT, VOTE_TARGET)


def _row(
    row: list[str], header: list[str], col: dict[str, int], lineno: int, path: Path
) -> Annotation:
    where = f"line {lineno}"

    def cell(name: str) -> str:
        return row[col[name]].strip()

    slide, dataset, uid_text = cell("slide"), cell("dataset"), cell("uid")
    if not slide:
        raise input_error(path, f"{where}: empty slide")
    uid: Any = int(uid_text) if uid_text.isascii() and uid_text.isdigit() else uid_text
    x = number(cell("x"), f"{where}: x", path, text=True)
    y = number(cell("y"), f"{where}: y", path, text=True)
    votes = tuple(
        Vote(r, 1.0 if parse_bool(cell(f"{r}_atypical"), f"{where}: {r}_atypical", path) else 0.0)
        for r in RATERS
    )
    extra: dict[str, Any] = {"dataset": dataset, "uid": uid}
    for i, name in enumerate(header):
        key = name.lower()
        if key in _INDEX_NAMES or key in _REQUIRED or key in ("slide", "x", "y"):
            continue
        value: Any = row[i].strip()
        if key == "majority_atypical":
            value = parse_bool(value, f"{where}: majority_atypical", path)
        extra[name] = value
    extra["patch"] = f"{dataset}_{uid_text}.png"
    return make_annotation(
        path,
        where,
        id=f"{dataset}_{uid_text}",
        image=slide,
        point=(x, y),
        label=MITOSIS,
        votes=votes,
        extra=extra,
    )

"""MITOS-ATYPIA-14 label CSVs: ``<frame>_mitosis.csv`` and ``<frame>_not_mitosis.csv``.

Each line is ``x,y,confidence``: x = column, y = row in pixels, confidence = the fraction of
pathologists who called the object a mitosis (kept as :attr:`Annotation.agreement`). The files of
the contest may be empty, lack a final newline or carry trailing spaces; all of that is accepted.
A folder is read whole: every frame named by either file is an image, annotated or not, and a
``<frame>.png`` beside the labels is recorded as the image's file (with its size, from the PNG
header, so that points outside the frame are caught).
"""

from __future__ import annotations

from pathlib import Path

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo
from mitokit.io.formats._common import (
    make_annotation,
    number,
    png_size,
    read_text,
    short,
)
from mitokit.types import MITOSIS, NON_MITOSIS

FORMAT = "mitos_atypia14"

_HEADER_NAMES = {"x", "y", "confidence", "score"}
_SUFFIXES = (("_not_mitosis.csv", NON_MITOSIS, "not_mitosis"), ("_mitosis.csv", MITOSIS, "mitosis"))


def split_name(name: str) -> tuple[str, str, str] | None:
    """``(frame, label, kind)`` for a MITOS-ATYPIA-14 label file name, or None for another name.

    ``kind`` is ``"mitosis"`` or ``"not_mitosis"`` as in the file name.
    """
    lower = name.lower()
    for suffix, label, kind in _SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], label, kind
    return None


def label_files(folder: Path) -> list[Path]:
    """The ``*_mitosis.csv`` and ``*_not_mitosis.csv`` files in ``folder``, sorted by name."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise input_error(folder, f"cannot list the folder ({err.strerror or err})") from None
    return [p for p in entries if split_name(p.name) is not None and p.is_file()]


def read_mitos_atypia14(path: Path) -> AnnotationSet:
    """Read one MITOS-ATYPIA-14 label file, or every label file in a folder.

    Args:
        path: A ``<frame>_mitosis.csv`` / ``<frame>_not_mitosis.csv`` file, or a folder of them.

    Returns:
        Points labelled ``mitosis`` or ``non_mitosis`` with the confidence as agreement; image
        id = frame name; ids ``<frame>_mitosis_<line>`` / ``<frame>_not_mitosis_<line>``.

    Raises:
        MitokitError: A file name without the suffixes, a folder without label files, or a
            line that is not ``x,y[,confidence]`` with finite numbers.
    """
    path = Path(path)
    if path.is_dir():
        files = label_files(path)
        if not files:
            raise input_error(path, "no *_mitosis.csv or *_not_mitosis.csv files in the folder")
    else:
        if split_name(path.name) is None:
            raise input_error(
                path, "a MITOS-ATYPIA-14 file name must end in _mitosis.csv or _not_mitosis.csv"
            )
        files = [path]
    annotations: list[Annotation] = []
    frames: list[str] = []
    for file in files:
        frame, label, kind = split_name(file.name)  # type: ignore[misc]
        if frame not in frames:
            frames.append(frame)
        annotations.extend(_read_file(file, frame, label, kind))
    images = {}
    for frame in sorted(frames):
        png = files[0].parent / f"{frame}.png"
        size = png_size(png) if png.is_file() else None
        images[frame] = ImageInfo(
            id=frame,
            file_name=png.name if png.is_file() else None,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
    return AnnotationSet(annotations, images, [], str(path), FORMAT)


def _read_file(file: Path, frame: str, label: str, kind: str) -> list[Annotation]:
    out = []
    lines = read_text(file).splitlines()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if lineno == 1 and {f.lower() for f in fields} <= _HEADER_NAMES:
            continue  # a header line such as "x,y,confidence"
        if len(fields) not in (2, 3):
            raise input_error(
                file,
                f"line {lineno}: expected x,y,confidence, got {len(fields)} fields ({short(line)})",
            )
        x = number(fields[0], f"line {lineno}: x", file, text=True)
        y = number(fields[1], f"line {lineno}: y", file, text=True)
        conf = None
        if len(fields) == 3:
            conf = number(fields[2], f"line {lineno}: confidence", file, text=True)
            if not 0.0 <= conf <= 1.0:
                raise input_error(file, f"line {lineno}: confidence {conf:g} is outside [0, 1]")
        out.append(
            make_annotation(
                file,
                f"line {lineno}",
                id=f"{frame}_{kind}_{lineno}",
                image=frame,
                point=(x, y),
                label=label,
                agreement=conf,
            )
        )
    return out

"""Patch data sets laid out as class sub-folders (torchvision's ImageFolder convention).

::

    root/Atypical/001.png
    root/Atypical/002.png
    root/Normal/003.png

Reading ``root`` gives one object per image: its image id and object id are the path relative to
``root`` (``"Atypical/001.png"``, ``/`` separated, so the patch is found as ``root / id``), its
class the folder's name through :func:`canonical_class`, its point the patch centre and its box
the whole patch. Images in deeper folders belong to their top-level class folder (as in
torchvision); folders and files whose names start with ``.`` are ignored, and so are files that
are not images (PNG, JPEG, TIFF, BMP).

The positive class (the set's :attr:`~AnnotationSet.vote_target`, which a patch classifier
learns to score) is chosen by one rule:

1. ``positive``, when given, names it (a folder name, case ignored, or its canonical class);
2. otherwise the one folder whose canonical class is ``mitosis`` (``Mitosis/``,
   ``mitotic figure/`` ...);
3. otherwise it is an error listing the folders (e.g. ``Atypical/`` and ``Normal/``: which one
   is positive is the user's call: ``positive="Atypical"``, ``data.positive`` in a training
   config, ``--positive`` on the command line).

Every other folder is negative. A data set needs two class folders at least; images placed
directly in ``root`` belong to no class and are an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, canonical_class
from mitokit.io.formats._common import make_annotation, png_size
from mitokit.types import MITOSIS

FORMAT = "imagefolder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES


def class_images(root: str | os.PathLike) -> dict[str, list[Path]]:
    """The image files of each class sub-folder of ``root`` (sorted; folders without images
    left out)."""
    root = Path(root)
    out: dict[str, list[Path]] = {}
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    except OSError as err:
        raise input_error(root, f"cannot list the folder ({err.strerror or err})") from None
    for folder in folders:
        files = sorted(
            p
            for p in folder.rglob("*")
            if _is_image(p) and all(_visible(Path(part)) for part in p.relative_to(folder).parts)
        )
        if files:
            out[folder.name] = files
    return out


def is_imagefolder(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a folder with two or more sub-folders holding images."""
    root = Path(root)
    return root.is_dir() and len(class_images(root)) >= 2


def positive_folder(folders: list[str], positive: str | None, root: Path) -> str:
    """The positive class folder by the rule of this module's docstring."""
    listed = ", ".join(f"{f}/" for f in folders)
    if positive is not None:
        want = str(positive).strip()
        hits = [
            f
            for f in folders
            if f.lower() == want.lower() or canonical_class(f) == canonical_class(want)
        ]
        if len(hits) != 1:
            raise input_error(root, f"positive class {want!r} names no single folder of {listed}")
        return hits[0]
    hits = [f for f in folders if canonical_class(f) == MITOSIS]
    if len(hits) == 1:
        return hits[0]
    raise input_error(
        root,
        f"cannot tell which class folder is positive among {listed}: name it "
        "(positive=, data.positive in a config, --positive on the command line)",
    )


def read_imagefolder(path: Path, *, positive: str | None = None) -> AnnotationSet:
    """Read a folder of class sub-folders as patch labels (one object per image).

    Args:
        path: The root folder.
        positive: The positive class folder (see the module docstring for the rule without it).

    Raises:
        MitokitError: Not a folder, fewer than two class folders, images directly in the root,
            no positive class, an image whose size cannot be read.
    """
    root = Path(path)
    if not root.is_dir():
        raise input_error(root, "a class-folder data set must be a folder")
    loose = sorted(p.name for p in root.iterdir() if _is_image(p))
    if loose:
        raise input_error(
            root, f"images directly in the folder belong to no class ({', '.join(loose[:3])})"
        )
    classes = class_images(root)
    if len(classes) < 2:
        raise input_error(
            root,
            f"a class-folder data set needs two or more sub-folders holding images, found "
            f"{len(classes)}",
        )
    pos = positive_folder(list(classes), positive, root)
    annotations: list[Annotation] = []
    images: dict[str, ImageInfo] = {}
    for folder, files in classes.items():
        label = canonical_class(folder)
        for f in files:
            rel = f.relative_to(root).as_posix()
            width, height = _size(f)
            images[rel] = ImageInfo(rel, file_name=rel, width=width, height=height)
            annotations.append(
                make_annotation(
                    root,
                    rel,
                    id=rel,
                    image=rel,
                    point=(width / 2.0, height / 2.0),
                    box=(0.0, 0.0, float(width), float(height)),
                    label=label,
                    extra={"class_folder": folder},
                )
            )
    return AnnotationSet(annotations, images, [], str(root), FORMAT, canonical_class(pos))


def _size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header."""
    size = png_size(path)
    if size is not None:
        return size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise input_error(path, f"cannot read the image ({err})") from None

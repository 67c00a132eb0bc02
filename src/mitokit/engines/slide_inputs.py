"""Which slides a run reads, which process reads each, the folder each is written to, and what
is read of a slide before its tiles.

:func:`find_slides` expands files and folders into slide files, :func:`shard` gives each process
of a ``torchrun`` job its share, :func:`slide_folder_names` names the output folders (refusing
two slides that would share one); :func:`_scan_slide` reads a slide's size, mpp, thumbnail and
tissue mask and chooses the level its tiles are read at; :func:`plan_opener` chooses how the
reader threads open the slide.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.data.tissue import TissueMask, mask_from_rgb, require_tissue
from mitokit.engines.slide_stream import ReadGeometry, TilePlan, read_geometry
from mitokit.errors import input_error

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide",
    ".qptiff", ".btf", ".png", ".jpg", ".jpeg", ".bmp",
)  # fmt: skip
"""Files of these types are taken from a folder given as input (any file named directly is)."""


def find_slides(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The slide files named by ``inputs``, in order, each once.

    A folder contributes its files (not sub-folders) whose suffix is in
    :data:`SLIDE_SUFFIXES`, sorted by name; hidden files are left out. A file named directly is
    taken whatever its suffix.

    Raises:
        MitokitError: A missing path, or a folder holding no slide.
    """
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items:
        raise input_error(None, "no slide given")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SLIDE_SUFFIXES
            )
            if not found:
                raise input_error(p, "folder holds no slide or image file")
        elif p.exists():
            found = [p]
        else:
            raise input_error(p, "no such file or folder")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def shard(items: Sequence[Any], *, rank: int, world_size: int) -> list[Any]:
    """The items of one process: those at positions ``i`` with ``i % world_size == rank``.

    Raises:
        MitokitError: ``world_size < 1`` or a rank outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise input_error(None, f"rank {rank} is not in [0, world size {world_size})")
    return [item for i, item in enumerate(items) if i % world_size == rank]


def slide_folder_names(slides: Sequence[Path]) -> dict[Path, str]:
    """The output folder name of each slide: its stem, made safe by :func:`safe_name`.

    ``..tiff`` gets ``_``, ``a\nb.svs`` gets ``a_b``; a stem that is already a plain file name
    keeps it. Two slides whose names would clash are refused, never numbered apart, since a
    resumed run must find each slide's folder under the same name: the same stem, stems that
    become the same safe name (``a b`` and ``a_b`` do not, ``a/b`` and ``a_b`` do), stems that
    differ only in case (one folder on macOS and Windows), and a stem named like the run summary.

    Raises:
        MitokitError: Two slides would share an output folder.
    """
    import re

    from mitokit.io.names import name_key, safe_name

    names: dict[Path, str] = {}
    first: dict[str, tuple[Path, str]] = {}
    for p in slides:
        name = safe_name(p.stem)
        key = name_key(name)
        if re.fullmatch(r"run_summary(\.rank\d+)?\.json", key):
            raise input_error(p, f"its output folder {name!r} would be named like the run summary")
        if key in first:
            other, other_stem = first[key]
            if other_stem == p.stem:
                why = f"has the same name stem as {other}"
            else:
                why = (
                    f"would get the output folder {name!r} of {other} (names are compared "
                    "ignoring case, unsafe characters replaced)"
                )
            raise input_error(p, f"{why}; their outputs would share a folder")
        first[key] = (p, p.stem)
        names[p] = name
    return names


@dataclass(frozen=True)
class _Scan:
    """What :meth:`SlidePredictor.predict_slide` reads from a slide before its tiles."""

    size: tuple[int, int]
    mpp: float
    mpp_source: str
    thumbnail: np.ndarray
    downsample: tuple[float, float]
    mask: TissueMask
    geometry: ReadGeometry
    backend: str


def _scan_slide(
    path: Path, mpp: float | None, *, tile_size: int, model_mpp: float | None, thumbnail: int
) -> _Scan:
    """Open the slide: its size and mpp, thumbnail, tissue mask and read geometry.

    Args:
        path: The slide or image file.
        mpp: Microns per pixel at level 0, overriding the file's.
        tile_size: The model's tile size.
        model_mpp: The model's microns per pixel (None: read level 0).
        thumbnail: Longest side of the thumbnail.

    Raises:
        MitokitError: An unreadable slide, no mpp, or no tissue.
    """
    from mitokit.io.slides import open_slide

    with open_slide(path, mpp=mpp) as slide:
        slide_mpp = slide.mpp_or_none
        if slide_mpp is None:
            raise input_error(path, "no microns-per-pixel in the file; pass --mpp (mpp=...)")
        size = slide.dimensions
        thumb = slide.get_thumbnail((thumbnail, thumbnail))
        ds = (size[0] / thumb.shape[1], size[1] / thumb.shape[0])
        mask = TissueMask(mask_from_rgb(thumb, downsample=math.sqrt(ds[0] * ds[1])), ds)
        require_tissue(mask, path)
        geometry = read_geometry(
            slide, tile_size=tile_size, model_mpp=model_mpp, slide_mpp=slide_mpp
        )
        mpp_source = slide.mpp_source or "file"
        backend = slide.backend
    return _Scan(size, slide_mpp, mpp_source, thumb, ds, mask, geometry, backend)


def fit_tile_size(predictor: Any, forced: int | None) -> int:
    """The tile size to read: the predictor's, or ``forced`` where the model takes it (its
    ``tile_multiple``, for fully convolutional models).

    Raises:
        MitokitError: A forced size that does not fit the model.
    """
    native = int(predictor.tile_size)
    if forced is None or int(forced) == native:
        return native
    forced = int(forced)
    multiple = getattr(predictor, "tile_multiple", None)
    if multiple and forced >= int(multiple) and forced % int(multiple) == 0:
        return forced
    also = f" (or a multiple of {int(multiple)})" if multiple else ""
    raise input_error(
        None,
        f"tile size {forced} does not fit the model, which takes {native}-pixel tiles{also}",
    )


PROBE_TILES = 4
"""Tiles of a plan read through both readers before the quicker one is trusted."""


def plan_opener(
    path: Path, mpp: float | None, plan: TilePlan, reader: str, backend: str | None = None
) -> tuple[Callable[[], Any], str]:
    """How the reader threads open ``path`` for ``plan``'s tiles, and the backend's name.

    ``backend`` is the one the slide was scanned with (None: found out). The probes are
    :data:`PROBE_TILES` tiles spread over the plan (tiles on tissue), compared by
    :func:`mitokit.io.slides.reader.region_reader`.
    """
    from mitokit.io.slides.reader import region_reader

    g = plan.geometry
    probes = []
    if len(plan):
        picks = np.unique(np.linspace(0, len(plan) - 1, PROBE_TILES).round().astype(int))
        probes = [tuple(o) for o in plan.origins[picks]]
    size = (g.read_size, g.read_size)
    return region_reader(
        path, mpp=mpp, level=g.level, size=size, probes=probes, reader=reader, backend=backend
    )


__all__ = [
    "PROBE_TILES",
    "SLIDE_SUFFIXES",
    "find_slides",
    "fit_tile_size",
    "plan_opener",
    "shard",
    "slide_folder_names",
]

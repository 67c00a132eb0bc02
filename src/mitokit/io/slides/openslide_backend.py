"""The ``openslide`` backend: every format OpenSlide recognises, read through openslide-python."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from mitokit.errors import input_error
from mitokit.io.slides.base import Slide, _plausible_mpp, _to_float
from mitokit.io.slides.color import to_rgb8
from mitokit.io.slides.tiff_backend import _tiff_file_mpp


class _OpenSlideSlide(Slide):
    """Formats OpenSlide reads, through openslide-python."""

    backend = "openslide"

    def __init__(self, path: Path, *, mpp: float | None) -> None:
        import openslide

        self._error = openslide.OpenSlideError
        try:
            self._osr = openslide.OpenSlide(os.fspath(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise input_error(path, f"OpenSlide cannot open it: {exc}") from exc
        props = dict(self._osr.properties)
        file_mpp = _plausible_mpp(_to_float(props.get("openslide.mpp-x")))
        if file_mpp is None and props.get("openslide.vendor") == "generic-tiff":
            with contextlib.suppress(Exception):  # the resolution tags are optional extras
                file_mpp = _tiff_file_mpp(path)
        super().__init__(
            path,
            level_dimensions=self._osr.level_dimensions,
            level_downsamples=self._osr.level_downsamples,
            mpp=mpp,
            file_mpp=file_mpp,
            vendor=props.get("openslide.vendor", "unknown"),
            properties=props,
            objective_power=_to_float(props.get("openslide.objective-power")),
        )

    def _read_region(self, x: int, y: int, level: int, w: int, h: int) -> np.ndarray:
        try:
            rgba = np.asarray(self._osr.read_region((x, y), level, (w, h)))
        except self._error as exc:
            raise input_error(self._path, f"OpenSlide cannot read level {level}: {exc}") from exc
        return to_rgb8(rgba)

    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        ds = self._level_downsamples[level]
        return self._read_region(round(lx * ds), round(ly * ds), level, w, h)

    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._read_level(level, x, y, w, h)

    def _close(self) -> None:
        self._osr.close()


def _openslide_format(path: Path) -> str | None:
    """OpenSlide's name for the file's format, or None where OpenSlide does not read it."""
    import openslide

    try:
        return openslide.OpenSlide.detect_format(os.fspath(path))
    except (openslide.OpenSlideError, OSError):
        return None

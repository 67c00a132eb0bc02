"""The ``pillow`` backend: PNG, JPEG, BMP and the other single-image formats Pillow reads.

The image is decoded once at open time, so a truncated file fails there and not half-way through
an analysis. mpp comes from the image's DPI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error
from mitokit.io.slides.base import _DECODE_ERRORS, Slide, _plausible_mpp, _to_float
from mitokit.io.slides.color import to_rgb8


class _PillowSlide(Slide):
    """PNG, JPEG, BMP and other single images through Pillow, decoded once at open time."""

    backend = "pillow"

    def __init__(self, path: Path, *, mpp: float | None) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with _no_pixel_limit(), Image.open(path) as image:
                image.load()
                fmt = (image.format or "unknown").lower()
                info = dict(image.info)
                self._rgb = _pil_to_rgb8(image)
        except UnidentifiedImageError as exc:
            raise input_error(path, "unknown or unsupported slide/image format") from exc
        except MitokitError:
            raise
        except (*_DECODE_ERRORS, SyntaxError, Image.DecompressionBombError) as exc:
            raise input_error(
                path, f"cannot decode the image (truncated or corrupt?): {exc}"
            ) from exc
        dpi = info.get("dpi")
        file_mpp = None
        if isinstance(dpi, tuple) and dpi and (xdpi := _to_float(dpi[0])) and xdpi > 0:
            file_mpp = _plausible_mpp(25400.0 / xdpi)
        properties = {
            f"pil.{k}": str(v) for k, v in info.items() if isinstance(v, str | int | float | tuple)
        }
        height, width = self._rgb.shape[:2]
        super().__init__(
            path,
            level_dimensions=[(width, height)],
            mpp=mpp,
            file_mpp=file_mpp,
            vendor=fmt,
            properties=properties,
        )

    def _read_inside(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._rgb[y : y + h, x : x + w]

    def _close(self) -> None:
        self._rgb = np.empty((0, 0, 3), np.uint8)


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit for the block: H&E frames are legitimately huge."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _pil_to_rgb8(image: Any) -> np.ndarray:
    """A loaded Pillow image as ``(h, w, 3)`` uint8 RGB, transparency composited onto white."""
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA", "I;16", "I;16L", "I;16B"):
        pass
    elif mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("RGBa", "RGBX"):
        image = image.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    else:
        raise ValueError(f"unsupported pixel mode {mode}")
    array = np.asarray(image)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return to_rgb8(array)

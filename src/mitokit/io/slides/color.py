"""Conversion of image samples (grey, RGB, with or without alpha, 8 or 16 bits) to uint8 RGB."""

from __future__ import annotations

import numpy as np


def to_rgb8(array: np.ndarray, *, premultiplied: bool = False) -> np.ndarray:
    """Convert image samples to ``(h, w, 3)`` uint8 RGB.

    Accepts ``(h, w)`` or ``(h, w, c)`` with ``c`` = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4
    (RGB + alpha); extra channels beyond four are dropped. Alpha is composited onto white.
    uint16 samples are scaled linearly to 8 bits (``round(v / 257)``); bool samples map to
    0/255.

    Args:
        array: The samples.
        premultiplied: Whether colours are already multiplied by alpha (TIFF associated alpha).

    Raises:
        ValueError: Another sample type (float, 32-bit, signed) or an unexpected shape.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] < 1:
        raise ValueError(f"expected an (h, w) or (h, w, c) image, got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"unsupported sample type {a.dtype} (8- or 16-bit unsigned expected)")
    channels = a.shape[2]
    if channels in (1, 2):
        colour, alpha = np.repeat(a[..., :1], 3, axis=2), a[..., 1] if channels == 2 else None
    else:
        colour, alpha = a[..., :3], a[..., 3] if channels >= 4 else None
    if alpha is None or bool((alpha == 255).all()):
        return np.ascontiguousarray(colour)
    c = colour.astype(np.uint16)
    alpha16 = alpha[..., None].astype(np.uint16)
    if premultiplied:
        out = np.minimum(c + (255 - alpha16), 255)
    else:
        out = (c * alpha16 + 255 * (255 - alpha16) + 127) // 255
    return out.astype(np.uint8)

"""Stain and acquisition of a synthetic H&E image: Beer-Lambert optical densities to RGB.

- :class:`StainParams`: haematoxylin (H) and eosin (E) optical-density unit vectors and
  intensity scales, the light through glass, blur and sensor noise; :meth:`StainParams.sample`
  varies them per image around H&E vectors measured (Macenko) on real breast-cancer H&E.
- :func:`optical_density`: per-pixel H and E densities of an RGB image by colour deconvolution
  with the image's own stain vectors (the inverse of the rendering, for tests and analysis).
- ``_to_rgb``: ``RGB = light * exp(-(h * OD_H + e * OD_E))`` after a slight Gaussian blur, plus
  sensor noise (the last step of :func:`~mitokit.data.synthetic.render.render_region`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from mitokit.data.synthetic import _noise
from mitokit.errors import input_error

__all__ = ["E_REFERENCE", "H_REFERENCE", "StainParams", "optical_density"]

F32 = np.float32


def _unit(v: tuple[float, float, float]) -> tuple[float, float, float]:
    a = np.asarray(v, np.float64)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


H_REFERENCE = _unit((0.56, 0.76, 0.31))
"""Haematoxylin OD unit vector (RGB), Macenko estimate on AMi-Br breast-cancer patches."""

E_REFERENCE = _unit((0.21, 0.88, 0.42))
"""Eosin OD unit vector (RGB), Macenko estimate on the same patches."""

_PAD = 4  # margin rendered around a region so the blur sees its neighbours (blur <= 1.2)


@dataclass(frozen=True)
class StainParams:
    """Stain and acquisition of one image.

    Attributes:
        h_vector: Haematoxylin optical-density unit vector (R, G, B).
        e_vector: Eosin optical-density unit vector.
        h_scale: Multiplier of every haematoxylin density (staining strength).
        e_scale: Multiplier of every eosin density.
        background: Light through empty glass per channel (0..255).
        blur: Gaussian blur sigma in pixels (focus), at most 1.2.
        noise: Sensor noise standard deviation in grey levels.
    """

    h_vector: tuple[float, float, float] = H_REFERENCE
    e_vector: tuple[float, float, float] = E_REFERENCE
    h_scale: float = 1.0
    e_scale: float = 1.0
    background: tuple[float, float, float] = (242.0, 240.0, 244.0)
    blur: float = 0.7
    noise: float = 1.5

    def __post_init__(self) -> None:
        for name in ("h_vector", "e_vector", "background"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(x) and x >= 0 for x in v):
                raise input_error(None, f"StainParams: {name} must be 3 non-negative numbers")
        if not (0 <= self.blur <= 1.2):
            raise input_error(None, f"StainParams: blur must be in [0, 1.2], got {self.blur!r}")
        if not (self.noise >= 0 and self.h_scale >= 0 and self.e_scale >= 0):
            raise input_error(None, "StainParams: noise and scales must be >= 0")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> StainParams:
        """Per-image variation around the reference H&E (as between labs and scanners)."""
        h = np.asarray(H_REFERENCE) + rng.normal(0, 0.04, 3)
        e = np.asarray(E_REFERENCE) + rng.normal(0, 0.06, 3)
        h, e = np.clip(h, 0.05, None), np.clip(e, 0.02, None)
        light = 242.0 + rng.normal(0, 3.0) + rng.normal(0, 1.5, 3)
        return cls(
            h_vector=_unit(tuple(h)),
            e_vector=_unit(tuple(e)),
            h_scale=float(rng.uniform(0.85, 1.15)),
            e_scale=float(rng.uniform(0.75, 1.25)),
            background=tuple(float(v) for v in np.clip(light, 225, 252)),
            blur=float(rng.uniform(0.55, 1.0)),
            noise=float(rng.uniform(1.0, 2.5)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StainParams:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def optical_density(image: np.ndarray, stain: StainParams) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin densities of an RGB image, by least-squares colour deconvolution
    with the image's own stain vectors (scaled as rendered) and light.

    Args:
        image: ``(..., 3)`` uint8 RGB.
        stain: The stain the image was rendered with.

    Returns:
        ``(H, E)`` float32 arrays of the image's shape without the channel axis.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.shape[-1] != 3:
        raise input_error(None, f"expected a (..., 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    light = np.asarray(stain.background, np.float32)
    od = -np.log(np.maximum(arr.astype(np.float32), 1.0) / light)
    basis = np.stack(
        [
            np.asarray(stain.h_vector) * stain.h_scale,
            np.asarray(stain.e_vector) * stain.e_scale,
        ]
    ).astype(np.float64)
    inv = np.linalg.pinv(basis)  # (3, 2)
    conc = od.reshape(-1, 3) @ inv.astype(np.float32)
    conc = conc.reshape(*arr.shape[:-1], 2)
    return conc[..., 0], conc[..., 1]


def _to_rgb(
    od: tuple[np.ndarray, np.ndarray] | None,
    stain: StainParams,
    seed: int,
    x0: int,
    y0: int,
    w: int,
    h: int,
) -> np.ndarray:
    """Blur, Beer-Lambert and noise; ``od`` covers the block grown by ``_PAD`` on each side."""
    light = np.asarray(stain.background, F32)
    noise = _noise.sensor_noise(seed, x0, y0, w, h) if stain.noise > 0 else None
    planes = []
    if od is not None:
        H, E = od
        if stain.blur > 0:
            H = ndimage.gaussian_filter(H, stain.blur, truncate=3.0, mode="nearest")
            E = ndimage.gaussian_filter(E, stain.blur, truncate=3.0, mode="nearest")
        H = np.ascontiguousarray(H[_PAD : _PAD + h, _PAD : _PAD + w])
        E = np.ascontiguousarray(E[_PAD : _PAD + h, _PAD : _PAD + w])
        hv = np.asarray(stain.h_vector, F32) * F32(stain.h_scale)
        ev = np.asarray(stain.e_vector, F32) * F32(stain.e_scale)
    for c in range(3):
        if od is None:
            ch = np.full((h, w), light[c], F32)
        else:
            ch = H * -hv[c]
            ch -= E * ev[c]
            np.exp(ch, out=ch)
            ch *= light[c]
        if noise is not None:
            ch += noise[c] * F32(stain.noise)
        ch += F32(0.5)
        np.clip(ch, 0, 255, out=ch)
        planes.append(ch.astype(np.uint8))
    return np.stack(planes, axis=-1)

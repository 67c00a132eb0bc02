"""Deterministic, seamless noise from a hashed global lattice (private helpers).

Every value here is a pure function of ``(seed, global coordinates)``: a field evaluated over two
adjacent regions agrees on their shared pixels, whatever the region sizes or the order in which
they are asked for. That is what lets a slide be rendered tile by tile without seams, and a cell
look the same in every tile it overlaps. No random generator state is involved.

Value noise is separable: lattice values are hashed on the small lattice that covers a region and
interpolated (smoothstep weights) first along rows, then along columns, with plain element-wise
arithmetic (no BLAS), so results do not depend on matrix-multiply blocking.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S40 = np.uint64(40)
_MASK64 = (1 << 64) - 1


def mix_seed(*parts: int) -> int:
    """Combine integers into one 64-bit seed (stable across runs and platforms)."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h ^= (int(p) & _MASK64) + 0x9E3779B97F4A7C15 + ((h << 6) & _MASK64) + (h >> 2)
        h &= _MASK64
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & _MASK64
        h ^= h >> 33
    return h


def hash_u64(seed: int | np.ndarray, ix: np.ndarray, iy: np.ndarray | int = 0) -> np.ndarray:
    """A well-mixed uint64 hash of ``(seed, ix, iy)``, element-wise (broadcasting)."""
    if isinstance(seed, np.ndarray):
        s = seed.astype(np.uint64) * _M3
    else:
        s = np.uint64((int(seed) * 0x165667B19E3779F9) & _MASK64)
    x = (np.asarray(ix).astype(np.int64).astype(np.uint64) * _M1) ^ (
        np.asarray(iy).astype(np.int64).astype(np.uint64) * _M2
    )
    x = x ^ s
    x ^= x >> _S33
    x *= _F1
    x ^= x >> _S33
    x *= _F2
    x ^= x >> _S33
    return x


def hash_uniform(seed: int | np.ndarray, ix: np.ndarray, iy: np.ndarray | int = 0) -> np.ndarray:
    """Uniform float32 in [0, 1) hashed from ``(seed, ix, iy)``."""
    return (hash_u64(seed, ix, iy) >> _S40).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _axis_weights(coords: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice index (relative to the first), smoothstep weight, first index and lattice length."""
    u = np.asarray(coords, dtype=np.float64) / spacing
    i0 = np.floor(u)
    f = (u - i0).astype(np.float32)
    s = f * f * (np.float32(3.0) - np.float32(2.0) * f)
    i0 = i0.astype(np.int64)
    lo = int(i0.min())
    n = int(i0.max()) - lo + 2
    return i0 - lo, s, lo, n


def value_noise(seed: int, xs: np.ndarray, ys: np.ndarray, spacing: float) -> np.ndarray:
    """Smooth value noise in [0, 1] on the grid ``ys x xs`` (global coordinates, 1-D vectors).

    Args:
        seed: Which field.
        xs: Column coordinates (``w``,), any floats.
        ys: Row coordinates (``h``,).
        spacing: Lattice spacing in the units of the coordinates (the feature size).

    Returns:
        ``(h, w)`` float32 array.
    """
    ix, sx, x_lo, nx = _axis_weights(xs, spacing)
    iy, sy, y_lo, ny = _axis_weights(ys, spacing)
    lattice = hash_uniform(
        seed, np.arange(x_lo, x_lo + nx)[None, :], np.arange(y_lo, y_lo + ny)[:, None]
    )
    # along x: (ny, w)
    rows = lattice[:, ix]
    rows += (lattice[:, ix + 1] - rows) * sx
    # along y: (h, w)
    out = rows[iy]
    out += (rows[iy + 1] - out) * sy[:, None]
    return out


def fbm(
    seed: int,
    xs: np.ndarray,
    ys: np.ndarray,
    spacing: float,
    octaves: int = 3,
    gain: float = 0.5,
    *,
    points: bool = False,
) -> np.ndarray:
    """Fractal sum of value noise octaves (spacing halves each octave), rescaled to mean ~0.5.

    The result has mean 0.5 and a standard deviation of about :func:`fbm_std` ``(octaves, gain)``.

    Args:
        seed: Which field.
        xs, ys: The grid's column and row coordinates (1-D, as :func:`value_noise`); with
            ``points`` the coordinates of scattered points (as :func:`value_noise_points`).
        spacing: Lattice spacing of the first octave.
        octaves: Number of octaves.
        gain: Amplitude ratio of one octave to the one before.
        points: Evaluate at scattered points instead of on a grid (the same field).

    Returns:
        float32, ``(h, w)`` on a grid, the points' shape otherwise.
    """
    noise = value_noise_points if points else value_noise
    total = noise(mix_seed(seed, 0), xs, ys, spacing)
    total -= np.float32(0.5)
    amp, norm = gain, 1.0
    for k in range(1, octaves):
        layer = noise(mix_seed(seed, k), xs, ys, spacing / (2**k))
        layer -= np.float32(0.5)
        total += layer * np.float32(amp)
        norm += amp
        amp *= gain
    if points:  # points divide by the norm, grids multiply by its inverse (fields as first drawn)
        return total / np.float32(norm) + np.float32(0.5)
    total *= np.float32(1.0 / norm)
    total += np.float32(0.5)
    return total


# Standard deviation of one smoothstep value-noise octave of uniform lattice values: measured
# once on a large grid (uniform lattice std 0.2887 shrinks by interpolation).
_OCTAVE_STD = 0.212


def fbm_std(octaves: int = 3, gain: float = 0.5) -> float:
    """Approximate standard deviation of :func:`fbm` (used to place thresholds by quantile)."""
    amps = [gain**k for k in range(octaves)]
    return _OCTAVE_STD * float(np.sqrt(np.sum(np.square(amps)))) / float(np.sum(amps))


def value_noise_points(seed: int, x: np.ndarray, y: np.ndarray, spacing: float) -> np.ndarray:
    """Value noise at scattered points (same field as :func:`value_noise` on a grid)."""
    u = np.asarray(x, dtype=np.float64) / spacing
    v = np.asarray(y, dtype=np.float64) / spacing
    i0, j0 = np.floor(u), np.floor(v)
    fu, fv = (u - i0).astype(np.float32), (v - j0).astype(np.float32)
    su = fu * fu * (3 - 2 * fu)
    sv = fv * fv * (3 - 2 * fv)
    i0, j0 = i0.astype(np.int64), j0.astype(np.int64)
    v00 = hash_uniform(seed, i0, j0)
    v10 = hash_uniform(seed, i0 + 1, j0)
    v01 = hash_uniform(seed, i0, j0 + 1)
    v11 = hash_uniform(seed, i0 + 1, j0 + 1)
    top = v00 + (v10 - v00) * su
    bottom = v01 + (v11 - v01) * su
    return top + (bottom - top) * sv


def noise_1d(seed: int, t: np.ndarray, spacing: float) -> np.ndarray:
    """Smooth 1-D value noise in [0, 1] at any array of coordinates ``t``."""
    t = np.asarray(t)
    if t.dtype == np.float64:  # large coordinates: split off the lattice index in float64
        u64 = t / spacing
        i0 = np.floor(u64)
        f = (u64 - i0).astype(np.float32)
    else:
        u = t.astype(np.float32) / np.float32(spacing)
        i0 = np.floor(u)
        f = u - i0
    s = f * f * (3 - 2 * f)
    i0 = i0.astype(np.int64)
    lo = int(i0.min())
    lattice = hash_uniform(seed, np.arange(lo, int(i0.max()) + 2))
    k = i0 - lo
    a = lattice[k]
    return a + (lattice[k + 1] - a) * s


_NOISE_TABLE: np.ndarray | None = None
_TABLE = 512


def sensor_noise(seed: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Unit-variance Gaussian pixel noise ``(3, h, w)`` for the block at global ``(x0, y0)``.

    Drawn from one fixed 512 x 512 table per channel (the same in every process), shifted by an
    offset hashed from ``seed``: deterministic, continuous across blocks, and cheap.
    """
    global _NOISE_TABLE
    if _NOISE_TABLE is None:
        _NOISE_TABLE = (
            np.random.default_rng(0x5E115).standard_normal((3, _TABLE, _TABLE)).astype(np.float32)
        )
    off = hash_u64(seed, np.array([1, 2]), 7) % np.uint64(_TABLE)
    rows = (np.arange(y0, y0 + h) + int(off[0])) % _TABLE
    cols = (np.arange(x0, x0 + w) + int(off[1])) % _TABLE
    return np.take(np.take(_NOISE_TABLE, rows, axis=1), cols, axis=2)


def smooth_white(seed: int, xs0: int, ys0: int, w: int, h: int, sigma: float) -> np.ndarray:
    """Isotropic smooth noise, zero mean and unit variance, on the pixel block at ``(xs0, ys0)``.

    White noise hashed per global pixel, Gaussian-filtered with ``sigma`` over a margin, so it
    is seamless across blocks and has no lattice artefacts (unlike value noise).
    """
    from scipy import ndimage

    pad = int(np.ceil(3.0 * sigma)) + 1
    cols = np.arange(xs0 - pad, xs0 + w + pad)
    rows = np.arange(ys0 - pad, ys0 + h + pad)
    white = hash_uniform(seed, cols[None, :], rows[:, None])
    white -= np.float32(0.5)
    out = ndimage.gaussian_filter(white, sigma, truncate=3.0, mode="nearest")
    out = out[pad : pad + h, pad : pad + w]
    out *= np.float32(2.0 * sigma * np.sqrt(np.pi) / 0.28868)
    return out

"""Geometry of one synthetic cell: its hashed attributes, its outline and its mitotic figure.

Every cell draws 24 uniforms from its own seed (``_cell_attrs``), fixed whatever its latent
mitosis score ``m``; ``_Cell`` derives its size, shape morph, chromatin separation and cell
body from them and from ``m``. ``_Window`` is the small patch of local coordinates (along and
across the cell's long axis) in which the cell is drawn. ``_nucleus`` gives the outline as a
signed distance and a soft mask; for mitotic cells it morphs from the interphase ellipse to
the phase's figure (``_figure``): prophase a round, ragged nucleus; metaphase a knobby bar;
anaphase two parallel bars; telophase two compact masses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    ANAPHASE,
    APOPTOTIC,
    HYPERCHROMATIC,
    METAPHASE,
    MITOTIC,
    NORMAL,
    PROPHASE,
    TELOPHASE,
    CellTable,
)

F32 = np.float32


def _smooth(lo: float, hi: float, x: float) -> float:
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3 - 2 * t)


# -- per-cell model -----------------------------------------------------------------------------

_N_ATTR = 24


def _cell_attrs(seeds: np.ndarray) -> np.ndarray:
    """``(n, 24)`` uniforms per cell, hashed from its seed (fixed whatever its m)."""
    s = np.asarray(seeds, np.uint64)[:, None]
    return _noise.hash_uniform(s, np.arange(_N_ATTR)[None, :], 0xCE11).astype(np.float64)


@dataclass
class _Cell:
    """Geometry of one cell derived from its row, its m and its hashed attributes."""

    x: float
    y: float
    kind: int
    phase: int
    m: float
    r: float
    e: float
    angle: float
    seed: int
    u: np.ndarray
    half: float = 0.0  # window half-size in pixels
    shape: float = 0.0  # morph from the interphase outline to the phase's figure
    sep: float = 0.0  # separation of the chromatin masses (anaphase, telophase)
    body: tuple[float, float] = (0.0, 0.0)  # cell body half-axes (mitoses, apoptotic bodies)

    @classmethod
    def of(cls, cells: CellTable, i: int, u: np.ndarray) -> _Cell:
        c = cls(
            x=float(cells.x[i]),
            y=float(cells.y[i]),
            kind=int(cells.kind[i]),
            phase=int(cells.phase[i]),
            m=float(np.clip(cells.m[i], 0, 1)),
            r=float(max(cells.radius[i], 1.0)),
            e=float(max(cells.elongation[i], 1.0)),
            angle=float(cells.angle[i]),
            seed=int(cells.seed[i]),
            u=u,
        )
        c._derive()
        return c

    def _derive(self) -> None:
        r, m, u = self.r, self.m, self.u
        chromatin = r * math.sqrt(self.e) * 1.2 + 2.0
        if self.kind == MITOTIC:
            self.shape = _smooth(0.08, 0.65, m)
            if self.phase == ANAPHASE:
                self.sep = r * 0.9 * _smooth(0.4, 1.0, m)
            elif self.phase == TELOPHASE:
                self.sep = r * 1.1 * _smooth(0.3, 1.0, m)
            along = r * (1.6 + 0.3 * u[10])
            across = along * (1.0 + 0.45 * self.sep / (1.5 * r))
            self.body = (along, across)
            chromatin = max(chromatin, 1.35 * r + self.sep + 2.0)
            self.half = max(chromatin, along, across) + 3.0
        elif self.kind == APOPTOTIC:
            rb = r * (1.5 + 0.4 * u[10])
            self.body = (rb, rb)
            self.half = rb * 1.5 + 10.0
        else:
            if not self.spindle:  # the cell's own cytoplasm around the nucleus
                rc = r * (1.75 + 0.35 * u[11])
                self.body = (rc, rc)
                chromatin = max(chromatin, rc + 2.5)
            self.half = chromatin + 2.0

    @property
    def spindle(self) -> bool:
        return self.kind == NORMAL and self.e > 2.0


def _ellipse_sdf(a: np.ndarray, b: np.ndarray, A: float, B: float) -> np.ndarray:
    """Approximate signed distance to an ellipse with half-axes A (along a) and B."""
    qa = a * F32(1.0 / A)
    qb = b * F32(1.0 / B)
    rho = np.sqrt(qa * qa + qb * qb)
    ga = qa * F32(1.0 / A)
    gb = qb * F32(1.0 / B)
    grad = np.sqrt(ga * ga + gb * gb)
    np.maximum(grad, F32(1e-6), out=grad)
    return (rho - F32(1.0)) * np.maximum(rho, F32(1e-6)) / grad


def _box_sdf(a: np.ndarray, b: np.ndarray, L: float, W: float, rr: float) -> np.ndarray:
    """Exact signed distance to a rounded box of half-length L, half-width W, corner radius rr."""
    qa = np.abs(a) - F32(L - rr)
    qb = np.abs(b) - F32(W - rr)
    out = np.hypot(np.maximum(qa, F32(0)), np.maximum(qb, F32(0)))
    out += np.minimum(np.maximum(qa, qb), F32(0))
    out -= F32(rr)
    return out


def _harmonics(a: np.ndarray, b: np.ndarray, u: np.ndarray, amp: float) -> np.ndarray:
    """Low-order irregularity of an outline: sum of cos(k phi + phase_k), k = 2..4."""
    if amp <= 0:
        return np.zeros_like(a)
    phi = np.arctan2(b, a)
    out = np.zeros_like(a)
    for j, k in enumerate((2, 3, 4)):
        out += F32(amp * u[j] / k**0.5) * np.cos(F32(k) * phi + F32(2 * np.pi * u[3 + j]))
    return out


class _Window:
    """Local coordinates of a cell's window clipped to a canvas."""

    def __init__(self, cell: _Cell, X0: int, Y0: int, W: int, H: int) -> None:
        self.ix0 = max(int(math.floor(cell.x - cell.half)), X0)
        self.ix1 = min(int(math.ceil(cell.x + cell.half)) + 1, X0 + W)
        self.iy0 = max(int(math.floor(cell.y - cell.half)), Y0)
        self.iy1 = min(int(math.ceil(cell.y + cell.half)) + 1, Y0 + H)
        self.empty = self.ix0 >= self.ix1 or self.iy0 >= self.iy1
        if self.empty:
            return
        self.xs = (np.arange(self.ix0, self.ix1) + 0.5 - cell.x).astype(F32)
        self.ys = (np.arange(self.iy0, self.iy1) + 0.5 - cell.y).astype(F32)
        ca, sa = F32(math.cos(cell.angle)), F32(math.sin(cell.angle))
        dx, dy = self.xs[None, :], self.ys[:, None]
        self.a = dx * ca + dy * sa  # along the long axis
        self.b = dy * ca - dx * sa  # across
        self.sl = (slice(self.iy0 - Y0, self.iy1 - Y0), slice(self.ix0 - X0, self.ix1 - X0))

    def noise(self, cell: _Cell, k: int, spacing: float) -> np.ndarray:
        return _noise.value_noise(_noise.mix_seed(cell.seed, k), self.xs, self.ys, spacing)


def _nucleus(cell: _Cell, win: _Window) -> tuple[np.ndarray, np.ndarray, float]:
    """The nucleus outline: (signed distance, soft mask, edge ramp width)."""
    a, b, r, e, u, m = win.a, win.b, cell.r, cell.e, cell.u, cell.m
    A, B = r * math.sqrt(e), r / math.sqrt(e)
    if cell.kind == APOPTOTIC:
        sdf = _ellipse_sdf(a, b, A, B)
        width = 0.9
    elif cell.kind == HYPERCHROMATIC:
        sdf = _ellipse_sdf(a, b, A, B) - _harmonics(a, b, u, 0.035) * F32(r)
        width = 1.3
    elif cell.spindle:
        # a spindle: tapered towards pointed ends, gently bent
        t = a * F32(1.0 / A)
        t *= t
        bent = b - F32((u[7] - 0.5) * 0.8 * B) * t
        bent /= F32(1.0) - F32(0.45) * np.minimum(t, F32(1.5))
        sdf = _ellipse_sdf(a, bent, A, B)
        width = 1.2
    else:
        sdf = _ellipse_sdf(a, b, A, B) - _harmonics(a, b, u, 0.09) * F32(r)
        width = 2.8 - 1.5 * m
        if cell.kind == MITOTIC and cell.shape > 0:
            target = _figure(cell, win)
            sdf *= F32(1.0 - cell.shape)
            sdf += F32(cell.shape) * target
    mask = np.clip(F32(0.5) - sdf * F32(1.0 / width), 0, 1)
    return sdf, mask, width


def _figure(cell: _Cell, win: _Window) -> np.ndarray:
    """Signed distance of the fully mitotic figure of the cell's phase."""
    a, b, r, u = win.a, win.b, cell.r, cell.u
    ragged = win.noise(cell, 11, 2.8)
    ragged -= F32(0.5)
    if cell.phase == PROPHASE:
        ep = 1.0 + (cell.e - 1.0) * 0.4
        rp = r * 1.06
        sdf = _ellipse_sdf(a, b, rp * math.sqrt(ep), rp / math.sqrt(ep))
        sdf -= _harmonics(a, b, u, 0.12) * F32(r)
        sdf -= ragged * F32(3.0)
        return sdf
    L = r * (0.95 + 0.25 * u[12])
    W = r * (0.3 + 0.12 * u[13])
    b = b - F32((u[14] - 0.5) * 0.5 * W) * (a * F32(1.0 / L)) ** 2  # a slightly bent plate
    # knobby outline: chromosome arms sticking out of the mass, plus fine hairs
    knobs = win.noise(cell, 12, 4.5)
    knobs -= F32(0.35)
    np.maximum(knobs, F32(0), out=knobs)
    if cell.phase == METAPHASE:
        sdf = _box_sdf(a, b, L, W, 0.8 * W)
        sdf -= knobs * F32(0.5 * r) + ragged * F32(2.0)
        return sdf
    if cell.phase == ANAPHASE:
        La, Wa = L * 0.92, W * 0.85
        bend = F32(0.35 * Wa * min(cell.sep / r, 1.0)) * (a * F32(1.0 / La)) ** 2
        off = F32(cell.sep) - bend
        sdf = np.minimum(
            _box_sdf(a, b - off, La, Wa, 0.8 * Wa), _box_sdf(a, b + off, La, Wa, 0.8 * Wa)
        )
        sdf -= knobs * F32(0.4 * r) + ragged * F32(1.8)
        return sdf
    # telophase: two compact, slightly C-shaped masses
    Lt, Wt = r * (0.72 + 0.1 * u[14]), r * (0.42 + 0.06 * u[15])
    bend = F32(0.45 * Wt * min(cell.sep / r, 1.0)) * (a * F32(1.0 / Lt)) ** 2
    off = F32(cell.sep) - bend
    sdf = np.minimum(_box_sdf(a, b - off, Lt, Wt, 0.9 * Wt), _box_sdf(a, b + off, Lt, Wt, 0.9 * Wt))
    sdf -= ragged * F32(1.6)
    return sdf

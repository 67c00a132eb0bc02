"""Render synthetic H&E images through Beer-Lambert haematoxylin and eosin optical densities.

Public API:

- :class:`StainParams`: the stain and acquisition of one image: haematoxylin (H) and eosin (E)
  optical-density unit vectors and intensity scales, the light through glass, blur and sensor
  noise. :meth:`StainParams.sample` varies them per image around H&E vectors measured (Macenko)
  on real breast-cancer H&E.
- :func:`render_region`: the ``(h, w, 3)`` uint8 RGB of a box of a scene, from its
  :class:`~mitokit.data.synthetic.cells.CellTable` and its seed.
- :func:`render_cell`: one cell of a given kind, phase and latent mitosis score ``m`` centred
  in a patch, with ordinary neighbours and stroma from the same seed; the same seed with another
  ``m`` gives the same cell, more or less mitotic.
- :func:`cell_scene`: the scene :func:`render_cell` draws (cells, box, layout, stain).
- :func:`nucleus_masks`: the true nuclear masks of a box as a label image (cell index + 1).
- :func:`optical_density`: per-pixel H and E densities of an RGB image by colour deconvolution
  with the image's own stain vectors (the inverse of the rendering, for tests and analysis).

How a scene is composed (all in optical density, summed, so the order of cells never matters):
eosin stroma with wavy collagen fibres and purple-pink granular tumour cytoplasm in nests
(:class:`~mitokit.data.synthetic.scene.TissueField`), thin retraction clefts at nest borders;
then each cell stamped in a small window around it from its own seed: the nucleus (its outline
as a signed distance, its chromatin as a density times a texture), and for mitoses a clearer cell
body, for apoptotic bodies a dense pink shrunken cytoplasm in a clear halo. Finally
``RGB = light * exp(-(h * OD_H + e * OD_E))``, a slight Gaussian blur and sensor noise.

What ``m`` does (continuously, for every cell kind; the mitotic shape only for mitotic cells):
chromatin darker and denser (mean nuclear H OD from ~0.9 to ~3); the vesicular interphase
pattern (dark rim, pale centre, nucleoli) gives way to solid, at mid ``m`` granular, chromatin
with a darker core; the edge sharpens (ramp width 2.8 -> 1.3 px); the cell body clears. For
mitotic cells the outline morphs from the cell's interphase ellipse to its phase's figure:
prophase a round, ragged nucleus of condensed threads; metaphase a dense, knobby, hairy-edged
bar; anaphase two parallel bars separating with ``m``; telophase two compact masses far apart in
a pinched cell body. Imposters keep a low ``m`` but look the part by kind: apoptotic bodies are
small, very dark, round and smooth in a shrunken pink cytoplasm with a clear halo;
hyperchromatic nuclei are large, dark, round-oval and coarse, with an intact rim.

Every background field is hashed from ``(seed, global pixel coordinates)``, and every cell is
drawn from its own seed in global coordinates, so a box renders the same whether it is asked for
whole or in pieces: a slide written tile by tile has no seams.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    ANAPHASE,
    APOPTOTIC,
    HYPERCHROMATIC,
    INTERPHASE,
    METAPHASE,
    MITOTIC,
    NORMAL,
    PROPHASE,
    TELOPHASE,
    CellTable,
)
from mitokit.data.synthetic.scene import SceneParams, TissueField, sample_cells, sample_m
from mitokit.errors import input_error

__all__ = [
    "E_REFERENCE",
    "H_REFERENCE",
    "StainParams",
    "cell_scene",
    "nucleus_masks",
    "optical_density",
    "render_cell",
    "render_region",
]

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


def _stamp(
    cell: _Cell,
    X0: int,
    Y0: int,
    Hc: np.ndarray,
    Ec: np.ndarray,
    C: np.ndarray,
) -> None:
    """Add one cell's densities to ``Hc``/``Ec`` and its clearing to ``C`` (in place)."""
    win = _Window(cell, X0, Y0, Hc.shape[1], Hc.shape[0])
    if win.empty:
        return
    sl, m, u = win.sl, cell.m, cell.u
    sdf, M, _ = _nucleus(cell, win)
    fine = win.noise(cell, 1, 1.4)
    clump = _noise.fbm(_noise.mix_seed(cell.seed, 2), win.xs, win.ys, 3.2, 2)
    clump -= F32(0.5)
    fine -= F32(0.5)

    if cell.kind == APOPTOTIC:
        D = 2.3 + 0.5 * u[16]
        P = F32(1.0) + F32(0.12) * fine
        H = M * P
        H *= F32(D)
        E = M * F32(0.25)
        rb = cell.body[0]
        off = 0.8 * (rb - cell.r)
        sb = np.hypot(win.a - F32(off * (u[8] - 0.5)), win.b - F32(off * (u[9] - 0.5)))
        sb -= F32(rb) * (F32(1.0) + _harmonics(win.a, win.b, u[6:], 0.2))
        body = np.clip(F32(0.5) - sb * F32(1 / 1.5), 0, 1)
        inner = np.clip(body - M, 0, 1)
        E += inner * (F32(0.5 + 0.6 * u[15]) + F32(0.5) * clump)
        H += inner * F32(0.10)
        # a clear retraction halo of uneven width, partly around the shrunken cell
        gate = win.noise(cell, 5, 0.9 * rb)
        outer = gate * F32(9.0) - F32(1.0)  # lacuna width: 0 to 8 px around the cell
        halo = np.clip((outer - sb) * F32(0.5), 0, 1)
        halo *= np.clip(sb + F32(1.0), 0, 1)
        clear = F32(1.0) - np.maximum(body * F32(0.85), halo * F32(0.8))
        Hc[sl] += H
        Ec[sl] += E
        C[sl] *= clear
        return

    rim = sdf + F32(1.4)
    rim *= F32(1 / 1.2)
    rim = np.exp(-rim * rim)
    if cell.kind == HYPERCHROMATIC:
        D = 1.45 + 0.35 * u[16] + 0.3 * m
        P = F32(0.8) + F32(0.45) * rim + F32(1.1) * clump + F32(0.2) * fine
        v = 0.5
    elif cell.spindle:
        D = 1.05 + 0.35 * u[16] + 1.0 * m
        P = F32(0.85) + F32(0.3) * rim + F32(0.35) * fine
        v = 0.0
    else:
        d_int = 0.75 + 0.4 * u[16]
        d_mit = 2.8 + 0.5 * u[17]
        if cell.kind == MITOTIC and cell.phase == PROPHASE:
            d_mit -= 0.6
        D = d_int + (d_mit - d_int) * m
        v = 1.0 - _smooth(0.08, 0.6, m)
        g = 0.35 + 1.6 * m * (1 - m) - 0.15 * m  # granular most at mid m
        if cell.kind == MITOTIC and cell.phase == PROPHASE:
            # condensed threads with clear gaps between them, not a solid mass
            yarn = win.noise(cell, 4, 5.0)
            yarn -= F32(0.5)
            yarn += clump * F32(0.5)
            threads = np.abs(yarn) * F32(-3.0) + F32(1.0)  # ridged: 1 on the threads
            np.maximum(threads, F32(0), out=threads)
            Pc = F32(0.55) + F32(1.1) * threads + F32(0.4) * fine
            Pc = Pc * F32(cell.shape) + (F32(1.0) + F32(2 * g) * clump) * F32(1 - cell.shape)
        else:
            Pc = F32(1.0) + F32(2 * g) * clump + F32(0.25) * fine
        # condensed chromatin: a darker core, paler fuzzy margins
        core = np.clip(sdf * F32(-0.25), 0, 1)
        Pc *= F32(0.8) + F32(0.35) * core
        Pv = F32(0.72) + F32(0.5) * rim + F32(0.9) * fine + F32(0.8) * clump
        P = Pv * F32(v) + Pc * F32(1 - v)
    np.maximum(P, F32(0.05), out=P)
    H = M * P
    H *= F32(D)
    E = M * F32(0.22 + 0.05 * v)
    if v > 0 and not cell.spindle:  # nucleoli: small dense spots, purple-red
        n_nuc = 1 + int(u[18] > 0.55) + (cell.kind == HYPERCHROMATIC)
        for k in range(n_nuc):
            ang = 2 * math.pi * u[19 + k]
            rad = cell.r * 0.45 * u[21 + k] ** 0.5
            sig = 0.9 + 0.5 * u[20 - k] + 0.5 * (cell.kind == HYPERCHROMATIC)
            da = win.a - F32(rad * math.cos(ang) * math.sqrt(cell.e))
            db = win.b - F32(rad * math.sin(ang) / math.sqrt(cell.e))
            spot = np.exp((da * da + db * db) * F32(-0.5 / sig**2)) * M
            H += spot * F32(0.7 * v)
            E += spot * F32(0.45 * v)
    clear = F32(1.0) - F32(0.6) * M

    if cell.kind != MITOTIC and cell.body[0] > 0:
        # a cell of its own: cytoplasm a little denser or paler than its neighbours', with a
        # faint membrane, so that nests read as cells rather than nuclei in a uniform sea
        rc = cell.body[0]
        d = np.hypot(win.a, win.b)
        d -= F32(rc)
        d += _harmonics(win.a, win.b, u[6:], 0.25) * F32(rc)
        cyt = np.clip(F32(0.5) - d * F32(0.5), 0, 1)
        E += cyt * F32((u[12] - 0.45) * 0.4)
        H += cyt * F32((u[13] - 0.4) * 0.2)
        E += np.exp(-d * d * F32(0.3)) * F32(0.10 * u[14])

    if cell.kind == MITOTIC:
        along, across = cell.body
        if cell.phase == TELOPHASE and cell.sep > 0:
            pinch = F32(0.4 * cell.sep / (1.5 * cell.r)) * np.exp(
                -((win.b * F32(1 / (0.45 * across))) ** 2)
            )
            along_eff = F32(along) * (F32(1.0) - pinch)
        else:
            along_eff = F32(along)
        qa = win.a / along_eff
        qb = win.b * F32(1 / across)
        rho = np.sqrt(qa * qa + qb * qb)
        sb = (rho - F32(1.0)) * F32(min(along, across))
        body = np.clip(F32(0.5) - sb * F32(1 / 3.0), 0, 1)
        strength = 0.65 * _smooth(0.05, 0.8, m)
        clear *= F32(1.0) - F32(strength) * body
        cyt = win.noise(cell, 3, 2.2)
        E += body * (F32(strength * 0.10) + F32(strength * 0.12) * cyt)
        H += body * F32(strength * 0.04)
        E += np.exp(-sb * sb * F32(0.5)) * F32(0.08 * strength)
    Hc[sl] += H
    Ec[sl] += E
    C[sl] *= clear


# -- regions ------------------------------------------------------------------------------------


def _check_box(box: Any) -> tuple[int, int, int, int]:
    try:
        x1, y1, x2, y2 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise input_error(None, f"box must be [x1, y1, x2, y2] integers, got {box!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise input_error(None, f"empty box {box!r}")
    return x1, y1, x2, y2


def _near(cells: CellTable, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Indices of the cells whose window can reach the block ``[x0, x1) x [y0, y1)``."""
    if len(cells) == 0:
        return np.zeros(0, np.int64)
    reach = (
        cells.radius.astype(np.float64) * (np.sqrt(np.maximum(cells.elongation, 1.0)) * 1.2 + 3.7)
        + 12.0
    )
    inside = (
        (cells.x + reach > x0)
        & (cells.x - reach < x1)
        & (cells.y + reach > y0)
        & (cells.y - reach < y1)
    )
    return np.flatnonzero(inside)


def _background(
    tissue: TissueField, seed: int, x0: int, y0: int, w: int, h: int, params: SceneParams
) -> tuple[np.ndarray, np.ndarray]:
    """Stroma and tumour-cytoplasm densities (H, E) of the block at ``(x0, y0)``."""
    px = params.px
    xs = np.arange(x0, x0 + w) + 0.5
    ys = np.arange(y0, y0 + h) + 0.5
    raw = tissue.nest_raw(xs, ys)
    nest = tissue.nest_from_raw(raw)
    gran = _noise.smooth_white(_noise.mix_seed(seed, 1), x0, y0, w, h, px(0.3))
    mot = _noise.fbm(_noise.mix_seed(seed, 2), xs, ys, px(6.0), 3)
    mot -= F32(0.5)
    # tumour cytoplasm: purple-pink, finely granular, mottled
    H = F32(0.23) + F32(0.03) * gran + F32(0.4) * mot
    E = F32(0.52) + F32(0.05) * gran + F32(0.9) * mot
    # clear spaces between cells (oedema, retraction, vacuoles)
    holes = _noise.fbm(_noise.mix_seed(seed, 8), xs, ys, px(7.0), 2)
    holes = np.clip((holes - F32(0.63)) * F32(7.0), 0, 1)
    holes = F32(1.0) - F32(0.9) * holes
    H *= holes
    E *= holes
    if float(nest.min()) < 1.0:
        ramp = tissue.fibre_ramp(xs, ys)  # pixels across the fibres
        s1 = _noise.noise_1d(_noise.mix_seed(seed, 3), ramp, px(1.6))
        s2 = _noise.noise_1d(_noise.mix_seed(seed, 4), ramp, px(6.0))
        brk = _noise.value_noise(_noise.mix_seed(seed, 6), xs, ys, px(8.0))
        # fibres of random width and density along the level lines, broken into segments;
        # thin clefts where a trough of s1 meets a gap of the breaking field
        fib = s1 * F32(0.7) + s2 * F32(0.5) + brk * F32(0.6) - F32(0.45)
        fib = np.clip(fib * F32(2.2), 0, 1)
        dense = _noise.fbm(_noise.mix_seed(seed, 7), xs, ys, px(30.0), 2)
        Es = (F32(0.18) + F32(0.8) * fib) * (F32(0.5) + dense)
        Es += F32(0.05) * gran
        Hs = F32(0.04) + F32(0.05) * fib
        # blend: stroma + nest * (tumour - stroma)
        H -= Hs
        H *= nest
        H += Hs
        E -= Es
        E *= nest
        E += Es
        # retraction clefts just outside the nests
        t, band = tissue.nest_threshold, tissue._nest_band
        cl = (raw - F32(t - 1.2 * band)) * F32(1.0 / (0.12 * band))
        cleft = np.exp(-cl * cl)
        gate = _noise.value_noise(_noise.mix_seed(seed, 5), xs, ys, px(25.0))
        cleft *= np.clip((gate - F32(0.5)) * F32(4.0), 0, 1)
        keep = F32(1.0) - F32(0.9) * cleft
        H *= keep
        E *= keep
    np.maximum(H, F32(0), out=H)
    np.maximum(E, F32(0), out=E)
    return H, E


def _region_od(
    cells: CellTable,
    x0: int,
    y0: int,
    w: int,
    h: int,
    *,
    seed: int,
    params: SceneParams,
    tissue: TissueField,
) -> tuple[np.ndarray, np.ndarray] | None:
    """H and E optical densities of the block at ``(x0, y0)``; None where it is all glass."""
    xs = np.arange(x0, x0 + w) + 0.5
    ys = np.arange(y0, y0 + h) + 0.5
    presence = tissue.tissue(xs, ys)
    if presence is not None and float(presence.max()) <= 0.0:
        return None
    H, E = _background(tissue, seed, x0, y0, w, h, params)
    Hc = np.zeros_like(H)
    Ec = np.zeros_like(E)
    C = np.ones_like(H)
    idx = _near(cells, x0, y0, x0 + w, y0 + h)
    if len(idx):
        attrs = _cell_attrs(cells.seed[idx])
        for j, i in enumerate(idx):
            _stamp(_Cell.of(cells, int(i), attrs[j]), x0, y0, Hc, Ec, C)
    H *= C
    H += Hc
    E *= C
    E += Ec
    if presence is not None:
        H *= presence
        E *= presence
    return H, E


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


def render_region(
    cells: CellTable,
    box: tuple[int, int, int, int],
    *,
    stain: StainParams | None = None,
    seed: int,
    params: SceneParams | None = None,
    tissue: TissueField | None = None,
) -> np.ndarray:
    """Render a box of a scene.

    Args:
        cells: The scene's cells (global level-0 coordinates); those near the box are drawn.
        box: ``[x1, y1, x2, y2]`` integer level-0 pixels.
        stain: Stain and acquisition; default :class:`StainParams` ``()``.
        seed: The scene seed (background texture, sensor noise; the layout when ``tissue`` is
            None).
        params: Scene parameters (pixel size for texture scales); default ``SceneParams()``.
        tissue: The scene's layout; default ``TissueField(seed, params)`` (no glass). Pass the
            same one given to :func:`~mitokit.data.synthetic.scene.sample_cells`.

    Returns:
        ``(y2 - y1, x2 - x1, 3)`` uint8 RGB. Rendering a box in pieces gives the same pixels
        (up to float rounding) as rendering it whole.

    Raises:
        MitokitError: The box is empty.
    """
    x1, y1, x2, y2 = _check_box(box)
    p = params or SceneParams()
    stain = stain or StainParams()
    tissue = tissue or TissueField(seed, p)
    w, h = x2 - x1, y2 - y1
    od = _region_od(
        cells, x1 - _PAD, y1 - _PAD, w + 2 * _PAD, h + 2 * _PAD, seed=seed, params=p, tissue=tissue
    )
    return _to_rgb(od, stain, seed, x1, y1, w, h)


def nucleus_masks(cells: CellTable, box: tuple[int, int, int, int]) -> np.ndarray:
    """True nuclear masks of a box: ``(h, w)`` int32, cell index + 1 where a nucleus covers the
    pixel (mask above one half; the later cell where two overlap), 0 elsewhere."""
    x1, y1, x2, y2 = _check_box(box)
    out = np.zeros((y2 - y1, x2 - x1), np.int32)
    idx = _near(cells, x1, y1, x2, y2)
    if not len(idx):
        return out
    attrs = _cell_attrs(cells.seed[idx])
    for j, i in enumerate(idx):
        cell = _Cell.of(cells, int(i), attrs[j])
        win = _Window(cell, x1, y1, x2 - x1, y2 - y1)
        if win.empty:
            continue
        _, mask, _ = _nucleus(cell, win)
        view = out[win.sl]
        view[mask > 0.5] = int(i) + 1
    return out


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


# -- single cells -------------------------------------------------------------------------------


def cell_scene(
    m: float,
    *,
    kind: int,
    phase: int = INTERPHASE,
    size: int = 64,
    seed: int,
    neighbours: bool = True,
    params: SceneParams | None = None,
) -> tuple[CellTable, tuple[int, int, int, int], TissueField, StainParams]:
    """The scene :func:`render_cell` draws: ``(cells, box, tissue, stain)``.

    The centre cell is row 0 of ``cells``. Everything but ``m`` is drawn from ``seed``: the
    cell's size, shape, orientation and texture, its neighbours, the place in the tissue and the
    stain, so changing ``m`` alone morphs the same cell.
    """
    if not 0 <= m <= 1:
        raise input_error(None, f"m must be in [0, 1], got {m!r}")
    if kind not in (NORMAL, MITOTIC, APOPTOTIC, HYPERCHROMATIC):
        raise input_error(None, f"unknown cell kind {kind!r}")
    if kind == MITOTIC and phase not in (PROPHASE, METAPHASE, ANAPHASE, TELOPHASE):
        raise input_error(None, f"a mitotic cell needs a mitotic phase, got {phase!r}")
    if kind != MITOTIC and phase != INTERPHASE:
        raise input_error(None, f"a non-mitotic cell has phase INTERPHASE, got {phase!r}")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise input_error(None, f"size must be an integer >= 8, got {size!r}")
    p = params or SceneParams()
    rng = np.random.default_rng(_noise.mix_seed(seed, 0xCE77))
    scene_seed = int(rng.integers(0, 2**62))
    tissue = TissueField(scene_seed, p)
    # a place inside a tumour nest (most tries), far from the origin
    tries = rng.uniform(1e5, 1e6, (2, 8))
    inside = np.flatnonzero(tissue.nest_points(tries[0], tries[1]) > 0.6)
    cx, cy = tries[:, inside[0] if len(inside) else 0]
    cx, cy = math.floor(cx) + size / 2, math.floor(cy) + size / 2
    x1, y1 = int(cx - size / 2), int(cy - size / 2)
    box = (x1, y1, x1 + size, y1 + size)
    radius_um = rng.uniform(*p.nucleus_radius_um)
    if kind == APOPTOTIC:
        radius_um *= 0.55
    elif kind == HYPERCHROMATIC:
        radius_um *= 1.3
    elong = 1.0 + min(abs(rng.normal(0, 0.22)), 0.8)
    if kind == APOPTOTIC:
        elong = 1.0 + (elong - 1.0) * 0.2
    centre = CellTable(
        id=np.array([0], np.int64),
        x=np.array([cx]),
        y=np.array([cy]),
        kind=np.array([kind], np.int8),
        m=np.array([m], np.float32),
        phase=np.array([phase], np.int8),
        radius=np.array([radius_um / p.mpp], np.float32),
        elongation=np.array([elong], np.float32),
        angle=np.array([rng.uniform(0, np.pi)], np.float32),
        seed=np.array([rng.integers(0, 2**32)], np.uint32),
    )
    stain = StainParams.sample(rng)
    tables = [centre]
    if neighbours:
        margin = 1.6 * p.px(max(p.nucleus_radius_um))  # neighbours reaching into the patch
        near = sample_cells(
            (x1 - margin, y1 - margin, x1 + size + margin, y1 + size + margin),
            params=replace(
                p, mitotic_fraction=0.0, apoptotic_fraction=0.0, hyperchromatic_fraction=0.0
            ),
            rng=rng,
            id_offset=1,
            tissue=tissue,
        )
        r0 = float(centre.radius[0]) * math.sqrt(elong)
        reach = r0 * (2.0 if kind in (MITOTIC, APOPTOTIC) else 1.0)
        clear = np.hypot(near.x - cx, near.y - cy) > p.packing * (
            reach + near.radius * np.sqrt(np.minimum(near.elongation, 2.0))
        )
        near = near.subset(clear)
        near.m = sample_m(NORMAL, rng=rng, params=p, n=len(near))
        tables.append(near)
    cells = CellTable.concat(tables)
    cells.id = np.arange(len(cells), dtype=np.int64)
    return cells, box, tissue, stain


def render_cell(
    m: float,
    *,
    kind: int,
    phase: int = INTERPHASE,
    size: int = 64,
    seed: int,
    stain: StainParams | None = None,
    neighbours: bool = True,
    params: SceneParams | None = None,
) -> np.ndarray:
    """One cell centred in a ``size x size`` patch.

    Args:
        m: Latent mitosis score in [0, 1].
        kind: NORMAL, MITOTIC, APOPTOTIC or HYPERCHROMATIC.
        phase: A mitotic phase for MITOTIC cells, INTERPHASE otherwise.
        size: Patch width and height in pixels.
        seed: Everything but ``m``: the cell's geometry and texture, its neighbours, the tissue
            around it and (without ``stain``) the stain.
        stain: Stain and acquisition; default drawn from ``seed``.
        neighbours: Draw ordinary neighbouring cells around it.
        params: Scene parameters.

    Returns:
        ``(size, size, 3)`` uint8 RGB.
    """
    cells, box, tissue, drawn = cell_scene(
        m, kind=kind, phase=phase, size=size, seed=seed, neighbours=neighbours, params=params
    )
    return render_region(
        cells, box, stain=stain or drawn, seed=tissue.seed, params=params, tissue=tissue
    )

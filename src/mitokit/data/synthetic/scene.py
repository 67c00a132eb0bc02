"""Where the cells of a synthetic scene are, and what they are.

Public API:

- :class:`SceneParams`: the scene's biology in physical units (microns per pixel, nuclear radii,
  cell densities of tumour nests and stroma, fractions of mitoses and imposters, the distribution
  of the latent mitosis score ``m`` per cell kind, mitotic phase frequencies, tissue fraction).
- :class:`TissueField`: the tissue-scale layout as continuous fields of global level-0
  coordinates, hashed from a seed: tumour nests versus stroma, the direction of collagen fibres,
  and (for a whole slide) tissue islands on glass. Any region of a slide, asked for in any order,
  sees the same layout.
- :func:`sample_cells`: a :class:`~mitokit.data.synthetic.cells.CellTable` of cells in a box:
  a Poisson process thinned by the local density (dense nests, sparse stroma, none on glass), then
  a hard-core thinning so nuclei touch but rarely overlap. Tumour cells in nests are mostly
  ordinary; a fraction are mitotic (with a phase: prophase, metaphase, anaphase, telophase;
  metaphase commonest) or imposters (apoptotic bodies, hyperchromatic nuclei). Stromal cells are
  elongated fibroblasts aligned with the fibres.
- :func:`sample_m`: latent mitosis scores for cells of one kind (the scene's Beta distribution).

The latent score ``m`` is drawn per kind from a Beta distribution: low for ordinary cells, high for
mitoses, low-ish for imposters, with overlapping tails, so that some mitoses look borderline and
some ordinary cells look suspicious (rater agreement is imperfect, as on real slides). ``m`` is
what drives a cell's look in :mod:`mitokit.data.synthetic.render`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import ndtri

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    APOPTOTIC,
    HYPERCHROMATIC,
    INTERPHASE,
    KIND_NAMES,
    MITOTIC,
    MITOTIC_PHASES,
    NORMAL,
    CellTable,
)
from mitokit.data.synthetic.packing import _hard_core, _hard_core_density
from mitokit.errors import input_error

__all__ = ["MITOTIC_PHASES", "SceneParams", "TissueField", "sample_cells", "sample_m"]


@dataclass(frozen=True)
class SceneParams:
    """The biology and layout of a synthetic H&E scene.

    Attributes:
        mpp: Microns per pixel of level 0 (0.25 is a 40x scan).
        nucleus_radius_um: Range of tumour nuclear radii (um); nuclei are 6-9 um across.
        stroma_radius_um: Range of fibroblast nuclear radii (um), before elongation.
        stroma_elongation: Range of fibroblast elongation (long / short axis).
        nest_density_per_mm2: Nuclei per mm^2 inside tumour nests (packed, often touching).
        stroma_density_per_mm2: Nuclei per mm^2 in the stroma between nests.
        nest_fraction: Share of the tissue area in tumour nests.
        nest_scale_um: Typical size of a nest (lattice spacing of the nest field).
        packing: Two nuclei closer than ``packing * (r_i + r_j)`` are not both kept.
        mitotic_fraction: Share of tumour cells that are mitotic.
        apoptotic_fraction: Share of tumour cells that are apoptotic bodies (imposters).
        hyperchromatic_fraction: Share of tumour cells that are hyperchromatic (imposters).
        m_beta: Beta ``(a, b)`` of the latent mitosis score per kind name (``normal``,
            ``mitotic``, ``apoptotic``, ``hyperchromatic``).
        phase_weights: Relative frequency of prophase, metaphase, anaphase, telophase among
            mitoses (metaphase, with prometaphase, is the commonest figure).
        fibre_period_um: Spacing of collagen fibre bundles in the stroma (um).
        tissue_fraction: Share of a whole slide covered by tissue (the rest is glass).
    """

    mpp: float = 0.25
    nucleus_radius_um: tuple[float, float] = (3.4, 5.6)
    stroma_radius_um: tuple[float, float] = (1.7, 2.4)
    stroma_elongation: tuple[float, float] = (2.2, 4.5)
    nest_density_per_mm2: float = 6000.0
    stroma_density_per_mm2: float = 900.0
    nest_fraction: float = 0.55
    nest_scale_um: float = 180.0
    packing: float = 0.78
    mitotic_fraction: float = 0.015
    apoptotic_fraction: float = 0.01
    hyperchromatic_fraction: float = 0.03
    m_beta: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "normal": (1.0, 14.0),
            "mitotic": (4.0, 1.5),
            "apoptotic": (2.0, 8.0),
            "hyperchromatic": (2.0, 6.0),
        }
    )
    phase_weights: tuple[float, float, float, float] = (0.15, 0.5, 0.15, 0.2)
    fibre_period_um: float = 3.5
    tissue_fraction: float = 0.7

    def __post_init__(self) -> None:
        def bad(problem: str) -> None:
            raise input_error(None, f"SceneParams: {problem}")

        if not (math.isfinite(self.mpp) and 0.05 <= self.mpp <= 5):
            bad(f"mpp must be in [0.05, 5], got {self.mpp!r}")
        for name in ("nucleus_radius_um", "stroma_radius_um", "stroma_elongation"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                bad(f"{name} must be a range 0 < lo <= hi, got {(lo, hi)!r}")
        if self.stroma_elongation[0] < 1:
            bad("stroma_elongation must be >= 1")
        for name in ("nest_density_per_mm2", "stroma_density_per_mm2"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                bad(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("nest_fraction", "tissue_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                bad(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        fractions = (self.mitotic_fraction, self.apoptotic_fraction, self.hyperchromatic_fraction)
        if min(fractions) < 0 or sum(fractions) > 1:
            bad(f"kind fractions must be >= 0 and sum to <= 1, got {fractions!r}")
        if not 0 < self.packing < 2:
            bad(f"packing must be in (0, 2), got {self.packing!r}")
        for kind in ("normal", "mitotic", "apoptotic", "hyperchromatic"):
            ab = self.m_beta.get(kind)
            if ab is None or len(ab) != 2 or min(ab) <= 0:
                bad(f"m_beta[{kind!r}] must be a pair of positive numbers, got {ab!r}")
        if len(self.phase_weights) != 4 or min(self.phase_weights) < 0:
            bad(f"phase_weights must be 4 non-negative numbers, got {self.phase_weights!r}")
        if sum(self.phase_weights) <= 0:
            bad("phase_weights must not all be 0")
        if self.nest_scale_um <= 0 or self.fibre_period_um <= 0:
            bad("nest_scale_um and fibre_period_um must be positive")

    def px(self, um: float) -> float:
        """A length in micrometres as level-0 pixels."""
        return um / self.mpp

    def with_mpp(self, mpp: float) -> SceneParams:
        """The same scene at another pixel size."""
        return replace(self, mpp=float(mpp))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (for manifests)."""
        return asdict(self)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - np.float32(lo)) * np.float32(1.0 / (hi - lo)), 0, 1)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


class TissueField:
    """Tissue-scale layout of a scene as continuous fields of global level-0 coordinates.

    Args:
        seed: The scene seed; every field is hashed from it.
        params: Scene parameters (nest size and share, fibre spacing, tissue share).
        slide_size: ``(width, height)`` of a whole slide, for tissue islands on glass that fade
            out before the slide edges. None (tiles, patches): tissue everywhere.
    """

    def __init__(
        self,
        seed: int,
        params: SceneParams | None = None,
        *,
        slide_size: tuple[int, int] | None = None,
    ) -> None:
        self.seed = int(seed)
        self.params = params or SceneParams()
        p = self.params
        self._nest_seed = _noise.mix_seed(self.seed, 0x4E57)
        self._nest_spacing = p.px(p.nest_scale_um) * 2.0
        std = _noise.fbm_std(3)
        frac = min(max(p.nest_fraction, 1e-4), 1 - 1e-4)
        self.nest_threshold = 0.5 + std * float(ndtri(1.0 - frac))
        self._nest_band = 0.25 * std  # raw-value width of the soft nest border
        # collagen fibres: level lines of a linear ramp bent by noise (a broad sweep that turns
        # the direction over ~100 um, and a fine waviness)
        rng = np.random.default_rng(_noise.mix_seed(self.seed, 0xF1B))
        self._fibre_dir = float(rng.uniform(0, np.pi))
        self._fibre_period = p.px(p.fibre_period_um)
        self._sweep_spacing = p.px(220.0)
        self._sweep_amplitude = p.px(160.0)
        self._warp_spacing = p.px(25.0)
        self._warp_amplitude = p.px(6.0)
        self._turn_spacing = p.px(1500.0)
        self._turn_amplitude = p.px(1300.0)
        self.slide_size = slide_size
        self.tissue_threshold = 0.0
        if slide_size is not None:
            w, h = (int(v) for v in slide_size)
            if w < 1 or h < 1:
                raise input_error(None, f"slide size must be positive, got {slide_size!r}")
            self._tissue_seed = _noise.mix_seed(self.seed, 0x7155)
            self._tissue_spacing = max(w, h) / 2.5
            self._tissue_band = 0.0015
            step = max(w, h) / 256.0
            xs = np.arange(0, w, step) + step / 2
            ys = np.arange(0, h, step) + step / 2
            raw = self._tissue_raw(xs, ys)
            q = 1.0 - min(max(p.tissue_fraction, 0.0), 1.0)
            self.tissue_threshold = (
                float(np.quantile(raw, q)) if 0 < q < 1 else (-1.0 if q == 0 else 2.0)
            )

    # -- nests ------------------------------------------------------------------------------
    def nest_raw(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The raw nest field (about N(0.5, 0.14)) on the grid ``ys x xs``."""
        return _noise.fbm(self._nest_seed, xs, ys, self._nest_spacing, 3)

    def nest_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Nest membership in [0, 1] from the raw field (a soft threshold)."""
        t = self.nest_threshold
        return _smoothstep(t - self._nest_band, t + self._nest_band, raw)

    def nest(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Nest membership in [0, 1] on the grid ``ys x xs`` (1 = tumour nest, 0 = stroma)."""
        return self.nest_from_raw(self.nest_raw(xs, ys))

    def nest_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Nest membership at scattered points."""
        return self.nest_from_raw(
            _noise.fbm(self._nest_seed, x, y, self._nest_spacing, 3, points=True)
        )

    # -- fibres -----------------------------------------------------------------------------
    def _warp_grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Phase offset (pixels) that bends the fibres: a broad sweep plus a fine waviness."""
        broad = _noise.fbm(_noise.mix_seed(self.seed, 0xAA0), xs, ys, self._sweep_spacing, 2)
        broad -= np.float32(0.5)
        broad *= np.float32(self._sweep_amplitude)
        wavy = _noise.value_noise(_noise.mix_seed(self.seed, 0xAA1), xs, ys, self._warp_spacing)
        wavy -= np.float32(0.5)
        wavy *= np.float32(self._warp_amplitude)
        broad += wavy
        turn = _noise.value_noise(_noise.mix_seed(self.seed, 0xAA2), xs, ys, self._turn_spacing)
        turn -= np.float32(0.5)
        turn *= np.float32(self._turn_amplitude)
        broad += turn
        return broad

    def _warp_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        broad = _noise.fbm(
            _noise.mix_seed(self.seed, 0xAA0), x, y, self._sweep_spacing, 2, points=True
        )
        wavy = _noise.value_noise_points(
            _noise.mix_seed(self.seed, 0xAA1), x, y, self._warp_spacing
        )
        turn = _noise.value_noise_points(
            _noise.mix_seed(self.seed, 0xAA2), x, y, self._turn_spacing
        )
        return (
            (broad - 0.5) * self._sweep_amplitude
            + (wavy - 0.5) * self._warp_amplitude
            + (turn - 0.5) * self._turn_amplitude
        )

    def fibre_ramp(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Distance across the fibres (pixels, bent) on the grid ``ys x xs``, float64; the
        fibres follow its level lines."""
        xs = np.asarray(xs, np.float64)
        ys = np.asarray(ys, np.float64)
        th = self._fibre_dir
        out = self._warp_grid(xs, ys).astype(np.float64)
        out += (xs * math.cos(th))[None, :]
        out += (ys * math.sin(th))[:, None]
        return out

    def fibre_angle_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Local direction (radians) of the fibres at scattered points."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        eps = 1.0
        th = self._fibre_dir
        n = len(x)
        w = self._warp_points(
            np.concatenate([x + eps, x - eps, x, x]), np.concatenate([y, y, y + eps, y - eps])
        )
        gx = math.cos(th) + (w[:n] - w[n : 2 * n]) / (2 * eps)
        gy = math.sin(th) + (w[2 * n : 3 * n] - w[3 * n :]) / (2 * eps)
        # fibres run along the level lines: perpendicular to the phase gradient
        return np.arctan2(gy, gx) + np.pi / 2

    # -- tissue on glass ----------------------------------------------------------------------
    def _tissue_raw(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        raw = _noise.fbm(self._tissue_seed, xs, ys, self._tissue_spacing, 8, 0.5)
        raw -= self._falloff(
            np.asarray(xs, np.float64)[None, :], np.asarray(ys, np.float64)[:, None]
        )
        return raw

    def _falloff(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Less tissue towards the slide's corners: tissue lies on glass as islands."""
        w, h = self.slide_size or (1, 1)
        d2 = ((x - w / 2) / (0.5 * w)) ** 2 + ((y - h / 2) / (0.5 * h)) ** 2
        return (0.2 * d2 * np.sqrt(d2)).astype(np.float32)

    @property
    def has_glass(self) -> bool:
        """Whether this field has areas without tissue (whole slides only)."""
        return self.slide_size is not None and self.params.tissue_fraction < 1

    def tissue(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
        """Tissue presence in [0, 1] on the grid ``ys x xs``; None where there is no glass."""
        if not self.has_glass:
            return None
        t = self.tissue_threshold
        return _smoothstep(t - self._tissue_band, t + self._tissue_band, self._tissue_raw(xs, ys))

    def tissue_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Tissue presence at scattered points (1 everywhere without glass)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        if not self.has_glass:
            return np.ones(x.shape, np.float32)
        raw = _noise.fbm(self._tissue_seed, x, y, self._tissue_spacing, 8, 0.5, points=True)
        raw = raw - self._falloff(x, y)
        t = self.tissue_threshold
        return _smoothstep(t - self._tissue_band, t + self._tissue_band, raw)


def _beta(rng: np.random.Generator, ab: tuple[float, float], n: int) -> np.ndarray:
    return rng.beta(ab[0], ab[1], n).astype(np.float32)


def sample_cells(
    box: tuple[float, float, float, float],
    *,
    params: SceneParams | None = None,
    rng: np.random.Generator,
    id_offset: int = 0,
    tissue: TissueField | None = None,
) -> CellTable:
    """Sample the cells whose nuclei are centred in ``box``.

    Args:
        box: ``[x1, y1, x2, y2]`` in level-0 pixels (global coordinates of the scene).
        params: Scene parameters (defaults to :class:`SceneParams` ``()``).
        rng: The random generator; the same state gives the same table.
        id_offset: First cell id.
        tissue: The scene layout (nests, stroma, glass, fibre direction). None: a tumour nest
            everywhere.

    Returns:
        The cells, with per-cell texture seeds drawn from ``rng``.

    Raises:
        MitokitError: The box is empty or inverted.
    """
    p = params or SceneParams()
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise input_error(None, f"sample_cells: empty box {box!r}")
    x, y, in_nest, priority = _candidates((x1, y1, x2, y2), p, rng, tissue)
    n = len(x)
    kind = _kinds(in_nest, p, rng)
    radius, elongation, angle = _shapes(x, y, in_nest, kind, p, rng, tissue)
    m = _sample_m(rng, kind, p)
    phase = np.full(n, INTERPHASE, np.int8)
    mit = kind == MITOTIC
    w = np.asarray(p.phase_weights, np.float64)
    phase[mit] = rng.choice(np.asarray(MITOTIC_PHASES, np.int8), int(mit.sum()), p=w / w.sum())
    seeds = rng.integers(0, 2**32, n, dtype=np.uint32)

    cells = CellTable(
        id=np.arange(id_offset, id_offset + n, dtype=np.int64),
        x=x,
        y=y,
        kind=kind,
        m=m,
        phase=phase,
        radius=radius,
        elongation=elongation.astype(np.float32),
        angle=angle.astype(np.float32),
        seed=seeds,
    )
    keep = _hard_core(cells, priority, p.packing)
    out = cells.subset(keep)
    out.id = np.arange(id_offset, id_offset + len(out), dtype=np.int64)
    return out


def _candidates(
    box: tuple[float, float, float, float],
    p: SceneParams,
    rng: np.random.Generator,
    tissue: TissueField | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell centres before packing: ``(x, y, in_nest, priority)``.

    A Poisson process at the highest intensity of the scene, thinned by the local density
    (dense nests, sparse stroma, none on glass); ``priority`` orders the packing.
    """
    x1, y1, x2, y2 = box
    area_mm2 = (x2 - x1) * (y2 - y1) * (p.mpp * 1e-3) ** 2
    r_nest = float(np.mean(p.nucleus_radius_um)) * 1e-3 * 1.1  # mean sqrt(elongation)
    r_str = float(np.mean(p.stroma_radius_um)) * 1e-3 * math.sqrt(2.0)
    lam_nest = _hard_core_density(p.nest_density_per_mm2, p.packing * 2 * r_nest)
    lam_str = _hard_core_density(p.stroma_density_per_mm2, p.packing * 2 * r_str)
    lam_max = max(lam_nest, lam_str if tissue is not None else 0.0)
    n = int(rng.poisson(lam_max * area_mm2)) if lam_max > 0 else 0
    x = rng.uniform(x1, x2, n)
    y = rng.uniform(y1, y2, n)
    u_nest, u_keep, u_tissue, priority = rng.random((4, n))
    if tissue is None:
        in_nest = np.ones(n, bool)
        keep = np.ones(n, bool)
    else:
        in_nest = u_nest < tissue.nest_points(x, y)
        lam = np.where(in_nest, lam_nest, lam_str)
        keep = u_keep * lam_max < lam
        if tissue.has_glass and keep.any():
            idx = np.flatnonzero(keep)
            keep[idx] = u_tissue[idx] < tissue.tissue_points(x[idx], y[idx])
    return x[keep], y[keep], in_nest[keep], priority[keep]


def _kinds(in_nest: np.ndarray, p: SceneParams, rng: np.random.Generator) -> np.ndarray:
    """Cell kinds: tumour cells in nests can be mitotic or imposters; stromal cells are
    fibroblasts (NORMAL)."""
    n = len(in_nest)
    u = rng.random(n)
    f_mit, f_apo, f_hyp = p.mitotic_fraction, p.apoptotic_fraction, p.hyperchromatic_fraction
    kind = np.full(n, NORMAL, np.int8)
    kind[in_nest & (u < f_mit)] = MITOTIC
    kind[in_nest & (u >= f_mit) & (u < f_mit + f_apo)] = APOPTOTIC
    kind[in_nest & (u >= f_mit + f_apo) & (u < f_mit + f_apo + f_hyp)] = HYPERCHROMATIC
    return kind


def _shapes(
    x: np.ndarray,
    y: np.ndarray,
    in_nest: np.ndarray,
    kind: np.ndarray,
    p: SceneParams,
    rng: np.random.Generator,
    tissue: TissueField | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nuclear ``(radius, elongation, angle)``: pixels, >= 1, radians in ``[0, pi)``.

    Apoptotic bodies are small and round, hyperchromatic nuclei large; stromal fibroblasts are
    elongated and aligned with the fibres.
    """
    n = len(x)
    radius_um = np.where(
        in_nest,
        rng.uniform(*p.nucleus_radius_um, n),
        rng.uniform(*p.stroma_radius_um, n),
    )
    elong_nest = 1.0 + np.minimum(np.abs(rng.normal(0, 0.25, n)), 0.9)
    elong_str = rng.uniform(*p.stroma_elongation, n)
    elongation = np.where(in_nest, elong_nest, elong_str)
    radius_um, elongation = _kind_shape(kind, radius_um, elongation)
    radius = (radius_um / p.mpp).astype(np.float32)
    angle = rng.uniform(0, np.pi, n)
    if tissue is not None and (~in_nest).any():
        s = ~in_nest
        angle[s] = tissue.fibre_angle_points(x[s], y[s]) + rng.normal(0, 0.2, int(s.sum()))
    angle = np.mod(angle, np.pi)
    return radius, elongation, angle


def _kind_shape(kind: Any, radius_um: Any, elongation: Any) -> tuple[np.ndarray, np.ndarray]:
    """Nuclear radius (um) and elongation as a cell's kind changes them, element-wise: apoptotic
    bodies shrunken and nearly round, hyperchromatic nuclei enlarged."""
    radius_um = np.where(kind == APOPTOTIC, radius_um * 0.55, radius_um)
    radius_um = np.where(kind == HYPERCHROMATIC, radius_um * 1.3, radius_um)
    elongation = np.where(kind == APOPTOTIC, 1.0 + (elongation - 1.0) * 0.2, elongation)
    return radius_um, elongation


def _sample_m(rng: np.random.Generator, kind: np.ndarray, p: SceneParams) -> np.ndarray:
    m = np.empty(len(kind), np.float32)
    for k, name in KIND_NAMES.items():
        sel = kind == k
        m[sel] = _beta(rng, p.m_beta[name], int(sel.sum()))
    return m


def sample_m(
    kind: int, *, rng: np.random.Generator, params: SceneParams | None = None, n: int = 1
) -> np.ndarray:
    """Draw ``n`` latent mitosis scores for cells of one kind (the scene's Beta)."""
    p = params or SceneParams()
    return _sample_m(rng, np.full(n, kind, np.int8), p)

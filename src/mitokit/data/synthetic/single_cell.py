"""One synthetic cell centred in a patch, the same cell at any latent mitosis score ``m``.

- :func:`cell_scene`: the scene :func:`render_cell` draws (cells, box, layout, stain): a centre
  cell of a given kind, phase and ``m`` at a place inside a tumour nest, with ordinary
  neighbours and stroma drawn from the same seed.
- :func:`render_cell`: that scene rendered; the same seed with another ``m`` gives the same
  cell, more or less mitotic.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    APOPTOTIC,
    INTERPHASE,
    MITOTIC,
    NORMAL,
    CellTable,
    check_kind_phase,
)
from mitokit.data.synthetic.region import render_region
from mitokit.data.synthetic.scene import (
    SceneParams,
    TissueField,
    _kind_shape,
    sample_cells,
    sample_m,
)
from mitokit.data.synthetic.staining import StainParams
from mitokit.errors import input_error

__all__ = ["cell_scene", "render_cell"]


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
    _check_cell(m, kind, phase, size)
    p = params or SceneParams()
    rng = np.random.default_rng(_noise.mix_seed(seed, 0xCE77))
    scene_seed = int(rng.integers(0, 2**62))
    tissue = TissueField(scene_seed, p)
    cx, cy, box = _place(tissue, rng, size)
    centre, reach = _centre_cell(m, kind, phase, cx, cy, p, rng)
    stain = StainParams.sample(rng)
    tables = [centre]
    if neighbours:
        tables.append(_neighbours(cx, cy, reach, box, tissue, p, rng))
    cells = CellTable.concat(tables)
    cells.id = np.arange(len(cells), dtype=np.int64)
    return cells, box, tissue, stain


def _check_cell(m: float, kind: int, phase: int, size: int) -> None:
    """Refuse an ``m``, kind, phase or patch size :func:`cell_scene` cannot draw."""
    if not 0 <= m <= 1:
        raise input_error(None, f"m must be in [0, 1], got {m!r}")
    check_kind_phase(kind, phase)
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise input_error(None, f"size must be an integer >= 8, got {size!r}")


def _place(
    tissue: TissueField, rng: np.random.Generator, size: int
) -> tuple[float, float, tuple[int, int, int, int]]:
    """The centre ``(cx, cy)`` and the patch box: inside a tumour nest (most tries), far from
    the origin."""
    tries = rng.uniform(1e5, 1e6, (2, 8))
    inside = np.flatnonzero(tissue.nest_points(tries[0], tries[1]) > 0.6)
    cx, cy = tries[:, inside[0] if len(inside) else 0]
    cx, cy = math.floor(cx) + size / 2, math.floor(cy) + size / 2
    x1, y1 = int(cx - size / 2), int(cy - size / 2)
    return cx, cy, (x1, y1, x1 + size, y1 + size)


def _centre_cell(
    m: float,
    kind: int,
    phase: int,
    cx: float,
    cy: float,
    p: SceneParams,
    rng: np.random.Generator,
) -> tuple[CellTable, float]:
    """The centre cell as a one-row table, and how far it keeps its neighbours (pixels)."""
    radius_um = rng.uniform(*p.nucleus_radius_um)
    elong = 1.0 + min(abs(rng.normal(0, 0.22)), 0.8)
    radius_um, elong = (float(v) for v in _kind_shape(kind, radius_um, elong))
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
    r0 = float(centre.radius[0]) * math.sqrt(elong)
    reach = r0 * (2.0 if kind in (MITOTIC, APOPTOTIC) else 1.0)
    return centre, reach


def _neighbours(
    cx: float,
    cy: float,
    reach: float,
    box: tuple[int, int, int, int],
    tissue: TissueField,
    p: SceneParams,
    rng: np.random.Generator,
) -> CellTable:
    """Ordinary cells around the centre cell, reaching into the patch but clear of it."""
    x1, y1, x2, y2 = box
    margin = 1.6 * p.px(max(p.nucleus_radius_um))  # neighbours reaching into the patch
    near = sample_cells(
        (x1 - margin, y1 - margin, x2 + margin, y2 + margin),
        params=replace(
            p, mitotic_fraction=0.0, apoptotic_fraction=0.0, hyperchromatic_fraction=0.0
        ),
        rng=rng,
        id_offset=1,
        tissue=tissue,
    )
    clear = np.hypot(near.x - cx, near.y - cy) > p.packing * (
        reach + near.radius * np.sqrt(np.minimum(near.elongation, 2.0))
    )
    near = near.subset(clear)
    near.m = sample_m(NORMAL, rng=rng, params=p, n=len(near))
    return near


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

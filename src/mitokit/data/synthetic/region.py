"""Rendering a box of a synthetic scene: the tissue background, the cells, then the stain.

- :func:`render_region`: the ``(h, w, 3)`` uint8 RGB of a box of a scene, from its
  :class:`~mitokit.data.synthetic.cells.CellTable` and its seed.
- :func:`nucleus_masks`: the true nuclear masks of a box as a label image (cell index + 1).

A block is composed in optical density: the background (``_background``: eosin stroma with
wavy collagen fibres, purple-pink granular tumour cytoplasm in nests, clear spaces and thin
retraction clefts at nest borders), cleared and overlaid by every cell whose window reaches the
block (``_near``, :mod:`~mitokit.data.synthetic.stamp`), then turned into RGB
(:mod:`~mitokit.data.synthetic.staining`). Every field is hashed from ``(seed, global pixel
coordinates)``, so a box renders the same whether it is asked for whole or in pieces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cell_shapes import _Cell, _cell_attrs, _nucleus, _Window
from mitokit.data.synthetic.cells import CellTable
from mitokit.data.synthetic.scene import SceneParams, TissueField
from mitokit.data.synthetic.staining import _PAD, StainParams, _to_rgb
from mitokit.data.synthetic.stamp import _stamp
from mitokit.errors import input_error

__all__ = ["nucleus_masks", "render_region"]

F32 = np.float32


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

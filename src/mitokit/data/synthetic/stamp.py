"""Stamping one cell's haematoxylin and eosin densities into a block of a scene.

``_stamp`` draws a cell in its small window (:mod:`~mitokit.data.synthetic.cell_shapes`) and
adds its densities to the block's H and E cell layers, and its clearing (a factor on the
background) to the clearing layer. What it draws depends on the cell's kind and ``m``:

- an apoptotic body: a small, very dark, smooth nucleus in a dense pink shrunken cytoplasm
  within a clear retraction halo (``_apoptotic``);
- any other nucleus: chromatin whose density and texture follow ``m`` (vesicular with a dark rim
  at low ``m``, granular at mid ``m``, solid with a darker core at high ``m``;
  ``_chromatin``) and nucleoli while it is still vesicular (``_add_nucleoli``);
- a cell body: non-mitotic tumour cells their own cytoplasm and faint membrane
  (``_add_own_cytoplasm``); mitoses a clearer body, pinched in telophase
  (``_add_mitotic_body``).

All densities add up, so the order in which cells are stamped never matters.
"""

from __future__ import annotations

import math

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cell_shapes import _Cell, _harmonics, _nucleus, _smooth, _Window
from mitokit.data.synthetic.cells import APOPTOTIC, HYPERCHROMATIC, MITOTIC, PROPHASE, TELOPHASE

F32 = np.float32


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
    sl = win.sl
    sdf, M, _ = _nucleus(cell, win)
    fine = win.noise(cell, 1, 1.4)
    clump = _noise.fbm(_noise.mix_seed(cell.seed, 2), win.xs, win.ys, 3.2, 2)
    clump -= F32(0.5)
    fine -= F32(0.5)

    if cell.kind == APOPTOTIC:
        H, E, clear = _apoptotic(cell, win, M, fine, clump)
        Hc[sl] += H
        Ec[sl] += E
        C[sl] *= clear
        return

    D, P, v = _chromatin(cell, win, sdf, fine, clump)
    np.maximum(P, F32(0.05), out=P)
    H = M * P
    H *= F32(D)
    E = M * F32(0.22 + 0.05 * v)
    if v > 0 and not cell.spindle:
        _add_nucleoli(cell, win, M, v, H, E)
    clear = F32(1.0) - F32(0.6) * M

    if cell.kind != MITOTIC and cell.body[0] > 0:
        _add_own_cytoplasm(cell, win, H, E)

    if cell.kind == MITOTIC:
        _add_mitotic_body(cell, win, H, E, clear)
    Hc[sl] += H
    Ec[sl] += E
    C[sl] *= clear


def _apoptotic(
    cell: _Cell, win: _Window, M: np.ndarray, fine: np.ndarray, clump: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An apoptotic body's (H, E, clearing): a dense nucleus, pink cytoplasm, a clear halo."""
    u = cell.u
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
    return H, E, clear


def _chromatin(
    cell: _Cell, win: _Window, sdf: np.ndarray, fine: np.ndarray, clump: np.ndarray
) -> tuple[float, np.ndarray, float]:
    """Chromatin of a non-apoptotic nucleus: (density ``D``, texture ``P``, vesicularity ``v``).

    ``v`` is 1 for a vesicular nucleus (dark rim, pale centre) and 0 for solid chromatin.
    """
    m, u = cell.m, cell.u
    rim = sdf + F32(1.4)
    rim *= F32(1 / 1.2)
    rim = np.exp(-rim * rim)
    if cell.kind == HYPERCHROMATIC:
        D = 1.45 + 0.35 * u[16] + 0.3 * m
        P = F32(0.8) + F32(0.45) * rim + F32(1.1) * clump + F32(0.2) * fine
        return D, P, 0.5
    if cell.spindle:
        D = 1.05 + 0.35 * u[16] + 1.0 * m
        P = F32(0.85) + F32(0.3) * rim + F32(0.35) * fine
        return D, P, 0.0
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
    return D, P, v


def _add_nucleoli(
    cell: _Cell, win: _Window, M: np.ndarray, v: float, H: np.ndarray, E: np.ndarray
) -> None:
    """Nucleoli: small dense spots, purple-red, added to ``H`` and ``E`` in place."""
    u = cell.u
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


def _add_own_cytoplasm(cell: _Cell, win: _Window, H: np.ndarray, E: np.ndarray) -> None:
    """A cell of its own (in place): cytoplasm a little denser or paler than its neighbours',
    with a faint membrane, so that nests read as cells rather than nuclei in a uniform sea."""
    u = cell.u
    rc = cell.body[0]
    d = np.hypot(win.a, win.b)
    d -= F32(rc)
    d += _harmonics(win.a, win.b, u[6:], 0.25) * F32(rc)
    cyt = np.clip(F32(0.5) - d * F32(0.5), 0, 1)
    E += cyt * F32((u[12] - 0.45) * 0.4)
    H += cyt * F32((u[13] - 0.4) * 0.2)
    E += np.exp(-d * d * F32(0.3)) * F32(0.10 * u[14])


def _add_mitotic_body(
    cell: _Cell, win: _Window, H: np.ndarray, E: np.ndarray, clear: np.ndarray
) -> None:
    """A mitosis's clearer cell body, pinched in telophase (``H``, ``E``, ``clear`` in place)."""
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
    strength = 0.65 * _smooth(0.05, 0.8, cell.m)
    clear *= F32(1.0) - F32(strength) * body
    cyt = win.noise(cell, 3, 2.2)
    E += body * (F32(strength * 0.10) + F32(strength * 0.12) * cyt)
    H += body * F32(strength * 0.04)
    E += np.exp(-sb * sb * F32(0.5)) * F32(0.08 * strength)

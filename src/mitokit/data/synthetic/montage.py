"""A montage of synthetic cells sorted by their latent mitosis score, beside real mitoses.

Public API:

- :func:`synthetic_montage`: write a labelled PNG whose rows are synthetic mitotic cells sorted by
  ``m``, sweeps of one cell from ``m = 0`` to ``1`` per phase (same seed), ordinary nuclei,
  imposters (apoptotic bodies, hyperchromatic nuclei) and, where a folder of real patches is
  given (AMi-Br: ``normal/`` and ``atypical/`` subfolders of 128 x 128 PNG centred on mitotic
  figures at ~0.25 um/px), rows of real mitotic figures centre-cropped to the same size.
- :func:`montage_rows`: the same rows as arrays, for notebooks and tests.

The PNG is quantised to a 256-colour palette (deterministic) to stay small enough for a README.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    APOPTOTIC,
    HYPERCHROMATIC,
    MITOTIC,
    MITOTIC_PHASES,
    NORMAL,
    PHASE_NAMES,
)
from mitokit.data.synthetic.render import render_cell
from mitokit.data.synthetic.scene import SceneParams, sample_m
from mitokit.errors import input_error
from mitokit.io.atomic import atomic_path

__all__ = ["montage_rows", "synthetic_montage"]

_DPI = 100  # figure dots per inch: sizes below are in display pixels

_ABBREV = {ph: PHASE_NAMES[ph].removesuffix("phase") for ph in MITOTIC_PHASES}  # "pro", "meta"...

_SWEEP_PHASES = MITOTIC_PHASES[1:] + MITOTIC_PHASES[:1]
"""The phases of the m sweeps, metaphase (the commonest figure) first and prophase last."""


def _real_rows(
    real_dir: Path, n: int, size: int, rng: np.random.Generator
) -> list[tuple[str, list[np.ndarray], list[str]]]:
    from PIL import Image

    rows = []
    for sub in ("normal", "atypical"):
        folder = real_dir / sub
        files = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not files:
            continue
        pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
        cells = []
        for k in sorted(pick):
            with Image.open(files[k]) as im:
                arr = np.asarray(im.convert("RGB"))
            h, w = arr.shape[:2]
            y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
            crop = arr[y0 : y0 + size, x0 : x0 + size]
            if crop.shape[:2] != (size, size):
                continue
            cells.append(crop)
        rows.append((f"real mitoses\n(AMi-Br {sub})", cells, [""] * len(cells)))
    return rows


def montage_rows(
    *,
    n_per_row: int = 10,
    seed: int = 0,
    size: int = 64,
    real_dir: str | os.PathLike | None = None,
    params: SceneParams | None = None,
) -> list[tuple[str, list[np.ndarray], list[str]]]:
    """The montage's rows as ``(label, images, captions)``.

    Args:
        n_per_row: Cells per row.
        seed: Seed of the synthetic cells and of the choice of real cells.
        size: Cell patch size in pixels.
        real_dir: Folder with ``normal/`` and ``atypical/`` real patches; rows of real cells
            where it exists.
        params: Scene parameters.
    """
    if not isinstance(n_per_row, int) or n_per_row < 1:
        raise input_error(None, f"n_per_row must be a positive integer, got {n_per_row!r}")
    p = params or SceneParams()
    rng = np.random.default_rng(_noise.mix_seed(seed, 0x3047))
    rows: list[tuple[str, list[np.ndarray], list[str]]] = []

    # mitotic cells, m spread over [0, 1], random phases, sorted by m
    n_mit = 2 * n_per_row
    m_vals = np.sort((np.arange(n_mit) + rng.random(n_mit)) / n_mit)
    w = np.asarray(p.phase_weights, np.float64)
    phases = rng.choice(np.asarray(MITOTIC_PHASES), size=n_mit, p=w / w.sum())
    seeds = rng.integers(0, 2**62, n_mit)
    for r in range(2):
        sl = slice(r * n_per_row, (r + 1) * n_per_row)
        imgs = [
            render_cell(float(m), kind=MITOTIC, phase=int(ph), size=size, seed=int(s), params=p)
            for m, ph, s in zip(m_vals[sl], phases[sl], seeds[sl], strict=True)
        ]
        caps = [f"{_ABBREV[int(ph)]} {m:.2f}" for m, ph in zip(m_vals[sl], phases[sl], strict=True)]
        rows.append((f"synthetic mitotic\nsorted by m ({r + 1}/2)", imgs, caps))

    # one cell per phase morphing with m (same seed)
    sweep = np.linspace(0, 1, n_per_row)
    for ph in _SWEEP_PHASES:
        s = int(rng.integers(0, 2**62))
        imgs = [
            render_cell(float(m), kind=MITOTIC, phase=ph, size=size, seed=s, params=p)
            for m in sweep
        ]
        rows.append(
            (f"{PHASE_NAMES[ph]}: same cell,\nm = 0 -> 1", imgs, [f"{m:.2f}" for m in sweep])
        )

    # ordinary nuclei (their own m distribution), sorted by m
    m_norm = np.sort(sample_m(NORMAL, rng=rng, params=p, n=n_per_row))
    seeds = rng.integers(0, 2**62, n_per_row)
    rows.append(
        (
            "ordinary nuclei\n(sorted by m)",
            [
                render_cell(float(m), kind=NORMAL, size=size, seed=int(s), params=p)
                for m, s in zip(m_norm, seeds, strict=True)
            ],
            [f"{m:.2f}" for m in m_norm],
        )
    )

    # imposters
    n_apo = n_per_row // 2
    kinds = [APOPTOTIC] * n_apo + [HYPERCHROMATIC] * (n_per_row - n_apo)
    imgs, caps = [], []
    for k in kinds:
        m = float(sample_m(k, rng=rng, params=p)[0])
        imgs.append(render_cell(m, kind=k, size=size, seed=int(rng.integers(0, 2**62)), params=p))
        caps.append(f"{'apopt.' if k == APOPTOTIC else 'hyperchr.'} {m:.2f}")
    rows.append(("imposters: apoptotic,\nhyperchromatic", imgs, caps))

    if real_dir is not None and Path(real_dir).is_dir():
        rows.extend(_real_rows(Path(real_dir), n_per_row, size, rng))
    return rows


def synthetic_montage(
    path: str | os.PathLike,
    *,
    n_per_row: int = 10,
    seed: int = 0,
    real_dir: str | os.PathLike | None = None,
    size: int = 64,
    scale: float = 1.5,
    params: SceneParams | None = None,
) -> Path:
    """Write the montage PNG (atomically).

    Args:
        path: Output PNG.
        n_per_row: Cells per row.
        seed: Seed of the synthetic cells and of the choice of real cells.
        real_dir: Folder of real patches with ``normal/`` and ``atypical/`` subfolders (for
            example ``../shared/data/amibr/patches``); rows of real mitoses where it exists.
        size: Cell patch size in pixels.
        scale: Display pixels per image pixel.
        params: Scene parameters.

    Returns:
        The path written.
    """
    rows = montage_rows(n_per_row=n_per_row, seed=seed, size=size, real_dir=real_dir, params=params)
    return _save_png(_draw(rows, n_per_row=n_per_row, size=size, scale=scale), path)


def _draw(rows: list, *, n_per_row: int, size: int, scale: float) -> Any:
    """The montage as a matplotlib figure: a label, then the cells with their captions, per row."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    gap = 4
    label_w = 150
    cell_px = size * scale
    cap_h = 12
    width_px = label_w + n_per_row * (cell_px + gap)
    row_h = cell_px + cap_h + gap
    height_px = len(rows) * row_h + 10
    fig = plt.figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    for r, (label, imgs, caps) in enumerate(rows):
        top = height_px - 5 - r * row_h
        fig.text(
            6 / width_px,
            (top - cap_h - cell_px / 2) / height_px,
            label,
            ha="left",
            va="center",
            fontsize=7.5,
        )
        for c, (img, cap) in enumerate(zip(imgs, caps, strict=True)):
            left = label_w + c * (cell_px + gap)
            ax = fig.add_axes(
                (
                    left / width_px,
                    (top - cap_h - cell_px) / height_px,
                    cell_px / width_px,
                    cell_px / height_px,
                )
            )
            ax.imshow(img, interpolation="nearest")
            ax.set_axis_off()
            if cap:
                fig.text(
                    (left + cell_px / 2) / width_px,
                    (top - cap_h + 2) / height_px,
                    cap,
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                )
    return fig


def _save_png(fig: Any, path: str | os.PathLike) -> Path:
    """Close ``fig`` and write it as a 256-colour PNG (atomically), without a Software tag."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        pal = im.convert("RGB").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG
        )
    out = Path(os.fspath(path))
    with atomic_path(out) as tmp:
        pal.save(tmp, format="PNG", optimize=True)
    return out

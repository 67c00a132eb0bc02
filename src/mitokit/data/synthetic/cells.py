"""The known truth of a synthetic scene: one row per cell, as numpy columns.

Every cell has a latent mitosis score ``m`` in [0, 1] that drives how it looks (chromatin density
and darkness, irregularity and elongation, separation of the chromatin masses, edge sharpness,
granularity). Imposters (apoptotic bodies, hyperchromatic non-dividing nuclei) have a low ``m``
but share some of the look. Labelling processes (``mitokit.data.synthetic.labelling``) see ``m``
only through noisy raters, as real labels see the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from mitokit.errors import input_error

# Cell kinds.
NORMAL = 0
MITOTIC = 1
APOPTOTIC = 2  # imposter: dark, round, smooth, shrunken, eosinophilic halo
HYPERCHROMATIC = 3  # imposter: large dark non-dividing nucleus with coarse texture
KIND_NAMES = {
    NORMAL: "normal",
    MITOTIC: "mitotic",
    APOPTOTIC: "apoptotic",
    HYPERCHROMATIC: "hyperchromatic",
}

# Phases of mitotic cells (interphase for every other kind).
INTERPHASE = 0
PROPHASE = 1
METAPHASE = 2
ANAPHASE = 3
TELOPHASE = 4
PHASE_NAMES = {
    INTERPHASE: "interphase",
    PROPHASE: "prophase",
    METAPHASE: "metaphase",
    ANAPHASE: "anaphase",
    TELOPHASE: "telophase",
}
MITOTIC_PHASES = (PROPHASE, METAPHASE, ANAPHASE, TELOPHASE)


def check_kind_phase(kind: int, phase: int) -> None:
    """Refuse an unknown cell kind, or a phase that does not go with the kind.

    Raises:
        MitokitError: The kind is unknown, a mitotic cell has no mitotic phase, or another
            kind's phase is not INTERPHASE.
    """
    if kind not in tuple(KIND_NAMES):
        raise input_error(None, f"unknown cell kind {kind!r}")
    if kind == MITOTIC and phase not in MITOTIC_PHASES:
        raise input_error(None, f"a mitotic cell needs a mitotic phase, got {phase!r}")
    if kind != MITOTIC and phase != INTERPHASE:
        raise input_error(None, f"a non-mitotic cell has phase INTERPHASE, got {phase!r}")


@dataclass
class CellTable:
    """Cells of a scene as parallel arrays (level-0 pixels; x = column, y = row).

    Attributes:
        id: Unique id per cell within the scene.
        x, y: Centre of the nucleus (of the two masses together for anaphase/telophase).
        kind: NORMAL, MITOTIC, APOPTOTIC or HYPERCHROMATIC.
        m: Latent mitosis score in [0, 1].
        phase: Mitotic phase (INTERPHASE for non-mitotic kinds).
        radius: Nuclear radius in pixels (before elongation).
        elongation: Ratio of long to short axis (>= 1).
        angle: Orientation of the long axis (radians).
        seed: Per-cell seed of its texture, so a cell looks the same in any tile it overlaps.
    """

    id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    m: np.ndarray
    phase: np.ndarray
    radius: np.ndarray
    elongation: np.ndarray
    angle: np.ndarray
    seed: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.id)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"column {f.name} has {len(getattr(self, f.name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.id)

    @classmethod
    def empty(cls) -> CellTable:
        """A table with no cells."""
        z = np.zeros(0)
        return cls(
            z.astype(np.int64),
            z,
            z.copy(),
            z.astype(np.int8),
            z.astype(np.float32),
            z.astype(np.int8),
            z.astype(np.float32),
            z.astype(np.float32),
            z.astype(np.float32),
            z.astype(np.uint32),
        )

    def subset(self, index) -> CellTable:
        """Rows selected by a boolean mask or an index array."""
        return CellTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, tables) -> CellTable:
        """Rows of several tables, in order."""
        tables = list(tables)
        if not tables:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)}
        )

    def extent(self) -> np.ndarray:
        """Half-size in pixels of the square that holds each cell's chromatin (all phases)."""
        r = self.radius.astype(np.float64) * np.sqrt(self.elongation.astype(np.float64))
        split = np.isin(self.phase, (ANAPHASE, TELOPHASE))
        return np.where(split, r * 2.2, r * 1.3)

    def boxes(self) -> np.ndarray:
        """(N, 4) boxes [x1, y1, x2, y2] around each cell's chromatin."""
        h = self.extent()
        return np.stack([self.x - h, self.y - h, self.x + h, self.y + h], axis=1)

    def to_records(self) -> list[dict]:
        """JSON-friendly rows (for manifests)."""
        out = []
        for i in range(len(self)):
            out.append(
                {
                    "id": int(self.id[i]),
                    "x": round(float(self.x[i]), 2),
                    "y": round(float(self.y[i]), 2),
                    "kind": KIND_NAMES[int(self.kind[i])],
                    "m": round(float(self.m[i]), 4),
                    "phase": PHASE_NAMES[int(self.phase[i])],
                    "radius": round(float(self.radius[i]), 2),
                }
            )
        return out

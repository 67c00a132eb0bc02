"""Synthetic datasets with known truth: cell patches, tiles, and whole slides.

Public API:

- :func:`generate_patches`: ``n`` cell patches (64 x 64 by default), one cell of a chosen kind
  at the centre of each, with its neighbours, as a :class:`PatchBatch` (images, the centre cells'
  :class:`~mitokit.data.synthetic.cells.CellTable` with ``x = y = size / 2``, the stains).
- :func:`generate_tiles`: an iterator of :class:`SyntheticTile` (1000 x 1000 by default): the
  image, the cells centred in it (tile coordinates), points and boxes, the stain.
- :class:`SyntheticSlide`: a whole slide rendered on demand: ``read(x, y, w, h)`` gives any
  level-0 block; :attr:`SyntheticSlide.cells` the full truth. Cells are sampled per fixed
  1024-pixel block from a block-seeded generator, so the truth and the pixels do not depend on
  the order in which blocks are read. A low-frequency tissue field leaves ~30 % of the slide as
  glass, as tissue islands on a real slide.
- :func:`write_synthetic_slide`: a pyramidal tiled TIFF of such a slide with its mpp, streamed
  tile by tile through :func:`mitokit.io.tiffwrite.write_pyramidal_tiff` with bounded memory;
  returns the slide's cells.

Every output is a pure function of its seed and arguments: the same seed gives the same arrays
and the same file bytes; different seeds give different data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mitokit.data.synthetic import _noise
from mitokit.data.synthetic.cells import (
    INTERPHASE,
    KIND_NAMES,
    MITOTIC,
    MITOTIC_PHASES,
    CellTable,
)
from mitokit.data.synthetic.limits import (
    MAX_SLIDE_SIDE,
    MAX_TILE_SIDE,
    MIN_SLIDE_SIDE,
    check_patches,
    check_side,
)
from mitokit.data.synthetic.region import _near, _region_od, render_region
from mitokit.data.synthetic.scene import (
    SceneParams,
    TissueField,
    sample_cells,
    sample_m,
)
from mitokit.data.synthetic.single_cell import cell_scene
from mitokit.data.synthetic.staining import _PAD, StainParams, _to_rgb
from mitokit.errors import input_error
from mitokit.io.tiffwrite import TileSource

__all__ = [
    "DEFAULT_PROPORTIONS",
    "KINDS",
    "PatchBatch",
    "SyntheticSlide",
    "SyntheticTile",
    "generate_patches",
    "generate_tiles",
    "write_synthetic_slide",
]

DEFAULT_PROPORTIONS: dict[str, float] = {
    "normal": 0.4,
    "mitotic": 0.4,
    "apoptotic": 0.1,
    "hyperchromatic": 0.1,
}
"""Share of each centre-cell kind in :func:`generate_patches` by default."""

KINDS = tuple(KIND_NAMES.values())
"""Cell-kind names accepted in ``proportions`` (for a CLI's choices and help text)."""

_KIND_BY_NAME = {name: k for k, name in KIND_NAMES.items()}


@dataclass
class PatchBatch:
    """Cell patches and their truth.

    Attributes:
        images: ``(n, size, size, 3)`` uint8 RGB.
        cells: The centre cell of each patch (row i for patch i), in patch coordinates
            (``x = y = size / 2``); ``m``, ``kind`` and ``phase`` are the truth.
        stains: The stain of each patch.
    """

    images: np.ndarray
    cells: CellTable
    stains: list[StainParams]

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class SyntheticTile:
    """One synthetic tile and its truth.

    Attributes:
        image: ``(size, size, 3)`` uint8 RGB.
        cells: The cells centred inside the tile, in tile coordinates.
        stain: The tile's stain.
        origin: Where the tile lies in its scene's global coordinates.
    """

    image: np.ndarray
    cells: CellTable
    stain: StainParams
    origin: tuple[int, int]

    @property
    def points(self) -> np.ndarray:
        """``(N, 2)`` cell centres ``(x, y)``."""
        return np.stack([self.cells.x, self.cells.y], axis=1)

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` boxes ``[x1, y1, x2, y2]`` around each cell's chromatin, clipped to the
        tile."""
        h, w = self.image.shape[:2]
        b = self.cells.boxes()
        return np.clip(b, 0, [w, h, w, h])


def _proportions(proportions: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    props = dict(DEFAULT_PROPORTIONS if proportions is None else proportions)
    unknown = set(props) - set(_KIND_BY_NAME)
    if unknown:
        raise input_error(
            None, f"unknown cell kinds {sorted(unknown)}; expected {sorted(_KIND_BY_NAME)}"
        )
    kinds = np.array([_KIND_BY_NAME[k] for k in props], np.int8)
    w = np.array([float(v) for v in props.values()])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise input_error(None, f"proportions must be non-negative and not all 0, got {props}")
    return kinds, w / w.sum()


def _check_count(n: int, name: str = "n") -> int:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise input_error(None, f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def generate_patches(
    n: int,
    *,
    seed: int,
    size: int = 64,
    params: SceneParams | None = None,
    proportions: Mapping[str, float] | None = None,
    neighbours: bool = True,
) -> PatchBatch:
    """Render ``n`` patches, each centred on one cell of known kind, phase and ``m``.

    Args:
        n: Number of patches.
        seed: Seed of the whole batch; patch i depends only on ``(seed, i)``.
        size: Patch width and height in pixels.
        params: Scene parameters (pixel size, m distribution per kind, phase frequencies).
        proportions: Share of each centre-cell kind by name (``normal``, ``mitotic``,
            ``apoptotic``, ``hyperchromatic``); default :data:`DEFAULT_PROPORTIONS`.
        neighbours: Draw ordinary neighbouring cells around the centre cell.

    Returns:
        The :class:`PatchBatch`.
    """
    n = _check_count(n)
    p = params or SceneParams()
    kinds, probs = _proportions(proportions)
    size = check_side(size, name="size", low=8, high=MAX_TILE_SIDE)
    check_patches(n, size)
    images = np.empty((n, size, size, 3), np.uint8)
    rows: list[CellTable] = []
    stains: list[StainParams] = []
    phase_w = np.asarray(p.phase_weights, np.float64)
    phase_w = phase_w / phase_w.sum()
    for i in range(n):
        rng = np.random.default_rng(_noise.mix_seed(seed, 0x9A7C, i))
        kind = int(rng.choice(kinds, p=probs))
        m = float(sample_m(kind, rng=rng, params=p)[0])
        phase = (
            int(rng.choice(np.asarray(MITOTIC_PHASES), p=phase_w))
            if kind == MITOTIC
            else INTERPHASE
        )
        cell_seed = int(rng.integers(0, 2**62))
        cells, box, tissue, stain = cell_scene(
            m, kind=kind, phase=phase, size=size, seed=cell_seed, neighbours=neighbours, params=p
        )
        images[i] = render_region(
            cells, box, stain=stain, seed=tissue.seed, params=p, tissue=tissue
        )
        centre = cells.subset([0])
        centre.x = centre.x - box[0]
        centre.y = centre.y - box[1]
        centre.id = np.array([i], np.int64)
        rows.append(centre)
        stains.append(stain)
    return PatchBatch(images=images, cells=CellTable.concat(rows), stains=stains)


def generate_tiles(
    n: int,
    *,
    seed: int,
    size: int = 1000,
    params: SceneParams | None = None,
) -> Iterator[SyntheticTile]:
    """Yield ``n`` synthetic tiles with their cells, each from its own place and stain.

    Args:
        n: Number of tiles.
        seed: Seed of the set; tile i depends only on ``(seed, i)``.
        size: Tile width and height in pixels.
        params: Scene parameters.

    Yields:
        :class:`SyntheticTile` in order.
    """
    n = _check_count(n)
    p = params or SceneParams()
    size = check_side(size, name="size", low=16, high=MAX_TILE_SIDE)
    for i in range(n):
        rng = np.random.default_rng(_noise.mix_seed(seed, 0x711E, i))
        scene_seed = int(rng.integers(0, 2**62))
        tissue = TissueField(scene_seed, p)
        x0, y0 = (int(v) for v in rng.integers(0, 1_000_000, 2))
        stain = StainParams.sample(rng)
        margin = 4.0 * p.px(max(p.nucleus_radius_um)) * 1.3
        cells = sample_cells(
            (x0 - margin, y0 - margin, x0 + size + margin, y0 + size + margin),
            params=p,
            rng=rng,
            tissue=tissue,
        )
        box = (x0, y0, x0 + size, y0 + size)
        image = render_region(cells, box, stain=stain, seed=scene_seed, params=p, tissue=tissue)
        inside = cells.subset(
            (cells.x >= x0) & (cells.x < x0 + size) & (cells.y >= y0) & (cells.y < y0 + size)
        )
        inside.x = inside.x - x0
        inside.y = inside.y - y0
        inside.id = np.arange(len(inside), dtype=np.int64)
        yield SyntheticTile(image=image, cells=inside, stain=stain, origin=(x0, y0))


class SyntheticSlide:
    """A synthetic whole slide, rendered on demand.

    Args:
        size: Level-0 ``(width, height)`` in pixels.
        seed: The slide seed.
        params: Scene parameters (``params.mpp`` is the slide's mpp).
        stain: The slide's stain; default drawn from ``seed``.
        block_size: Cells are sampled per block of this many pixels (each from its own seed).

    Attributes:
        dimensions: ``(width, height)``.
        mpp: Microns per pixel at level 0.
        cells: Every cell of the slide (level-0 coordinates), ids 0..N-1 in block order.
        tissue: The slide's layout (tissue islands, nests, fibres).
        stain: The slide's stain.
    """

    def __init__(
        self,
        size: tuple[int, int] = (20000, 20000),
        *,
        seed: int,
        params: SceneParams | None = None,
        stain: StainParams | None = None,
        block_size: int = 1024,
    ) -> None:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise input_error(None, f"slide size must be (width, height), got {size!r}") from None
        w = check_side(w, name="slide size (width)", low=MIN_SLIDE_SIDE, high=MAX_SLIDE_SIDE)
        h = check_side(h, name="slide size (height)", low=MIN_SLIDE_SIDE, high=MAX_SLIDE_SIDE)
        if not isinstance(block_size, int) or block_size < 64:
            raise input_error(None, f"block_size must be an integer >= 64, got {block_size!r}")
        self.dimensions = (w, h)
        self.seed = int(seed)
        self.params = params or SceneParams()
        self.mpp = self.params.mpp
        self.block_size = block_size
        self.tissue = TissueField(self.seed, self.params, slide_size=(w, h))
        self.stain = stain or StainParams.sample(
            np.random.default_rng(_noise.mix_seed(self.seed, 0x57A1))
        )
        self._nbx = math.ceil(w / block_size)
        self._nby = math.ceil(h / block_size)
        tables = []
        offset = 0
        for by in range(self._nby):
            for bx in range(self._nbx):
                t = self._sample_block(bx, by, offset)
                offset += len(t)
                tables.append(t)
        self.cells = CellTable.concat(tables)
        counts = np.array([len(t) for t in tables], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        if len(self.cells):
            r = self.cells.radius.astype(np.float64)
            e = np.sqrt(np.maximum(self.cells.elongation, 1.0))
            self._reach = int(math.ceil(float((r * (e * 1.2 + 3.7) + 12.0).max())))
        else:
            self._reach = 0

    def _sample_block(self, bx: int, by: int, offset: int) -> CellTable:
        b = self.block_size
        w, h = self.dimensions
        box = (bx * b, by * b, min((bx + 1) * b, w), min((by + 1) * b, h))
        rng = np.random.default_rng(_noise.mix_seed(self.seed, 0xB10C, bx, by))
        return sample_cells(box, params=self.params, rng=rng, id_offset=offset, tissue=self.tissue)

    def _cells_near(self, x0: int, y0: int, x1: int, y1: int) -> CellTable:
        b, reach = self.block_size, self._reach
        bx0, bx1 = max((x0 - reach) // b, 0), min((x1 + reach) // b, self._nbx - 1)
        by0, by1 = max((y0 - reach) // b, 0), min((y1 + reach) // b, self._nby - 1)
        idx = [
            np.arange(self._starts[k], self._starts[k + 1])
            for by in range(by0, by1 + 1)
            for k in range(by * self._nbx + bx0, by * self._nbx + bx1 + 1)
        ]
        if not idx:
            return CellTable.empty()
        sub = self.cells.subset(np.concatenate(idx))
        return sub.subset(_near(sub, x0, y0, x1, y1))

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The ``(h, w, 3)`` uint8 RGB level-0 block at ``(x, y)`` (any place, even outside)."""
        x, y, w, h = int(x), int(y), int(w), int(h)
        if w < 1 or h < 1:
            raise input_error(None, f"empty read size {w} x {h}")
        x0, y0 = x - _PAD, y - _PAD
        W, H = w + 2 * _PAD, h + 2 * _PAD
        cells = self._cells_near(x0, y0, x0 + W, y0 + H)
        od = _region_od(cells, x0, y0, W, H, seed=self.seed, params=self.params, tissue=self.tissue)
        return _to_rgb(od, self.stain, self.seed, x, y, w, h)

    def tile_source(
        self, *, workers: int = 2, progress: Callable[[int, int], None] | None = None
    ) -> TileSource:
        """A :class:`mitokit.io.tiffwrite.TileSource` that renders the slide tile by tile.

        Reads are answered from rows of tiles rendered ahead by ``workers`` threads (numpy
        releases the GIL), so rendering overlaps with compression. Only a couple of tile rows
        are held at a time.
        """
        return TileSource(size=self.dimensions, read=_Prefetcher(self, workers, progress))


class _Prefetcher:
    """Serve row-major tile reads, rendering the next tiles in a thread pool."""

    def __init__(
        self,
        slide: SyntheticSlide,
        workers: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.slide = slide
        self.workers = max(int(workers), 1)
        self.progress = progress
        self.pending: dict[tuple[int, int, int, int], object] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.done = 0
        self.tile: tuple[int, int] | None = None

    def _submit(self, key: tuple[int, int, int, int]) -> None:
        if key not in self.pending and self.pool is not None:
            self.pending[key] = self.pool.submit(self.slide.read, *key)

    def __call__(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        W, H = self.slide.dimensions
        if self.tile is None:
            self.tile = (w, h)
            self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        tw, th = self.tile
        key = (x, y, w, h)
        # keep the next few tiles (row-major) in flight
        nx = x
        ny = y
        for _ in range(2 * self.workers):
            nx += tw
            if nx >= W:
                nx, ny = 0, ny + th
            if ny >= H:
                break
            self._submit((nx, ny, min(tw, W - nx), min(th, H - ny)))
        future = self.pending.pop(key, None)
        tile = future.result() if future is not None else self.slide.read(x, y, w, h)  # type: ignore[attr-defined]
        self.done += 1
        total = math.ceil(W / tw) * math.ceil(H / th)
        if self.progress is not None:
            self.progress(self.done, total)
        if self.done >= total:
            self.close()
        return tile

    def close(self) -> None:
        """Stop the rendering threads (after the last tile, or when writing failed)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.pending.clear()


def write_synthetic_slide(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] = (20000, 20000),
    seed: int,
    mpp: float = 0.25,
    tile_size: int = 512,
    params: SceneParams | None = None,
    stain: StainParams | None = None,
    compression: str = "jpeg",
    quality: int = 90,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> CellTable:
    """Write a synthetic whole slide as a pyramidal tiled TIFF with its mpp, and return its cells.

    Args:
        path: Output file (``.tif``/``.tiff``), written atomically.
        size: Level-0 ``(width, height)`` in pixels.
        seed: The slide seed; the same seed gives the same bytes.
        mpp: Microns per pixel at level 0 (overrides ``params.mpp``).
        tile_size: TIFF tile size, a multiple of 16.
        params: Scene parameters.
        stain: The slide's stain; default drawn from ``seed``.
        compression: ``"jpeg"`` (default, as scanners), ``"deflate"`` or ``"none"``.
        quality: JPEG quality.
        workers: Rendering threads.
        progress: Called as ``progress(tiles_done, tiles_total)`` after each level-0 tile.

    Returns:
        The slide's cells in level-0 coordinates.

    Raises:
        MitokitError: An argument is invalid.
    """
    from mitokit.errors import positive_float
    from mitokit.io.tiffwrite import write_pyramidal_tiff

    path = Path(os.fspath(path))
    mpp = positive_float(path, mpp, "mpp")
    p = replace(params or SceneParams(), mpp=mpp)
    slide = SyntheticSlide(size, seed=seed, params=p, stain=stain)
    source = slide.tile_source(workers=workers, progress=progress)
    try:
        write_pyramidal_tiff(
            path, source, mpp=mpp, tile_size=tile_size, compression=compression, quality=quality
        )
    finally:
        source.read.close()  # type: ignore[attr-defined]
    return slide.cells

"""Tiles of a slide at a model's resolution, read by background threads, and their merging.

The pieces :class:`mitokit.engines.slide.SlidePredictor` is built from:

- :func:`read_geometry`: which pyramid level to read and how many of its pixels make one model
  tile, so that the model sees the slide at its own microns per pixel (resized where no level
  matches);
- :func:`plan_tiles`: a regular grid of overlapping tiles covering the slide exactly (the last
  row and column moved back to the edge), only the tiles touching tissue, and each tile's *core*:
  the part of the tile closer to its centre than to a neighbour's (the half-overlap rule). The
  cores of a grid partition the slide, so a point kept only inside the core of the tile that
  found it is counted once even where tiles overlap;
- :func:`stream_batches`: reader threads, each with its own handle on the slide, fill a fixed
  pool of batch buffers; the consumer gets whole batches and hands each buffer back. Memory is
  the pool (``buffers x batch x tile x tile x 3`` bytes) whatever the size of the slide;
- :func:`merge_points`: greedy non-maximum suppression of points found by *different* tiles
  within a radius, the safety net behind the core rule (a figure cut by a border may be placed
  a pixel apart by the two tiles, each inside its own core).
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitokit.data.tiling import tile_grid
from mitokit.data.tissue import TissueMask, tissue_fraction
from mitokit.errors import input_error

RESIZE_TOLERANCE = 0.01
"""A level whose scale is within 1 % of the model's is read without resizing."""


@dataclass(frozen=True)
class ReadGeometry:
    """How model tiles are read from a slide.

    Attributes:
        level: Pyramid level read.
        level_downsample: Downsample of that level relative to level 0.
        read_size: Side, in pixels of ``level``, of the region read for one tile.
        tile_size: Side in pixels of the tile handed to the model (``read_size`` resized).
        scale: Level-0 pixels per model pixel (``read_size * level_downsample / tile_size``).
    """

    level: int
    level_downsample: float
    read_size: int
    tile_size: int
    scale: float

    @property
    def footprint(self) -> float:
        """Side of one tile in level-0 pixels."""
        return self.tile_size * self.scale

    @property
    def resize(self) -> bool:
        """Whether the region read must be resized to the model's tile."""
        return self.read_size != self.tile_size


def read_geometry(
    slide: Any, *, tile_size: int, model_mpp: float | None, slide_mpp: float
) -> ReadGeometry:
    """The level and region size that show ``slide`` to a model at the model's resolution.

    Without a model mpp the slide is read at level 0 as it is. Otherwise the wanted downsample is
    ``model_mpp / slide_mpp``: the most reduced level not coarser than that is read, and the
    region resized to ``tile_size`` unless the level is within :data:`RESIZE_TOLERANCE` of it (a
    model finer than the slide reads level 0 and enlarges).

    Args:
        slide: An open slide (``level_downsamples``, ``get_best_level_for_downsample``).
        tile_size: The model's tile side in pixels.
        model_mpp: Microns per pixel the model was trained at, or None.
        slide_mpp: Microns per pixel of the slide's level 0.
    """
    want = 1.0 if model_mpp is None else float(model_mpp) / float(slide_mpp)
    level = int(slide.get_best_level_for_downsample(want)) if want >= 1.0 else 0
    lds = float(slide.level_downsamples[level])
    ratio = want / lds
    read = tile_size if abs(ratio - 1.0) <= RESIZE_TOLERANCE else max(1, round(tile_size * ratio))
    return ReadGeometry(level, lds, int(read), int(tile_size), read * lds / tile_size)


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one slide to read, with their cores.

    Attributes:
        geometry: How each tile is read.
        xs: Level-0 left edges of the grid's columns (int64).
        ys: Level-0 top edges of the grid's rows (int64).
        ix: Column index of each planned tile.
        iy: Row index of each planned tile.
        cores: ``(T, 4)`` float64 level-0 core boxes ``[x1, y1, x2, y2)`` (infinite where the
            tile has no read neighbour on that side).
        grid_shape: ``(rows, columns)`` of the full grid.
    """

    geometry: ReadGeometry
    xs: np.ndarray
    ys: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    cores: np.ndarray
    grid_shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.ix)

    @property
    def origins(self) -> np.ndarray:
        """``(T, 2)`` int64 level-0 top-left corners of the planned tiles."""
        return np.stack([self.xs[self.ix], self.ys[self.iy]], axis=1)

    @property
    def boxes(self) -> np.ndarray:
        """``(T, 4)`` float64 level-0 boxes of the planned tiles."""
        o = self.origins.astype(np.float64)
        f = self.geometry.footprint
        return np.concatenate([o, o + f], axis=1)


def plan_tiles(
    size_wh: tuple[int, int],
    geometry: ReadGeometry,
    *,
    overlap: int,
    mask: TissueMask | None,
    min_tissue: float = 0.0,
) -> TilePlan:
    """Overlapping tiles over a slide, only those on tissue, with their cores.

    Args:
        size_wh: Level-0 ``(width, height)`` of the slide.
        geometry: From :func:`read_geometry`.
        overlap: Overlap of neighbouring tiles in model pixels (``0 <= overlap < tile_size``).
        mask: Tissue mask; None plans every tile.
        min_tissue: Keep tiles whose tissue fraction is above this (0: any tile touching
            tissue).

    Raises:
        MitokitError: An overlap outside ``[0, tile_size)``.
    """
    t = geometry.tile_size
    if not (isinstance(overlap, int | np.integer) and 0 <= overlap < t):
        raise input_error(None, f"tile overlap must be in [0, {t}) model pixels, got {overlap!r}")
    w0, h0 = (int(v) for v in size_wh)
    scale = geometry.scale
    model_size = (max(1, math.ceil(w0 / scale - 1e-9)), max(1, math.ceil(h0 / scale - 1e-9)))
    grid = tile_grid(model_size, tile=t, stride=t - int(overlap), include_partial="shift")
    xs = np.round(np.unique(grid[:, 0]) * scale).astype(np.int64)
    ys = np.round(np.unique(grid[:, 1]) * scale).astype(np.int64)
    gy, gx = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    ix, iy = gx.ravel(), gy.ravel()
    foot = geometry.footprint
    if mask is not None:
        keep = _touching(mask, xs[ix], ys[iy], foot)
        if min_tissue > 0:
            idx = np.flatnonzero(keep)
            for k in idx:
                box = (xs[ix[k]], ys[iy[k]], xs[ix[k]] + foot, ys[iy[k]] + foot)
                keep[k] = tissue_fraction(mask.mask, box, mask.downsample) > min_tissue
        ix, iy = ix[keep], iy[keep]
    read = np.zeros((len(ys), len(xs)), dtype=bool)
    read[iy, ix] = True
    cores = _cores(xs, ys, ix, iy, foot, read)
    return TilePlan(geometry, xs, ys, ix, iy, cores, (len(ys), len(xs)))


def _touching(mask: TissueMask, x: np.ndarray, y: np.ndarray, foot: float) -> np.ndarray:
    """Whether each level-0 box ``(x, y, x + foot, y + foot)`` touches a tissue mask pixel."""
    m = mask.mask
    dx, dy = mask.downsample
    h, w = m.shape
    s = np.zeros((h + 1, w + 1), dtype=np.int64)
    s[1:, 1:] = m.astype(np.int64).cumsum(0).cumsum(1)
    i0 = np.clip(np.floor(x / dx), 0, w).astype(np.int64)
    i1 = np.clip(np.ceil((x + foot) / dx), 0, w).astype(np.int64)
    j0 = np.clip(np.floor(y / dy), 0, h).astype(np.int64)
    j1 = np.clip(np.ceil((y + foot) / dy), 0, h).astype(np.int64)
    return (s[j1, i1] - s[j0, i1] - s[j1, i0] + s[j0, i0]) > 0


def _cores(
    xs: np.ndarray,
    ys: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    foot: float,
    read: np.ndarray,
) -> np.ndarray:
    """Core boxes: each side halfway into the overlap with a read neighbour, else open."""

    def bounds(pos: np.ndarray) -> np.ndarray:
        # boundary k lies between tile k and tile k + 1: the middle of their overlap
        return (pos[1:].astype(np.float64) + pos[:-1] + foot) / 2.0

    bx, by = bounds(xs), bounds(ys)
    nrows, ncols = read.shape
    inf = np.inf
    cores = np.empty((len(ix), 4), dtype=np.float64)
    left = (ix > 0) & read[iy, np.maximum(ix - 1, 0)]
    right = (ix < ncols - 1) & read[iy, np.minimum(ix + 1, ncols - 1)]
    top = (iy > 0) & read[np.maximum(iy - 1, 0), ix]
    bottom = (iy < nrows - 1) & read[np.minimum(iy + 1, nrows - 1), ix]
    cores[:, 0] = np.where(left, bx[np.maximum(ix - 1, 0)] if len(bx) else -inf, -inf)
    cores[:, 2] = np.where(right, bx[np.minimum(ix, len(bx) - 1)] if len(bx) else inf, inf)
    cores[:, 1] = np.where(top, by[np.maximum(iy - 1, 0)] if len(by) else -inf, -inf)
    cores[:, 3] = np.where(bottom, by[np.minimum(iy, len(by) - 1)] if len(by) else inf, inf)
    return cores


# ------------------------------------------------------------------------------- streaming


@dataclass
class Batch:
    """A batch of tiles read into a pooled buffer.

    Attributes:
        tiles: Indices into the plan of the tiles held, in buffer order.
        pixels: The buffer's first ``len(tiles)`` tiles, ``(n, tile, tile, 3)`` uint8 RGB (a
            numpy view of a pinned tensor when streaming to CUDA).
        tensor: The same memory as a ``torch.uint8`` tensor.
    """

    tiles: np.ndarray
    pixels: np.ndarray
    tensor: Any
    _slot: int
    _free: queue.Queue

    def release(self) -> None:
        """Hand the buffer back to the readers (after its pixels have been copied away)."""
        if self._slot >= 0:
            self._free.put(self._slot)
            self._slot = -1


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def stream_batches(
    open_slide: Callable[[], Any],
    plan: TilePlan,
    *,
    batch_size: int,
    workers: int,
    buffers: int | None = None,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Read the planned tiles in background threads and yield them as batches.

    Each reader opens its own handle with ``open_slide()`` (OpenSlide and tifffile release the
    GIL while decoding, so threads read in parallel), takes the next batch of tiles, waits for a
    free buffer of the pool, fills it and queues it. Batches come in the order they are finished,
    not in plan order. An error in a reader stops the others and is raised here. Call
    :meth:`Batch.release` on every batch once its pixels are no longer needed.

    Args:
        open_slide: Opens a new handle on the slide (closed by the reader when done).
        plan: The tiles.
        batch_size: Tiles per batch (the last batch may be smaller).
        workers: Reader threads (at least 1).
        buffers: Batch buffers in the pool; default ``2 * workers``.
        pin_memory: Allocate page-locked buffers (faster, asynchronous copies to CUDA).
    """
    n = len(plan)
    if n == 0:
        return
    workers = max(1, min(int(workers), math.ceil(n / batch_size)))
    n_buffers = max(2, int(buffers) if buffers else 2 * workers)
    pool = _Pool(plan, batch_size=batch_size, n_buffers=n_buffers, pin_memory=pin_memory)
    threads = [
        threading.Thread(
            target=pool.reader, args=(open_slide,), name=f"mitokit-reader-{i}", daemon=True
        )
        for i in range(workers)
    ]
    for th in threads:
        th.start()
    try:
        yield from pool.batches(workers)
    finally:
        pool.stop.set()
        for th in threads:
            th.join()


class _Pool:
    """The buffers of :func:`stream_batches` and the queues between its readers and consumer.

    Args:
        plan: The tiles.
        batch_size: Tiles per batch.
        n_buffers: Batch buffers in the pool.
        pin_memory: Allocate page-locked buffers.
    """

    def __init__(self, plan: TilePlan, *, batch_size: int, n_buffers: int, pin_memory: bool):
        import torch

        self.plan = plan
        self.batch_size = batch_size
        g = plan.geometry
        shape = (batch_size, g.tile_size, g.tile_size, 3)
        self.tensors = [
            torch.empty(shape, dtype=torch.uint8, pin_memory=pin_memory) for _ in range(n_buffers)
        ]
        self.arrays = [t.numpy() for t in self.tensors]
        self.free: queue.Queue = queue.Queue()
        for slot in range(n_buffers):
            self.free.put(slot)
        self.ready: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.counter = itertools.count()
        self.n_batches = math.ceil(len(plan) / batch_size)

    def take_slot(self) -> int | None:
        """A free buffer, waiting for one; None once the stream stops."""
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def reader(self, open_slide: Callable[[], Any]) -> None:
        """A reader thread: fill free buffers with the next batches until none is left."""
        slide = None
        try:
            slide = open_slide()
            while not self.stop.is_set():
                k = next(self.counter)
                if k >= self.n_batches:
                    break
                idx = np.arange(k * self.batch_size, min(len(self.plan), (k + 1) * self.batch_size))
                slot = self.take_slot()
                if slot is None:
                    break
                self.fill(slide, idx, slot)
                self.ready.put((idx, slot))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self.ready.put(_Failure(exc))
        finally:
            if slide is not None:
                slide.close()
            self.ready.put(_DONE)

    def fill(self, slide: Any, idx: np.ndarray, slot: int) -> None:
        """Read the tiles ``idx`` into buffer ``slot`` (stopping early when the stream does)."""
        buf, origins, g = self.arrays[slot], self.plan.origins, self.plan.geometry
        for j, t in enumerate(idx):
            if self.stop.is_set():
                break
            buf[j] = _read_tile(slide, origins[t], g)

    def batches(self, workers: int) -> Iterator[Batch]:
        """The filled batches, as they come, until every reader is done; a reader's error."""
        finished = 0
        while finished < workers:
            item = self.ready.get()
            if item is _DONE:
                finished += 1
                continue
            if isinstance(item, _Failure):
                raise item.exc
            idx, slot = item
            yield Batch(
                idx, self.arrays[slot][: len(idx)], self.tensors[slot][: len(idx)], slot, self.free
            )


def _read_tile(slide: Any, origin: np.ndarray, g: ReadGeometry) -> np.ndarray:
    """One model tile: the region at ``origin`` of ``g.level``, resized to the model's size."""
    region = slide.read_region((int(origin[0]), int(origin[1])), g.level, (g.read_size,) * 2)
    region = np.asarray(region)[:, :, :3]
    if not g.resize:
        return region
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(region))
    return np.asarray(image.resize((g.tile_size, g.tile_size), Image.Resampling.BILINEAR))


# ---------------------------------------------------------------------------------- merging


def in_core(points: np.ndarray, core: np.ndarray) -> np.ndarray:
    """Whether level-0 points ``(N, >=2)`` lie in a core box ``[x1, y1, x2, y2)``."""
    x, y = points[:, 0], points[:, 1]
    return (x >= core[0]) & (x < core[2]) & (y >= core[1]) & (y < core[3])


def merge_points(points: np.ndarray, tiles: np.ndarray, *, radius: float) -> np.ndarray:
    """Indices of the points kept after suppressing cross-tile duplicates.

    Greedy, highest score first: a kept point suppresses every point of *another* tile within
    ``radius`` (inclusive). Points of the same tile never suppress each other, so the model's
    own decisions inside a tile stand.

    Args:
        points: ``(N, 3)`` level-0 ``x, y, score``.
        tiles: ``(N,)`` the tile each point came from.
        radius: Merge radius in level-0 pixels (0 or less: no merging).

    Returns:
        Indices of the kept points, highest score first.
    """
    order = np.argsort(-points[:, 2], kind="stable")
    if len(points) < 2 or radius <= 0:
        return order
    from scipy.spatial import cKDTree

    pairs = cKDTree(points[:, :2]).query_pairs(radius, output_type="ndarray")
    pairs = pairs[tiles[pairs[:, 0]] != tiles[pairs[:, 1]]]
    if len(pairs) == 0:
        return order
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    suppressed = np.zeros(len(points), dtype=bool)
    kept = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        kept.append(i)
        for j in neighbours.get(i, ()):
            suppressed[j] = True
    return np.asarray(kept, dtype=np.int64)


__all__ = [
    "Batch",
    "ReadGeometry",
    "TilePlan",
    "in_core",
    "merge_points",
    "plan_tiles",
    "read_geometry",
    "stream_batches",
]

"""Samplers for training: events first, then tiles; class-balanced patch batches.

All randomness comes from a numpy Generator seeded with ``(seed, epoch)``: the same seed gives
the same draws, epoch after epoch, on any machine, and no global random state is touched. The
epoch counter moves on by one at each pass over a sampler; :meth:`set_epoch` sets it (as for
``torch.utils.data.DistributedSampler``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from mitokit.data.tiling import Tile, as_tiles, tile_boxes
from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.types import MITOSIS


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise input_error(None, f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_int(value: Any, minimum: int, message: str) -> int:
    """``value`` as an int when it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise input_error(None, f"{message}, got {value!r}")
    return int(value)


def _locate_events(
    tiles: Sequence[Tile], boxes: np.ndarray, events: list[Annotation], point_box_size: float
) -> tuple[list[np.ndarray], int, np.ndarray]:
    """Where the events are among the tiles (see :class:`EventTileSampler`).

    Returns:
        ``(event_tiles, dropped, negative)``: per event inside some tile, the indices of the
        tiles containing it (events in image order, then annotation order); the number of
        events inside no tile; and ``(len(tiles),)`` bool, the negative tiles.
    """
    tiles_of_image: dict[str, list[int]] = {}
    for t, tile in enumerate(tiles):
        tiles_of_image.setdefault(str(tile.image), []).append(t)
    events_of_image: dict[str, list[Annotation]] = {}
    for ann in events:
        events_of_image.setdefault(ann.image, []).append(ann)

    event_tiles: list[np.ndarray] = []
    dropped = 0
    negative = np.zeros(len(tiles), dtype=bool)
    for image_id, idx_list in tiles_of_image.items():
        idx = np.asarray(idx_list, dtype=np.int64)
        anns = events_of_image.get(image_id, [])
        if not anns:
            negative[idx] = True
            continue
        contains, touches = _tile_event_overlap(boxes[idx], anns, point_box_size)
        negative[idx] = ~(contains | touches).any(axis=1)
        for e in range(len(anns)):
            inside = idx[contains[:, e]]
            if len(inside):
                event_tiles.append(inside)
            else:
                dropped += 1
    dropped += sum(len(v) for k, v in events_of_image.items() if k not in tiles_of_image)
    return event_tiles, dropped, negative


def _tile_event_overlap(
    tb: np.ndarray, anns: list[Annotation], point_box_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(tiles, events)`` bool: the tile contains the event's centre (half-open); the tile and
    the event's box (or square around its point) overlap with positive area."""
    centers = np.array([a.center for a in anns], dtype=np.float64)
    ebox = np.array([a.box_or_square(point_box_size) for a in anns], dtype=np.float64)
    contains = (
        (tb[:, None, 0] <= centers[None, :, 0])
        & (centers[None, :, 0] < tb[:, None, 2])
        & (tb[:, None, 1] <= centers[None, :, 1])
        & (centers[None, :, 1] < tb[:, None, 3])
    )  # (tiles, events)
    ix = np.minimum(tb[:, None, 2], ebox[None, :, 2]) - np.maximum(tb[:, None, 0], ebox[None, :, 0])
    iy = np.minimum(tb[:, None, 3], ebox[None, :, 3]) - np.maximum(tb[:, None, 1], ebox[None, :, 1])
    touches = (ix > 0) & (iy > 0)
    return contains, touches


class EventTileSampler(Sampler[int]):
    """Draw a mitotic event uniformly, then one tile that contains it; plus negative tiles.

    This is the sampling of the crowd-label study: drawing the event first means an event that
    sits in a dense cluster (or in many overlapping tiles) is not drawn more often than a lone
    one. A tile *contains* an event when the event's centre (point, or box centre) lies in the
    tile's box, half-open ``[x1, x2) x [y1, y2)``; the tile is then drawn uniformly among those.
    A *negative* tile is one that no event box touches (positive-area overlap with the box, or
    the square of side ``point_box_size`` around a point) and that contains no event centre, so
    its tile score is exactly 0. Tiles that only clip an event box are neither.

    Each epoch has ``epoch_length`` draws, of which a share ``1 / (1 + negative_ratio)`` are
    positive (exact up to rounding, in a shuffled order): ``negative_ratio=0`` gives positive
    tiles only (the Reg and Det set-ups), ``2`` two negative draws per positive draw.

    Args:
        tiles: :class:`Tile` records with an image id, or ``(image_id, box)`` pairs.
        annotations: The events; objects of class ``label`` count.
        negative_ratio: Negative draws per positive draw, an integer >= 0 (0 to 10 in the
            study).
        epoch_length: Draws per epoch; defaults to ``n_events * (1 + negative_ratio)``.
        label: Class of the events.
        point_box_size: Side of the square around a point event when checking negatives.
        seed: Seed of the draws.

    Raises:
        MitokitError: No event inside any tile, no negative tile while negatives are asked for,
            or bad settings.

    Attributes:
        tiles: The tiles, as :class:`Tile` records.
        n_events: Events inside at least one tile (those in none are left out).
        n_dropped_events: Events of class ``label`` inside no tile.
        negative_tiles: Indices of the negative tiles.
    """

    def __init__(
        self,
        tiles: Iterable[Tile | tuple[str, Sequence[float]]],
        annotations: AnnotationSet | Iterable[Annotation],
        *,
        negative_ratio: int = 0,
        epoch_length: int | None = None,
        label: str = MITOSIS,
        point_box_size: float = 50.0,
        seed: int = 0,
    ) -> None:
        self.negative_ratio = _check_int(
            negative_ratio, 0, "negative_ratio must be an integer >= 0"
        )
        self.seed = _check_seed(seed)
        self.tiles = as_tiles(tiles)
        boxes = tile_boxes(self.tiles)
        events = [a for a in annotations if a.label == label]
        event_tiles, dropped, negative = _locate_events(self.tiles, boxes, events, point_box_size)
        if not event_tiles:
            raise input_error(None, f"no {label} event lies inside any of the {len(boxes)} tiles")
        self.n_events = len(event_tiles)
        self.n_dropped_events = dropped
        self.negative_tiles = np.flatnonzero(negative)
        if self.negative_ratio > 0 and len(self.negative_tiles) == 0:
            raise input_error(None, f"every tile touches a {label} event: no negative tile to draw")
        self._counts = np.array([len(v) for v in event_tiles], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)
        self._flat = np.concatenate(event_tiles)
        if epoch_length is None:
            epoch_length = self.n_events * (1 + self.negative_ratio)
        self.epoch_length = _check_int(epoch_length, 1, "epoch_length must be a positive integer")
        self.epoch = 0

    def __len__(self) -> int:
        return self.epoch_length

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose draws the next pass gives."""
        self.epoch = int(epoch)

    def draws(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The draws of one epoch, without moving the epoch counter.

        Args:
            epoch: The epoch; the current one when None.

        Returns:
            ``(tiles, events)``: ``(L,)`` int64 tile indices and the index of the drawn event
            for each (numbered in the order events were found, -1 for a negative draw).
        """
        rng = _rng(self.seed, self.epoch if epoch is None else epoch)
        n = self.epoch_length
        block = np.zeros(1 + self.negative_ratio, dtype=bool)
        block[0] = True
        is_pos = rng.permutation(np.resize(block, n))
        n_pos = int(is_pos.sum())
        events = np.full(n, -1, dtype=np.int64)
        tiles = np.empty(n, dtype=np.int64)
        ev = rng.integers(0, self.n_events, size=n_pos)
        pick = np.floor(rng.random(n_pos) * self._counts[ev]).astype(np.int64)
        events[is_pos] = ev
        tiles[is_pos] = self._flat[self._offsets[ev] + pick]
        if n - n_pos:
            tiles[~is_pos] = self.negative_tiles[
                rng.integers(0, len(self.negative_tiles), size=n - n_pos)
            ]
        return tiles, events

    def __iter__(self) -> Iterator[int]:
        tiles, _ = self.draws()
        self.epoch += 1
        return iter(tiles.tolist())


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches with exactly as many positives as negatives (patch-classifier training).

    Each class is drawn without replacement from a reshuffled stream of its indices, so the
    larger class is seen once per epoch and the smaller one is cycled through repeatedly. Within
    a batch the order is shuffled.

    Args:
        labels: ``(N,)`` binary labels (0/1 or bool).
        batch_size: Even batch size; half of each batch is positive.
        seed: Seed of the draws.
        num_batches: Batches per epoch; defaults to enough for the larger class to be seen once,
            ``ceil(max(n_pos, n_neg) / (batch_size / 2))``.

    Raises:
        MitokitError: Labels that are not 0/1, an odd or non-positive batch size, or an empty
            class (``"class 1 has no samples"``).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        *,
        num_batches: int | None = None,
    ) -> None:
        y = np.asarray(labels).reshape(-1)
        if y.dtype == bool:
            y = y.astype(np.int64)
        if y.size and not np.isin(y, (0, 1)).all():
            raise input_error(None, "labels must be 0 or 1 (binarise soft labels first)")
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, numbers.Integral)
            or batch_size < 2
            or batch_size % 2
        ):
            raise input_error(
                None, f"batch_size must be a positive even integer, got {batch_size!r}"
            )
        self.seed = _check_seed(seed)
        self.batch_size = int(batch_size)
        self.positives = np.flatnonzero(y == 1)
        self.negatives = np.flatnonzero(y == 0)
        for cls, idx in ((1, self.positives), (0, self.negatives)):
            if len(idx) == 0:
                raise MitokitError(f"class {cls} has no samples")
        half = self.batch_size // 2
        if num_batches is None:
            num_batches = math.ceil(max(len(self.positives), len(self.negatives)) / half)
        if (
            isinstance(num_batches, bool)
            or not isinstance(num_batches, numbers.Integral)
            or num_batches < 1
        ):
            raise input_error(None, f"num_batches must be a positive integer, got {num_batches!r}")
        self.num_batches = int(num_batches)
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose batches the next pass gives."""
        self.epoch = int(epoch)

    def batches(self, epoch: int | None = None) -> np.ndarray:
        """The ``(num_batches, batch_size)`` indices of one epoch, without moving the counter."""
        rng = _rng(self.seed, self.epoch if epoch is None else epoch)
        half = self.batch_size // 2
        need = self.num_batches * half
        pos = _stream(rng, self.positives, need).reshape(self.num_batches, half)
        neg = _stream(rng, self.negatives, need).reshape(self.num_batches, half)
        both = np.concatenate([pos, neg], axis=1)
        return rng.permuted(both, axis=1)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches.tolist())


def _stream(rng: np.random.Generator, idx: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices from back-to-back shuffles of ``idx``."""
    reps = math.ceil(n / len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(reps)])[:n]


def negatives_at_ratio(
    is_positive: Sequence[bool] | np.ndarray, ratio: float, *, seed: int = 0
) -> np.ndarray:
    """All positives plus ``round(ratio * n_pos)`` negatives drawn without replacement.

    When there are fewer negatives than asked for, all of them are taken.

    Args:
        is_positive: ``(N,)`` booleans (or 0/1).
        ratio: Negatives per positive, >= 0.
        seed: Seed of the draw.

    Returns:
        Sorted int64 indices of the kept samples.
    """
    pos_mask = np.asarray(is_positive).reshape(-1).astype(bool)
    if not (isinstance(ratio, numbers.Real) and math.isfinite(ratio) and ratio >= 0):
        raise input_error(None, f"ratio must be a non-negative number, got {ratio!r}")
    pos = np.flatnonzero(pos_mask)
    neg = np.flatnonzero(~pos_mask)
    k = min(len(neg), round(float(ratio) * len(pos)))
    chosen = np.random.default_rng(_check_seed(seed)).choice(neg, size=k, replace=False)
    return np.sort(np.concatenate([pos, chosen]).astype(np.int64))


__all__ = ["ClassBalancedBatchSampler", "EventTileSampler", "negatives_at_ratio"]

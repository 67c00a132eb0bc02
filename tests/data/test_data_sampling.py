"""Event-first tile sampling, class-balanced batches, negatives at a ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mitokit.data import ClassBalancedBatchSampler, EventTileSampler, negatives_at_ratio
from mitokit.data.tiling import Tile
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.types import NON_MITOSIS


def _scene():
    """Event A in one tile; event B in nine overlapping tiles; three negatives; one clipper."""
    tiles = [("img", [0, 0, 100, 100])]  # 0: contains A only
    for y in (510, 540, 570):
        for x in (510, 540, 570):
            tiles.append(("img", [x, y, x + 100, y + 100]))  # 1..9: contain B
    tiles += [("img", [x, 800, x + 100, 900]) for x in (0, 200, 400)]  # 10..12: negatives
    tiles.append(("img", [620, 620, 720, 720]))  # 13: clips B's box, B's centre outside
    anns = AnnotationSet(
        [
            Annotation("A", "img", point=(50, 50)),
            Annotation("B", "img", box=(575, 575, 625, 625)),
            Annotation("C", "img", point=(150, 850), label=NON_MITOSIS),  # an imposter
            Annotation("D", "elsewhere", point=(1, 1)),  # on an image without tiles
        ]
    )
    return tiles, anns


def test_events_are_drawn_uniformly_not_tiles():
    tiles, anns = _scene()
    sampler = EventTileSampler(tiles, anns, epoch_length=10_000, seed=3)
    assert sampler.n_events == 2 and sampler.n_dropped_events == 1
    assert sampler.negative_tiles.tolist() == [10, 11, 12]
    drawn = np.array(list(sampler))
    assert len(drawn) == 10_000
    share_a = (drawn == 0).mean()
    assert abs(share_a - 0.5) < 0.02  # 4 standard deviations of a fair coin over 10k draws
    counts_b = np.bincount(drawn, minlength=14)[1:10]
    assert (counts_b > 0).all() and abs(counts_b.mean() / 10_000 - 0.5 / 9) < 0.005
    assert not np.isin(drawn, [10, 11, 12, 13]).any()


def test_negative_ratio_two():
    tiles, anns = _scene()
    sampler = EventTileSampler(tiles, anns, negative_ratio=2, epoch_length=9000, seed=0)
    tile_idx, events = sampler.draws()
    assert (events == -1).sum() == 6000 and (events >= 0).sum() == 3000
    assert np.isin(tile_idx[events == -1], [10, 11, 12]).all()
    assert np.isin(tile_idx[events >= 0], range(10)).all()
    assert 13 not in tile_idx  # clips an event box: neither positive nor negative
    assert len(EventTileSampler(tiles, anns, negative_ratio=2)) == 2 * 3


def test_sampler_is_deterministic_per_seed_and_epoch():
    tiles, anns = _scene()

    def make(seed):
        return EventTileSampler(tiles, anns, negative_ratio=1, epoch_length=50, seed=seed)

    a, b = make(7), make(7)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    second_a = list(a)
    assert second_a != first_a  # the epoch moved on
    a.set_epoch(0)
    assert list(a) == first_a
    assert list(make(8)) != first_a


def test_sampler_errors():
    tiles, anns = _scene()
    with pytest.raises(MitokitError, match="no mitosis event lies inside any"):
        EventTileSampler(tiles[10:13], anns)
    with pytest.raises(MitokitError, match="no negative tile"):
        EventTileSampler(tiles[:10], anns, negative_ratio=1)
    for bad in (-1, 1.5, True):
        with pytest.raises(MitokitError, match="negative_ratio"):
            EventTileSampler(tiles, anns, negative_ratio=bad)
    with pytest.raises(MitokitError, match="epoch_length"):
        EventTileSampler(tiles, anns, epoch_length=0)


def test_sampler_accepts_tile_records():
    tiles = [Tile(0, 0, 100, 100, image="s"), Tile(100, 0, 100, 100, image="s")]
    anns = [Annotation("x", "s", point=(150, 50))]
    assert set(EventTileSampler(tiles, anns, epoch_length=20)) == {1}


def test_class_balanced_batches_are_half_positive():
    labels = np.array([1] * 10 + [0] * 90)
    sampler = ClassBalancedBatchSampler(labels, 8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 23  # ceil(90 / 4)
    for batch in batches:
        assert len(batch) == 8 and labels[batch].sum() == 4
    seen = np.concatenate(batches)
    assert set(np.flatnonzero(labels == 0)) <= set(seen.tolist())  # every negative once
    again = ClassBalancedBatchSampler(labels, 8, 1)
    assert list(again) == batches
    assert list(sampler) != batches  # next epoch


def test_class_balanced_sampler_in_a_dataloader():
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])
    loader = DataLoader(
        TensorDataset(labels),
        batch_sampler=ClassBalancedBatchSampler(labels.numpy(), 4, 0, num_batches=5),
    )
    sums = [int(batch[0].sum()) for batch in loader]
    assert sums == [2] * 5


def test_class_balanced_errors():
    with pytest.raises(MitokitError, match="^class 1 has no samples$"):
        ClassBalancedBatchSampler([0, 0, 0], 2)
    with pytest.raises(MitokitError, match="^class 0 has no samples$"):
        ClassBalancedBatchSampler([True, True], 2)
    with pytest.raises(MitokitError, match="even"):
        ClassBalancedBatchSampler([0, 1], 3)
    with pytest.raises(MitokitError, match="0 or 1"):
        ClassBalancedBatchSampler([0, 0.5, 1], 2)


def test_negatives_at_ratio():
    is_pos = np.zeros(105, dtype=bool)
    is_pos[[3, 50, 51, 70, 104]] = True
    kept = negatives_at_ratio(is_pos, 2, seed=4)
    assert len(kept) == 15 and is_pos[kept].sum() == 5
    assert np.array_equal(kept, np.sort(kept))
    assert np.array_equal(kept, negatives_at_ratio(is_pos, 2, seed=4))
    assert len(negatives_at_ratio(is_pos, 0)) == 5
    assert len(negatives_at_ratio(is_pos, 1000)) == 105
    with pytest.raises(MitokitError, match="ratio"):
        negatives_at_ratio(is_pos, -1)

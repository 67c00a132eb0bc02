"""The DataLoaders of a training run (:mod:`mitokit.engines.train`), and the checks on its data.

The training loader draws through the task's sampler (or a shuffling one; split across ranks
under ``torchrun``), counts the items it hands out per epoch, and seeds its workers from the
loader's generator, which the engine reseeds every epoch; both loaders deliver their batches on
the run's device (channels-last where asked).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from mitokit.engines.distributed import DistContext, ShardedSampler
from mitokit.engines.seeding import _seed_worker
from mitokit.engines.task import Task, TaskData
from mitokit.errors import input_error


@dataclass
class _Loaders:
    """A run's loaders: training (with its sampler and item counter) and validation.

    Attributes:
        train: The training loader, on the run's device.
        sampler: The sampler to ``set_epoch`` on.
        counter: Counts the items handed out in an epoch.
        val: The validation loader (None without validation data).
        val_generator: Its generator, reseeded before each evaluation.
    """

    train: Any
    sampler: Any
    counter: _Counting
    val: Any = None
    val_generator: torch.Generator | None = None

    @classmethod
    def build(
        cls,
        data: TaskData,
        ctx: DistContext,
        device: torch.device,
        *,
        batch_size: int,
        num_workers: int,
        seed: int,
        generator: torch.Generator,
        channels_last: bool,
    ) -> _Loaders:
        """Both loaders; ``generator`` drives the training loader's shuffling and workers."""

        def common(gen: torch.Generator) -> dict[str, Any]:
            return _loader_kwargs(
                data, num_workers=num_workers, device=device, rank=ctx.rank, generator=gen
            )

        loader, sampler, counter = _train_loader(
            data,
            ctx,
            batch_size=batch_size,
            seed=seed,
            generator=generator,
            common=common(generator),
        )
        loaders = cls(_on_device(loader, device, channels_last), sampler, counter)
        if data.val is not None:
            loaders.val_generator = torch.Generator()
            val = _val_loader(data, batch_size=batch_size, common=common(loaders.val_generator))
            loaders.val = _on_device(val, device, channels_last)
        return loaders


def _train_loader(
    data: TaskData,
    ctx: DistContext,
    *,
    batch_size: int,
    seed: int,
    generator: torch.Generator,
    common: dict[str, Any],
) -> tuple[DataLoader, Any, _Counting]:
    """The training loader, the sampler to ``set_epoch`` on, and the item counter."""
    bs = int(batch_size)
    if data.train_sampler is None:
        if data.batch_sampler:
            raise ValueError("TaskData.batch_sampler is set but train_sampler is None")
        if ctx.enabled:
            sampler: Any = DistributedSampler(
                data.train,
                num_replicas=ctx.world_size,
                rank=ctx.rank,
                shuffle=True,
                seed=seed,
            )
        else:
            sampler = RandomSampler(data.train, generator=generator)
    else:
        sampler = data.train_sampler
        if ctx.enabled:
            sampler = ShardedSampler(sampler, num_replicas=ctx.world_size, rank=ctx.rank)
    counter = _Counting(sampler, batches=data.batch_sampler)
    if data.batch_sampler:
        loader = DataLoader(data.train, batch_sampler=counter, **common)
    else:
        # A last batch of one item cannot train batch normalisation: drop it (only then).
        loader = DataLoader(
            data.train,
            batch_size=bs,
            sampler=counter,
            drop_last=len(counter) % bs == 1 and len(counter) > 1,
            **common,
        )
    return loader, sampler, counter


def _val_loader(data: TaskData, *, batch_size: int, common: dict[str, Any]) -> DataLoader | None:
    """The validation loader, in order (None without validation data)."""
    if data.val is None:
        return None
    return DataLoader(data.val, batch_size=int(batch_size), shuffle=False, **common)


def _loader_kwargs(
    data: TaskData,
    *,
    num_workers: int,
    device: torch.device,
    rank: int,
    generator: torch.Generator,
) -> dict[str, Any]:
    """What both loaders share: workers, collate, pinning, worker seeding, generator."""
    return {
        "num_workers": int(num_workers),
        "collate_fn": data.collate,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": partial(_seed_worker, rank=rank),
        "generator": generator,
    }


def _on_device(loader: DataLoader, device: torch.device, channels_last: bool) -> Any:
    """``loader``, delivering on ``device`` where that is not the CPU (or channels-last)."""
    if device.type == "cuda" or channels_last:
        return _DeviceLoader(loader, device, channels_last)
    return loader


class _Counting(Sampler):
    """A sampler (or batch sampler) that counts the items it hands out this epoch."""

    def __init__(self, sampler: Any, *, batches: bool) -> None:
        self.sampler = sampler
        self.batches = batches
        self.count = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        for item in self.sampler:
            self.count += len(item) if self.batches else 1
            yield item


class _DeviceLoader:
    """A DataLoader whose batches arrive on ``device`` (4D float tensors channels_last)."""

    def __init__(self, loader: DataLoader, device: torch.device, channels_last: bool) -> None:
        self.loader = loader
        self.device = device
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size ... of the loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield _to_device(batch, self.device, self.channels_last)


def _to_device(obj: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.ndim == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device, channels_last) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to_device(v, device, channels_last) for v in obj)
    return obj


def _check_data(task: Task, data: Any) -> TaskData:
    if not isinstance(data, TaskData):
        raise TypeError(f"task {task.name!r}: build_data must return TaskData")
    if data.info.get("error"):
        raise input_error(None, f"task {task.name!r}: {data.info['error']}")
    if _size(data.train) == 0:
        raise input_error(
            None, f"task {task.name!r}: the training set is empty; check the data section"
        )
    if data.val is not None and _size(data.val) == 0:
        warnings.warn(
            f"task {task.name!r}: the validation set is empty; the last epoch is kept",
            stacklevel=3,
        )
        data.val = None
    return data


def _size(dataset: Any) -> int | None:
    if dataset is None:
        return None
    try:
        return len(dataset)
    except TypeError:
        return None

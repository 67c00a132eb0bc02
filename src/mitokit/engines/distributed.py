"""Data-parallel training through PyTorch DDP, for processes started by ``torchrun``.

One machine, two processes (CPU, gloo backend) or eight GPUs (NCCL)::

    torchrun --nproc_per_node 2 -m mitokit train cfg.yaml
    torchrun --nproc_per_node 8 -m mitokit train cfg.yaml

Several machines: run the same command on each node, torchrun does the rendezvous::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint host:port -m mitokit train cfg.yaml

The engine reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` from the environment torchrun sets;
without them it trains in one process. Choices made here:

- ``train.batch_size`` is per process: the effective batch is ``batch_size * world_size``.
- Training items are split between ranks: a :class:`~torch.utils.data.DistributedSampler` for
  shuffled data, a :class:`ShardedSampler` around the task's own sampler otherwise. Both give
  every rank the same number of steps (padding by repeating items), or DDP would hang.
- Validation: every rank evaluates the whole validation set with its (identical) replica, then
  rank 0's figures are broadcast, so every rank takes the same best-model and early-stopping
  decisions. This needs no task-specific reduction of metrics (F1 over a split set is not a mean
  of per-rank F1) at the price of repeating the validation work on every rank.
- Only rank 0 writes files, logs and the progress bar; the run folder must be on a file system
  every node sees for ``--resume``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from mitokit.errors import input_error


@dataclass
class DistContext:
    """This process's place in a (possibly one-process) training run.

    Attributes:
        world_size: Number of processes.
        rank: This process's global rank.
        local_rank: Its rank on this node (its GPU index).
        comm_device: Device of the tensors the collectives exchange (CUDA for NCCL).
        owns_group: Whether this context initialised the process group (and destroys it).
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    comm_device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_gather_int(self, value: int) -> list[int]:
        """``value`` of every rank, in rank order."""
        if not self.enabled:
            return [int(value)]
        t = torch.tensor([value], dtype=torch.int64, device=self.comm_device)
        out = [torch.zeros_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [int(o.item()) for o in out]

    def broadcast_floats(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (all ranks pass a list of the same length)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` (any lengths), in rank order, without pickle."""
        if not self.enabled:
            return [data]
        sizes = self.all_gather_int(len(data))
        longest = max(sizes)
        buf = torch.zeros(longest, dtype=torch.uint8)
        if data:
            buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        buf = buf.to(self.comm_device)
        out = [torch.zeros_like(buf) for _ in range(self.world_size)]
        dist.all_gather(out, buf)
        return [bytes(o[:n].cpu().numpy().tobytes()) for o, n in zip(out, sizes, strict=True)]

    def close(self, *, graceful: bool = True) -> None:
        """Destroy the process group if this context made it.

        Args:
            graceful: Wait for every rank first (after a normal end). After an error, do not:
                the peers may be inside another collective; tearing down makes them fail fast
                instead of hanging.
        """
        if self.owns_group and dist.is_initialized():
            if graceful:
                dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def env_world() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's environment; ``(1, 0, 0)`` without."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    values = []
    for name, default in zip(names, ("1", "0", "0"), strict=True):
        raw = os.environ.get(name, default)
        try:
            values.append(int(raw))
        except ValueError:
            raise input_error(
                None, f"environment variable {name}={raw!r} is not an integer"
            ) from None
    world, rank, local = values
    if world < 1 or not 0 <= rank < world or local < 0:
        raise input_error(None, f"inconsistent WORLD_SIZE={world}, RANK={rank}, LOCAL_RANK={local}")
    return world, rank, local


def init_distributed(device_type: str) -> DistContext:
    """Join the torchrun job this process belongs to, if any.

    Args:
        device_type: ``"cuda"`` (NCCL backend, one GPU per local rank) or ``"cpu"`` (gloo).

    Returns:
        The context; a one-process context when not launched by torchrun.
    """
    world, rank, local = env_world()
    if world == 1:
        return DistContext()
    if not dist.is_available():
        raise input_error(None, "this PyTorch build has no torch.distributed")
    comm = torch.device("cpu")
    if device_type == "cuda":
        if local >= torch.cuda.device_count():
            raise input_error(
                None, f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs here"
            )
        torch.cuda.set_device(local)
        comm = torch.device("cuda", local)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DistContext(world, rank, local, comm, owns)


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else unchanged."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


class ShardedSampler(Sampler):
    """Every ``num_replicas``-th item of any sampler or batch sampler, starting at ``rank``.

    Every rank yields ``ceil(len(sampler) / num_replicas)`` items: a rank short of one repeats its
    first item, so all ranks run the same number of steps. The wrapped sampler must give the same
    sequence on every rank (seed it from the config seed and the epoch, as mitokit's samplers do);
    :meth:`set_epoch` is passed on.
    """

    def __init__(self, sampler: Any, *, num_replicas: int, rank: int) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        if not hasattr(sampler, "__len__"):
            raise ValueError("a sampler sharded between processes needs a length (__len__)")
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the wrapped sampler (if it reshuffles per epoch)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        target = len(self)
        first_any = first_own = None
        count = 0
        for i, item in enumerate(self.sampler):
            if i == 0:
                first_any = item
            if i % self.num_replicas == self.rank:
                if count == 0:
                    first_own = item
                if count < target:
                    yield item
                    count += 1
        pad = first_own if first_own is not None else first_any
        while count < target and pad is not None:
            yield pad
            count += 1


def given_or_env_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the number of processes: as given, else torchrun's."""
    if rank is None or world_size is None:
        env_size, env_rank, _ = env_world()
        world_size = env_size if world_size is None else world_size
        rank = env_rank if rank is None else rank
    return rank, world_size

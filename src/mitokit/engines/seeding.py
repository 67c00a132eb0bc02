"""Seeds and determinism flags of a training run (:mod:`mitokit.engines.train`).

Every epoch's randomness is a function of (seed, epoch, rank) alone: :func:`_mix` derives the
seeds, :func:`_seed_all` seeds torch, numpy and python from one, :func:`_seed_worker` seeds the
DataLoader workers, and :func:`_torch_flags` switches on deterministic algorithms for the run.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

#: Leading tags of the per-epoch seeds (:meth:`mitokit.engines.epochs._Run._seed_epoch`), so that
#: the global and the loader streams never share a seed (numpy's SeedSequence ignores trailing
#: zeros).
_GLOBAL_STREAM, _LOADER_STREAM = 0x676C6F62, 0x6C6F6164


def _mix(*values: int) -> int:
    """A 63-bit seed derived from several non-negative integers (e.g. seed and rank)."""
    hi, lo = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG on purpose
    random.seed(seed)


def _seed_worker(worker_id: int, rank: int = 0) -> None:
    """DataLoader worker init: numpy and python RNGs from torch's worker seed, mixed with rank."""
    seed = _mix(torch.initial_seed(), rank)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG on purpose
    random.seed(seed)


@contextlib.contextmanager
def _torch_flags(deterministic: bool, cuda: bool) -> Iterator[None]:
    """Deterministic algorithms (or cudnn benchmark) for the run; the old flags afterwards."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if deterministic:
        if cuda:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = cuda
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]

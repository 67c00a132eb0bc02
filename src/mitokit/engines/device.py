"""The one place a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``) is resolved.

Training (``train.device``), slide inference (``--device``) and the studies all name devices the
same way; :func:`resolve_device` turns the setting into a :class:`torch.device`, choosing for
``auto`` and refusing, with a one-line :class:`~mitokit.errors.MitokitError`, a device that is
unknown or not present on this machine.
"""

from __future__ import annotations

import os

import torch

from mitokit.errors import MitokitError

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""Device types a setting may name (``auto`` chooses among them)."""


def resolve_device(
    choice: str | torch.device | None = "auto", *, local_rank: int | None = None
) -> torch.device:
    """The device a setting names, checked to be present.

    ``auto`` (or None) is CUDA where available, else Apple's MPS where available, else the CPU.
    A CUDA device without an index gets the process's GPU: ``local_rank`` (default: torchrun's
    ``LOCAL_RANK`` when set, else the current CUDA device), so every process of a ``torchrun``
    job has its own GPU.

    Args:
        choice: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"``, a
            :class:`torch.device`, or None (``auto``).
        local_rank: This process's rank on its machine, for a CUDA device without an index.

    Returns:
        The device, with an index for CUDA (``cuda:0`` rather than ``cuda``).

    Raises:
        MitokitError: An unknown device, or one this machine does not have (CUDA or MPS not
            available, a GPU index or local rank beyond the GPUs present).
    """
    if choice is None or (isinstance(choice, str) and choice.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return _cuda(None, local_rank, choice="auto")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = _parse(choice)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MitokitError(f"device {choice}: no CUDA device is available here")
        return _cuda(device.index, local_rank, choice=str(choice))
    if device.type == "mps" and not _mps_available():
        raise MitokitError(f"device {choice}: MPS (Apple GPU) is not available here")
    return device


def _parse(choice: str | torch.device) -> torch.device:
    """A setting as a :class:`torch.device` of a known type."""
    if isinstance(choice, torch.device):
        device = choice
    else:
        try:
            device = torch.device(str(choice).strip().lower())
        except (RuntimeError, ValueError):
            device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise MitokitError(f"unknown device {str(choice)!r}; use auto, {', '.join(DEVICE_TYPES)}")
    return device


def _cuda(index: int | None, local_rank: int | None, *, choice: str) -> torch.device:
    """A CUDA device: ``index``, else the local rank's GPU, else the current one."""
    count = torch.cuda.device_count()
    if index is None:
        if local_rank is None and os.environ.get("LOCAL_RANK", "").strip().isdigit():
            local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank is None:
            return torch.device("cuda", torch.cuda.current_device())
        if not 0 <= int(local_rank) < count:
            raise MitokitError(
                f"device {choice}: local rank {local_rank} but only {count} GPUs here"
            )
        return torch.device("cuda", int(local_rank))
    if index >= count:
        raise MitokitError(f"device {choice}: no GPU {index}, only {count} here")
    return torch.device("cuda", index)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


__all__ = ["DEVICE_TYPES", "resolve_device"]

"""Training-state checkpoints without pickle: tensors in safetensors, everything else in JSON.

A run folder's ``state/`` holds what an interrupted run needs to continue to the very result an
uninterrupted one reaches::

    state/
      state.json              format, version, completed epochs, best epoch and val loss, the
                              early-stopping counter, the log rows so far, the resolved config,
                              the optimizer's param_groups and non-tensor state, the scheduler's
                              state dict, and per rank the numpy and python RNG states
      model.safetensors       the model's state dict
      optimizer.safetensors   the optimizer's tensors, keyed "state.<param id>.<name>"
      rng.safetensors         per rank r: "rank<r>.torch_cpu", "rank<r>.cuda<i>" (one per
                              device), "rank<r>.loader" (the DataLoader generator)

The folder is written beside its final place and renamed into it, so a crash while saving leaves
the previous epoch's state intact (and a temporary beside it, which the next run in the folder
removes). Loading runs no code from the files (no ``torch.load``). The RNG states are a record:
the engine seeds every epoch from (seed, epoch, rank), so a resumed run needs none of them to
continue exactly (:mod:`mitokit.engines.train`).
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.errors import input_error

FORMAT = "mitokit-train-state"
VERSION = 1
STATE_JSON = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


@dataclass
class Progress:
    """Where a run stands after its last completed epoch.

    Attributes:
        epoch: Completed epochs (1-based numbering: the next epoch to run is ``epoch + 1``).
        best_epoch: Epoch of the lowest validation loss so far (the last epoch without
            validation data); None before the first epoch.
        best_val_loss: That loss; None without validation data.
        bad_epochs: Epochs since the last improvement (the early-stopping counter).
        stopped_early: Whether early stopping ended the run.
        history: One log row per completed epoch.
    """

    epoch: int = 0
    best_epoch: int | None = None
    best_val_loss: float | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RngSnapshot:
    """The random-number state of one process: tensors plus JSON-able python/numpy states."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


@dataclass
class LoadedState:
    """A training state read back from disk (see :func:`load_state`)."""

    progress: Progress
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor]
    optimizer_meta: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: list[RngSnapshot]


# --------------------------------------------------------------------------------------------
# RNG


def rng_snapshot(loader_generator: torch.Generator | None) -> RngSnapshot:
    """The RNG states of this process: torch CPU, every CUDA device, numpy, python, loader."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state.cpu()
    if loader_generator is not None:
        tensors["loader"] = loader_generator.get_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what we save
    version, internal, gauss_next = random.getstate()
    meta = {
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    return RngSnapshot(tensors, meta)


def restore_rng(snapshot: RngSnapshot, loader_generator: torch.Generator | None) -> None:
    """Set this process's RNGs to ``snapshot`` (CUDA states only where the device count fits)."""
    torch.set_rng_state(snapshot.tensors["torch_cpu"])
    cuda = [snapshot.tensors[k] for k in sorted(snapshot.tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if loader_generator is not None and "loader" in snapshot.tensors:
        loader_generator.set_state(snapshot.tensors["loader"])
    kind, keys, pos, has_gauss, cached = snapshot.meta["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss_next = snapshot.meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def pack_rng(snapshot: RngSnapshot) -> bytes:
    """``snapshot`` as bytes (safetensors with the JSON part in its metadata), for gathering."""
    from safetensors.torch import save

    return save(snapshot.tensors, metadata={"meta": json.dumps(snapshot.meta)})


def unpack_rng(data: bytes) -> RngSnapshot:
    """Inverse of :func:`pack_rng`."""
    from safetensors.torch import load

    (n,) = struct.unpack("<Q", data[:8])  # safetensors: u64 header size, then the JSON header
    header = json.loads(data[8 : 8 + n])
    return RngSnapshot(load(data), json.loads(header["__metadata__"]["meta"]))


# --------------------------------------------------------------------------------------------
# optimizer


def flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as (tensors keyed ``state.<id>.<name>``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = _packed(value)
            else:
                scalars.setdefault(str(pid), {})[name] = value
    meta = {"param_groups": _plain(state_dict["param_groups"]), "state": _plain(scalars)}
    return tensors, meta


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    """Load a state written by :func:`flatten_optimizer` into ``optimizer``."""
    groups = [dict(g) for g in meta["param_groups"]]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError("optimizer state has a different number of parameter groups")
    for group, current in zip(groups, optimizer.param_groups, strict=True):
        for key, value in group.items():  # JSON turned tuples (Adam's betas) into lists
            if isinstance(current.get(key), tuple) and isinstance(value, list):
                group[key] = tuple(value)
    state: dict[int, dict[str, Any]] = {
        int(pid): dict(entries) for pid, entries in meta["state"].items()
    }
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------
# the state folder


def has_state(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a training state."""
    return (Path(out_dir) / "state" / STATE_JSON).is_file()


def save_state(
    folder: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    progress: Progress,
    rng: list[RngSnapshot],
    config: Mapping[str, Any],
) -> Path:
    """Write a training state folder atomically (see the module docstring for the layout).

    Args:
        folder: The state folder (``<run>/state``); replaced whole.
        model: The model (a DDP wrapper is unwrapped).
        optimizer: Its optimizer.
        scheduler: The LR scheduler, or None.
        progress: Epoch counters and log rows.
        rng: One RNG snapshot per rank, rank order.
        config: The resolved config of the run.
    """
    from safetensors.torch import save_file

    from mitokit.io.atomic import atomic_dir

    module = model.module if hasattr(model, "module") else model
    weights = {k: _packed(v) for k, v in module.state_dict().items()}
    opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
    rng_tensors = {
        f"rank{r}.{key}": value for r, snap in enumerate(rng) for key, value in snap.tensors.items()
    }
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "progress": _plain(asdict(progress)),
        "optimizer": opt_meta,
        "scheduler": _plain(scheduler.state_dict()) if scheduler is not None else None,
        "rng": {"world_size": len(rng), "ranks": [snap.meta for snap in rng]},
        "config": _plain(config),
    }
    text = json.dumps(doc, indent=1)
    with atomic_dir(folder, overwrite=True) as tmp:
        save_file(weights, str(tmp / MODEL_FILE))
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        save_file(rng_tensors, str(tmp / RNG_FILE))
        (tmp / STATE_JSON).write_text(text + "\n", encoding="utf-8")
    return Path(folder)


def load_state(folder: str | os.PathLike) -> LoadedState:
    """Read a state folder written by :func:`save_state`.

    Raises:
        MitokitError: Missing files, another format, or unreadable content.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mitokit.models.checkpoint import read_json_document

    folder = Path(folder)
    path = folder / STATE_JSON
    if not path.is_file():
        raise input_error(folder, f"no training state here (no {STATE_JSON}); nothing to resume")
    doc = read_json_document(path, fmt=FORMAT, what="training state")
    if doc.get("version") != VERSION:
        raise input_error(path, f"training state version {doc.get('version')} is not supported")
    files = {}
    for name in (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE):
        try:
            files[name] = load_file(str(folder / name))
        except (SafetensorError, OSError, ValueError) as exc:
            raise input_error(folder / name, f"unreadable training state: {exc}") from None
    rng_doc = doc["rng"]
    snaps = []
    for r, meta in enumerate(rng_doc["ranks"]):
        prefix = f"rank{r}."
        tensors = {k[len(prefix) :]: v for k, v in files[RNG_FILE].items() if k.startswith(prefix)}
        snaps.append(RngSnapshot(tensors, meta))
    return LoadedState(
        progress=Progress(**doc["progress"]),
        config=doc["config"],
        model=files[MODEL_FILE],
        optimizer_tensors=files[OPTIMIZER_FILE],
        optimizer_meta=doc["optimizer"],
        scheduler=doc["scheduler"],
        rng=snaps,
    )


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-able data (tuples become lists); a ValueError for anything else."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise ValueError(f"cannot store {type(obj).__name__} in a JSON training state")


def _packed(t: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy in plain row-major layout: safetensors refuses strided tensors, and
    a channels_last model (the CUDA default) has them, as has its Adam state."""
    return t.detach().cpu().clone(memory_format=torch.contiguous_format)

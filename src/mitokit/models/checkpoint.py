"""Model checkpoints: weights as safetensors plus a JSON config beside them, never pickle.

Everything that writes, reads or finds a saved model goes through here. A saved model is a
folder::

    model.safetensors   the state dict
    config.json         {"format": "mitokit-model", "version": 1, "task": ..., "model": {...},
                         "mitokit": "<version>", "extra": {...}}

so the model is rebuilt from its config by the task that made it (:func:`load_model`). A folder
made by another task is refused with a clear error rather than loaded into the wrong network.

Finding a model: :func:`model_folder` is the one rule (the folder itself, or the ``best/`` of a
training run); :func:`expand_checkpoints` applies it to a list of paths, reading an ensemble
folder as its seed sub-folders. :func:`load_weights` reads the weights a config names (a model
folder, or a ``.safetensors`` file).

(``mitokit.models.io`` is the former name of this module and still re-exports it.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mitokit.errors import input_error
from mitokit.io.atomic import atomic_path, write_text_atomic

FORMAT = "mitokit-model"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_model(
    model: torch.nn.Module,
    folder: str | os.PathLike,
    *,
    task: str,
    model_cfg: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model``'s weights and the config that rebuilds it into ``folder``."""
    from safetensors.torch import save_file

    from mitokit import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    cfg = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "model": dict(model_cfg),
        "mitokit": __version__,
        "extra": dict(extra or {}),
    }
    write_text_atomic(folder / CONFIG, json.dumps(cfg, indent=2, default=str) + "\n")
    return folder


def read_json_document(path: Path, *, fmt: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``format`` is ``fmt`` (model config, training state).

    Raises:
        MitokitError: An unreadable file (``unreadable <what>: ...``) or another document
            (``not a mitokit <what>``), naming ``path``.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise input_error(path, f"unreadable {what}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise input_error(path, f"not a mitokit {what}")
    return doc


def load_state_into(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str | os.PathLike
) -> None:
    """``model.load_state_dict(state)`` (strict); weights that do not fit are an error naming
    ``source`` (the folder or file they came from) and the first problem."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise input_error(source, f"weights do not fit the model config: {first}") from None


def read_model_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a saved model; a clear error for anything else."""
    folder = Path(folder)
    path = folder / CONFIG if folder.is_dir() else folder
    if not path.is_file():
        raise input_error(folder, f"not a mitokit model folder (no {CONFIG})")
    cfg = read_json_document(path, fmt=FORMAT, what="model config")
    if not isinstance(cfg.get("task"), str) or not isinstance(cfg.get("model"), dict):
        raise input_error(path, "model config lacks 'task' or 'model'")
    return cfg


def load_state(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a saved model (safetensors; no code runs while loading)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise input_error(folder, f"not a mitokit model folder (no {WEIGHTS})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise input_error(path, f"unreadable weights: {exc}") from None


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights a config names: a model folder, its ``model.safetensors``, or a safetensors file.

    Raises:
        MitokitError: A missing or unreadable file (the message names it).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return load_state(path)
    if path.name == WEIGHTS:
        return load_state(path.parent)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise input_error(path, f"unreadable weights: {exc}") from None


def model_folder(path: str | os.PathLike) -> Path | None:
    """The model folder ``path`` names, or None: the one rule for finding a saved model.

    ``path`` itself when it holds the config, else the ``best/`` of a training run (``best/``
    beside ``last/``).
    """
    p = Path(path)
    if (p / CONFIG).is_file():
        return p
    if (p / "best" / CONFIG).is_file():
        return p / "best"
    return None


def expand_checkpoints(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Model folders from model folders, training-run folders and ensemble folders.

    A path is taken as it is when it holds ``config.json``; a training run (``best/`` beside
    ``last/``) gives its ``best/`` (:func:`model_folder`); otherwise every sub-folder that is
    one of these (an ensemble's ``seed0/``, ``seed1/`` ...), sorted by name.

    Raises:
        MitokitError: A path that is none of these.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        found = model_folder(p)
        if found is not None:
            out.append(found)
            continue
        subs = [m for q in sorted(p.iterdir()) if (m := model_folder(q))] if p.is_dir() else []
        if not subs:
            raise input_error(
                p, f"not a mitokit model folder (no {CONFIG}, best/, nor sub-folders with one)"
            )
        out.extend(subs)
    return out


def load_model(
    folder: str | os.PathLike,
    *,
    expect_task: str | tuple[str, ...] | None = None,
    map_location: str | torch.device = "cpu",
    fold_bn: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a saved model through its task and load its weights.

    Args:
        folder: A folder written by :func:`save_model`.
        expect_task: Refuse a model of any other task (e.g. a detector handed to a classifier
            command).
        map_location: Device of the loaded weights.
        fold_bn: For inference only: fold the batch norm into the convolutions
            (:func:`mitokit.models.inference.fold_batchnorm`; the same outputs up to float
            rounding, faster).

    Returns:
        (model in eval mode, its config).
    """
    from mitokit.engines.task import get_task

    cfg = read_model_config(folder)
    if expect_task is not None:
        allowed = (expect_task,) if isinstance(expect_task, str) else tuple(expect_task)
        if cfg["task"] not in allowed:
            raise input_error(
                folder,
                f"is a {cfg['task']!r} model, expected {' or '.join(repr(a) for a in allowed)}",
            )
    model = get_task(cfg["task"]).build_model({**cfg["model"], "weights": None})
    load_state_into(model, load_state(folder), source=folder)
    model = model.to(map_location).eval()
    if fold_bn:
        from mitokit.models.inference import fold_batchnorm

        fold_batchnorm(model)
    return model, cfg


__all__ = [
    "CONFIG",
    "FORMAT",
    "VERSION",
    "WEIGHTS",
    "expand_checkpoints",
    "load_model",
    "load_state",
    "load_state_into",
    "load_weights",
    "model_folder",
    "read_json_document",
    "read_model_config",
    "save_model",
]

"""Model files: weights as safetensors plus a JSON config beside them, never pickle.

A saved model is a folder::

    model.safetensors   the state dict
    config.json         {"format": "mitokit-model", "version": 1, "task": ..., "model": {...},
                         "mitokit": "<version>", "extra": {...}}

so the model is rebuilt from its config by the task that made it (:func:`load_model`). A folder
made by another task is refused with a clear error rather than loaded into the wrong network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
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


def read_model_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a saved model; a clear error for anything else."""
    folder = Path(folder)
    path = folder / CONFIG if folder.is_dir() else folder
    if not path.is_file():
        raise input_error(folder, f"not a mitokit model folder (no {CONFIG})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise input_error(path, f"unreadable model config: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise input_error(path, "not a mitokit model config")
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
    state = load_state(folder)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise input_error(folder, f"weights do not fit the model config: {first}") from None
    model = model.to(map_location).eval()
    if fold_bn:
        from mitokit.models.inference import fold_batchnorm

        fold_batchnorm(model)
    return model, cfg

"""The contract between the training engine and a model formulation.

The engine (:mod:`mitokit.engines.train`) knows nothing about mitoses: it runs epochs, steps the
optimizer, evaluates, checkpoints, resumes, logs and distributes. A :class:`Task` knows its
formulation (patch classifier, BC, Reg, detector, weak localiser, diffusion): how to build the
model and the data from the config's ``model`` and ``data`` sections, and how to turn a batch into
a loss. Tasks register under a name that a config's ``task`` key selects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset, Sampler


@dataclass
class TaskData:
    """What a task's data builder returns.

    Attributes:
        train: Training dataset (items are dicts).
        val: Validation dataset, or None (no model selection then).
        train_sampler: A sampler or batch sampler for training; None = shuffled.
        batch_sampler: True when ``train_sampler`` yields whole batches (class-balanced batches).
        collate: Collate function; None = torch's default.
        info: Facts to log (split sizes, class counts ...).
    """

    train: Dataset
    val: Dataset | None = None
    train_sampler: Sampler | None = None
    batch_sampler: bool = False
    collate: Callable | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """A model formulation the engine can train.

    ``model_defaults`` / ``data_defaults`` give every valid key of the config's ``model`` and
    ``data`` sections with its default, so unknown keys are rejected with the list of valid ones.

    Optional hook: a task may define ``after_step(model)``; the engine then calls it after every
    optimizer step with the model itself (unwrapped from DDP, on every rank), e.g. to update a
    moving average of the weights kept inside the model (the diffusion task's EMA). Whatever it
    changes should live in the model's ``state_dict`` so checkpoints and resumption carry it.
    """

    name: str
    model_defaults: Mapping[str, Any]
    data_defaults: Mapping[str, Any]

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """The model, from the ``model`` section (weights random or from a local file)."""

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training and validation data, from the ``data`` section (split by slide)."""

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (moved to ``device`` here) and per-batch figures to log."""

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Validation figures; must contain ``loss`` (the engine selects on it)."""


_TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    """Class decorator: make a task available to configs as ``task: <name>``."""

    def wrap(factory: Callable[[], Task]) -> Callable[[], Task]:
        _TASKS[name] = factory
        return factory

    return wrap


def get_task(name: str) -> Task:
    """The task registered as ``name``; a clear error listing the known ones otherwise."""
    _load_builtin_tasks()
    if name not in _TASKS:
        from mitokit.errors import input_error

        known = ", ".join(sorted(_TASKS)) or "none"
        raise input_error(None, f"unknown task {name!r}; known tasks: {known}")
    return _TASKS[name]()


def known_tasks() -> list[str]:
    """Names of the registered tasks."""
    _load_builtin_tasks()
    return sorted(_TASKS)


def _load_builtin_tasks() -> None:
    # Importing the model modules registers their tasks.
    import importlib

    for module in (
        "mitokit.models.classifier",
        "mitokit.models.detector",
        "mitokit.models.wss",
        "mitokit.models.diffusion",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a formulation not written yet
            if exc.name != module:
                raise

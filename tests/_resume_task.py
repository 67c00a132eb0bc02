"""A toy task that draws from every random stream a real task does; importing it registers it.

``toy-augmented``: the regression of :mod:`_toy_task` (4 normal features, slides of 8, split by
slide), shuffled by the engine's sampler, with training items augmented in ``__getitem__`` by a
:class:`~mitokit.models._common.WorkerDraws` generator (a sign flip and jitter, as the tile and
patch tasks flip and colour-jitter), numpy's and python's global generators (as third-party
transforms do), and a model with dropout and a loss with torch noise (as the diffusion task
draws its noise). ``TOY_AUGMENTED_DELAY`` (seconds per training batch, from the environment)
slows a run down, so a test can kill it in the middle of an epoch.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
import torch
from _toy_task import ToyTask
from torch.utils.data import Dataset

from mitokit.engines.task import TaskData, register_task
from mitokit.models._common import WorkerDraws


class AugmentedDataset(Dataset):
    """Items ``{"x": (F,), "y": ()}``, ``x`` randomly flipped and jittered when augmenting."""

    def __init__(self, base: Dataset, *, seed: int, augment: bool) -> None:
        self.base, self.augment = base, augment
        self.draws = WorkerDraws(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        if self.augment:
            rng = self.draws.get()
            x = item["x"].numpy() * rng.choice([-1.0, 1.0], size=item["x"].shape)
            x = x + 0.05 * np.random.standard_normal(x.shape)  # noqa: NPY002 - the global one
            item["x"] = torch.as_tensor(x * (1.0 + 0.1 * random.random()), dtype=torch.float32)
        return {"x": item["x"], "y": item["y"]}


class AugmentedToyTask(ToyTask):
    """The toy regression with augmentation, dropout and noisy targets (see the module)."""

    name = "toy-augmented"
    model_defaults = {**ToyTask.model_defaults, "dropout": 0.2}
    data_defaults = {**ToyTask.data_defaults, "augment": True}

    def build_data(self, data_cfg, *, seed):
        cfg = {**self.data_defaults, **data_cfg}
        plain = super().build_data({k: v for k, v in cfg.items() if k != "augment"}, seed=seed)
        train = AugmentedDataset(plain.train, seed=seed, augment=cfg["augment"])
        val = AugmentedDataset(plain.val, seed=seed, augment=False) if plain.val else None
        return TaskData(train=train, val=val, info=plain.info)

    def loss(self, model, batch, *, device):
        delay = float(os.environ.get("TOY_AUGMENTED_DELAY", "0"))
        if delay:
            time.sleep(delay)
        target = batch["y"].to(device)
        target = target + 0.01 * torch.randn_like(target)
        pred = model(batch["x"].to(device)).squeeze(-1)
        return torch.nn.functional.mse_loss(pred, target), {}


register_task("toy-augmented")(AugmentedToyTask)

"""Toy tasks for the engine tests: importing this module registers them.

``toy``: a small MLP regresses ``y = x . w + noise`` from 4 normal features; items are grouped in
slides of 8 and split into train/val by slide. ``toy-rigged``: the same, but its validation loss
follows a fixed sequence, best at epoch 2 (to test model selection and early stopping).
``toy-refusing``: data flagged as unusable in ``TaskData.info["error"]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from mitokit.engines.task import TaskData, register_task


class ToyDataset(Dataset):
    """Items ``{"x": (F,), "y": (), "slide": int}``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, slides: torch.Tensor) -> None:
        self.x, self.y, self.slides = x, y, slides

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": self.y[i], "slide": int(self.slides[i])}


class ToyTask:
    """A linear-regression toy with a train/val split by slide."""

    name = "toy"
    model_defaults = {"hidden": 8, "weights": None, "dropout": 0.0, "features": 4}
    data_defaults = {"n": 256, "val_fraction": 0.25, "seed_offset": 0, "per_slide": 8}

    def build_model(self, model_cfg):
        f, h = model_cfg["features"], model_cfg["hidden"]
        model = torch.nn.Sequential(
            torch.nn.Linear(f, h),
            torch.nn.ReLU(),
            torch.nn.Dropout(model_cfg["dropout"]),
            torch.nn.Linear(h, 1),
        )
        if model_cfg["weights"]:
            from mitokit.models.io import load_state

            model.load_state_dict(load_state(model_cfg["weights"]))
        return model

    def build_data(self, data_cfg, *, seed):
        g = torch.Generator().manual_seed(seed + data_cfg["seed_offset"])
        n, features = data_cfg["n"], self.model_defaults["features"]
        x = torch.randn(n, features, generator=g)
        w = torch.randn(features, generator=g)
        y = x @ w + 0.1 * torch.randn(n, generator=g)
        slides = torch.arange(n) // data_cfg["per_slide"]
        n_slides = int(slides.max()) + 1 if n else 0
        order = torch.randperm(n_slides, generator=g)
        n_val = round(data_cfg["val_fraction"] * n_slides)
        is_val = torch.isin(slides, order[:n_val])
        train = ToyDataset(x[~is_val], y[~is_val], slides[~is_val])
        val = ToyDataset(x[is_val], y[is_val], slides[is_val]) if n_val else None
        info = {
            "train_slides": sorted(set(train.slides.tolist())),
            "val_slides": sorted(set(val.slides.tolist())) if val else [],
        }
        return TaskData(train=train, val=val, info=info)

    def loss(self, model, batch, *, device):
        pred = model(batch["x"].to(device)).squeeze(-1)
        target = batch["y"].to(device)
        loss = torch.nn.functional.mse_loss(pred, target)
        return loss, {"mae": float((pred - target).detach().abs().mean())}

    def evaluate(self, model, loader, *, device):
        se = ae = 0.0
        n = 0
        for batch in loader:
            pred = model(batch["x"].to(device)).squeeze(-1)
            err = pred - batch["y"].to(device)
            se += float((err**2).sum())
            ae += float(err.abs().sum())
            n += len(err)
        return {"loss": se / n, "mae": ae / n}


class RiggedToyTask(ToyTask):
    """The toy whose validation losses follow :attr:`val_losses`: best at epoch 2, then rising."""

    name = "toy-rigged"
    val_losses = (3.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, model, loader, *, device):
        self.calls += 1
        return {"loss": self.val_losses[self.calls - 1]}


class RefusingToyTask(ToyTask):
    """The toy whose data builder flags its data as unusable."""

    name = "toy-refusing"

    def build_data(self, data_cfg, *, seed):
        data = super().build_data(data_cfg, seed=seed)
        data.info["error"] = "class 1 has no samples"
        return data


register_task("toy")(ToyTask)
register_task("toy-rigged")(RiggedToyTask)
register_task("toy-refusing")(RefusingToyTask)

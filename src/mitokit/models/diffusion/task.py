"""The ``diffusion`` task: what the training engine drives, and loading a trained model.

:class:`DiffusionTask` builds the model (:mod:`~mitokit.models.diffusion.model`) and the data
(:mod:`~mitokit.models.diffusion.data`); its loss is the mean squared error against the noise
(or velocity) at uniform random timesteps, with condition dropout; :meth:`DiffusionTask.after_step`
updates the weight average after every optimiser step. :func:`load_diffusion` loads a saved
model (see the package docstring for the whole method).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.models._common import check_int, merge_section
from mitokit.models.classifier.data import read_patch_table
from mitokit.models.diffusion.data import condition_values, patch_dataset, split_rows
from mitokit.models.diffusion.model import MODEL_DEFAULTS, DiffusionModel, check_model_config
from mitokit.models.diffusion.schedule import jitter_conditions, random_dihedral, to_model_scale

TASK = "diffusion"


def load_diffusion(
    folder: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Load a saved diffusion model: a model folder, or a training run folder (its ``best/``).

    Raises:
        MitokitError: Not a model folder, or a model of another task.
    """
    from mitokit.models.checkpoint import expand_checkpoints, load_model

    folders = expand_checkpoints([folder])
    if len(folders) != 1:
        raise input_error(folder, f"holds {len(folders)} models; name one diffusion model")
    model, cfg = load_model(folders[0], expect_task=TASK, map_location=map_location)
    return model, cfg  # type: ignore[return-value]


@register_task(TASK)
class DiffusionTask:
    """Conditional DDPM on cell patches (MSE on noise or velocity, condition dropout, EMA)."""

    name = TASK
    model_defaults: Mapping[str, Any] = MODEL_DEFAULTS
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "condition": "soft",
        "split": None,
        "split_seed": 0,
        "folds": 0,
        "fold": 0,
        "crop": None,
        "augment": True,
        "n_max": None,
        "cache": True,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """The denoiser with its moving average (random weights, or a local weights file)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        check_model_config(cfg)
        model = DiffusionModel(cfg)
        if cfg["weights"]:
            from mitokit.models.checkpoint import load_state_into, load_weights

            path = Path(cfg["weights"])
            load_state_into(model, load_weights(path), source=path)
        return model

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training (and, with ``folds >= 2``, validation) patches with their conditions.

        Raises:
            MitokitError: Missing labels, a patch not found, a condition column missing or
                outside [0, 1], bad settings.
        """
        from mitokit.io.annotations import read_annotations

        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError("data.labels is required (a patch label file)")
        if not isinstance(cfg["condition"], str) or not cfg["condition"]:
            raise MitokitError("data.condition must be soft, majority or a column name")
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        folds = check_int(cfg["folds"], "data.folds", minimum=0)
        fold = check_int(cfg["fold"], "data.fold", minimum=0, allow_none=True)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        labels = Path(cfg["labels"])
        anns = read_annotations(labels)
        table = read_patch_table(labels, images=cfg["images"], annotations=anns)
        cond = condition_values(table, anns, cfg["condition"])
        pool, train_idx, val_idx = split_rows(
            table, cfg["split"], split_seed=split_seed, folds=folds, fold=fold, n_max=n_max
        )

        def dataset(idx: np.ndarray, augment: bool) -> Any:
            return patch_dataset(
                table,
                idx,
                cond,
                augment=augment,
                crop=cfg["crop"],
                seed=seed,
                cache=bool(cfg["cache"]),
            )

        info = {
            "labels": str(table.source),
            "condition": cfg["condition"],
            "condition_of": table.positive,
            "n_pool": int(len(pool)),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "condition_mean_train": float(cond[train_idx].mean()) if len(train_idx) else None,
        }
        return TaskData(
            train=dataset(train_idx, bool(cfg["augment"])),
            val=dataset(val_idx, False) if len(val_idx) else None,
            info=info,
        )

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE of the prediction against the noise (or velocity) at uniform random timesteps."""
        module = model.module if hasattr(model, "module") else model
        sched = module.noise_scheduler
        x0 = to_model_scale(batch["image"].to(device), module.sample_size)
        if "augment" in batch:
            x0 = random_dihedral(x0, batch["augment"].to(device).bool())
        c = jitter_conditions(
            batch["condition"].to(device).float(), float(module.settings["cond_jitter"])
        )
        n = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, module.num_train_timesteps, (n,), device=device)
        null = torch.rand(n, device=device) < float(module.settings["cond_dropout"])
        xt = sched.add_noise(x0, noise, t)
        pred = model(xt, t, c, null)
        target = (
            noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        )
        loss = F.mse_loss(pred.float(), target.float())
        return loss, {"mse": float(loss.detach()), "null_share": float(null.float().mean())}

    def after_step(self, model: torch.nn.Module) -> None:
        """Engine hook after each optimiser step: update the weight average."""
        model.update_ema()

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Validation MSE of the sampling weights (``loss``) and of the trained ones.

        Noise and timesteps come from a fixed seed, so epochs are compared on the same draws.
        """
        module = model.module if hasattr(model, "module") else model
        sched = module.noise_scheduler
        g = torch.Generator().manual_seed(0)
        sums = {"loss": 0.0, "loss_net": 0.0}
        count = 0
        for batch in loader:
            x0 = to_model_scale(batch["image"].to(device), module.sample_size)
            c = batch["condition"].to(device).float()
            n = x0.shape[0]
            noise = torch.randn(x0.shape, generator=g).to(device)
            t = torch.randint(0, module.num_train_timesteps, (n,), generator=g).to(device)
            xt = sched.add_noise(x0, noise, t)
            if sched.config.prediction_type == "epsilon":
                target = noise
            else:
                target = sched.get_velocity(x0, noise, t)
            for key, net in (("loss", module.sampling_net()), ("loss_net", module.net)):
                err = F.mse_loss(net(xt, t, c).float(), target.float(), reduction="sum")
                sums[key] += float(err)
            count += int(target.numel())
        if count == 0:
            return {"loss": math.nan, "loss_net": math.nan}
        return {k: v / count for k, v in sums.items()}


__all__ = ["TASK", "DiffusionTask", "load_diffusion"]

"""The conditional diffusion model of the first paper: cell patches generated from a score c.

Task ``diffusion``: a diffusers :class:`~diffusers.UNet2DModel` denoiser (64x64 by default)
conditioned on a real-valued score ``c`` in [0, 1], the probabilistic label of the cell (the
fraction of raters calling it mitotic, or atypical on AMi-Br). ``c`` is embedded as a
continuous value, not as a class: a sinusoidal projection of ``c * cond_scale`` (the same
projection as the timestep's) goes through a small learned MLP into the UNet's embedding space,
where it is added to the timestep embedding (``class_embed_type="identity"``). A learned
"null" embedding replaces the condition with probability ``cond_dropout`` in training, so one
network gives conditional and unconditional predictions and classifier-free guidance is
available at sampling time (``guidance`` w: ``null + w * (cond - null)``; 1 = no guidance).
``cond_jitter`` w > 0 trains on ``c`` plus uniform noise in [-w, w], reflected into [0, 1]
(:func:`jitter_conditions`): a score from n raters takes only n + 1 values, and the network
never sees the conditions between them; w = 1 / (2n) (0.167 for three raters) fills the gaps,
so a transition's score can rise through them rather than in steps. 0 (default) trains on the
scores as given.

Training runs through the common engine (:mod:`mitokit.engines.train`): the forward process is
the training scheduler's ``add_noise`` (a :class:`~diffusers.DDPMScheduler` of
``num_train_timesteps`` steps, kept as a plain object on the model, not as weights); the loss is
the mean squared error against the noise (``prediction_type: epsilon``) or the velocity
(``v_prediction``). An exponential moving average of the weights (``ema_decay``, with the usual
warm-up ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates) is kept inside the module, as a
frozen copy of the denoiser, so the engine's checkpoints (``state_dict``) carry it, a resumed
run continues it, and DDP ignores it (it has no trainable weights). The engine calls the task's
:meth:`DiffusionTask.after_step` after every optimiser step, which updates the average.
Sampling uses the average (:meth:`DiffusionModel.sampling_net`); generation lives in
:mod:`mitokit.interpret`.

Data (``data`` section): cell patches of any patch label file
(:func:`~mitokit.models.classifier.read_patch_table`: mitokit CSV from ``mitokit synth
patches``, AMi-Br CSV, CSV / COCO naming one patch per object), split by slide as for the patch
classifier. ``condition`` chooses the score:

- ``soft`` (default): the mean rater vote, each rater's repeats averaged first (on AMi-Br: the
  fraction of the three experts calling the figure atypical);
- ``majority``: 1 when the mean vote is above 0.5, else 0;
- any other name: that per-object column of the label file (e.g. ``m``, the latent mitosis
  score of synthetic patches), numbers in [0, 1] or true/false.

Patches are scaled to [-1, 1] and resampled (bilinear, antialiased) to ``sample_size`` inside the
loss when their size differs; with ``augment`` each training patch is flipped / rotated by a
multiple of 90 degrees there too, drawn from torch's generator (which the engine saves, so a
resumed run continues bit for bit on CPU).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.models._common import check_fraction, check_int, merge_section

TASK = "diffusion"
PREDICTION_TYPES = ("epsilon", "v_prediction")
CONDITIONS_BUILTIN = ("soft", "majority")

#: The first paper's network: diffusers' 64x64 DDPM UNet (six levels, attention at 4x4).
MODEL_DEFAULTS: dict[str, Any] = {
    "sample_size": 64,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": [
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    ],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "dropout": 0.0,
    "cond_scale": 1000.0,
    "cond_dropout": 0.1,
    "cond_jitter": 0.0,
    "guidance": 1.0,
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "ema": True,
    "ema_decay": 0.9999,
    "weights": None,
}

#: A network small enough for tests on CPU (16/32 channels, two levels).
TINY_MODEL: dict[str, Any] = {
    "sample_size": 32,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
}


class ConditionalUNet(nn.Module):
    """A UNet2DModel whose class embedding is a learned embedding of a continuous score.

    Args:
        cfg: The complete ``model`` section (see :data:`MODEL_DEFAULTS`).
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        from diffusers import UNet2DModel
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        channels = [int(c) for c in cfg["block_out_channels"]]
        self.unet = UNet2DModel(
            sample_size=int(cfg["sample_size"]),
            in_channels=3,
            out_channels=3,
            block_out_channels=tuple(channels),
            down_block_types=tuple(cfg["down_block_types"]),
            up_block_types=tuple(cfg["up_block_types"]),
            layers_per_block=int(cfg["layers_per_block"]),
            attention_head_dim=cfg["attention_head_dim"],
            norm_num_groups=int(cfg["norm_num_groups"]),
            dropout=float(cfg["dropout"]),
            class_embed_type="identity",
        )
        dim = channels[0] * 4  # UNet2DModel's time-embedding width
        self.cond_scale = float(cfg["cond_scale"])
        self.cond_proj = Timesteps(channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.cond_embedding = TimestepEmbedding(channels[0], dim)
        self.null_embedding = nn.Parameter(torch.zeros(dim))

    def embed_condition(self, condition: torch.Tensor, null: torch.Tensor | None) -> torch.Tensor:
        """``(B, D)`` embeddings of the scores; the null embedding where ``null`` (or NaN)."""
        c = condition.reshape(-1).float()
        mask = torch.isnan(c)
        if null is not None:
            mask = mask | null.reshape(-1).to(device=c.device, dtype=torch.bool)
        c = torch.where(mask, torch.zeros_like(c), c)
        emb = self.cond_embedding(self.cond_proj(c * self.cond_scale).to(self.null_embedding.dtype))
        # torch.where keeps the null embedding in the graph even when no item is dropped, so
        # DDP always sees a gradient for it.
        return torch.where(mask[:, None], self.null_embedding.expand_as(emb), emb)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        condition: torch.Tensor,
        null: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network's prediction (noise or velocity) for ``sample`` at ``timestep``.

        Args:
            sample: ``(B, 3, S, S)`` noisy images in the model's scale.
            timestep: One timestep or ``(B,)`` timesteps.
            condition: ``(B,)`` scores in [0, 1]; NaN selects the null condition.
            null: Optional ``(B,)`` booleans selecting the null condition.
        """
        emb = self.embed_condition(condition, null)
        return self.unet(sample, timestep, class_labels=emb).sample


class DiffusionModel(nn.Module):
    """The trained denoiser, its weight average (EMA) and its noise schedule.

    ``forward`` runs the trained weights (what the loss needs); :meth:`sampling_net` gives the
    weights to sample with (the average, when kept). ``noise_scheduler`` is the training
    :class:`~diffusers.DDPMScheduler`, a plain object rebuilt from the config (not weights).

    Args:
        cfg: The complete ``model`` section.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.settings = dict(cfg)
        self.net = ConditionalUNet(cfg)
        self.ema: ConditionalUNet | None = None
        if cfg["ema"]:
            self.ema = copy.deepcopy(self.net)
            self.ema.requires_grad_(False)
            self.ema.eval()
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.int64))
        self.noise_scheduler = build_noise_scheduler(cfg)

    @property
    def sample_size(self) -> int:
        """Side of the generated images in pixels."""
        return int(self.settings["sample_size"])

    @property
    def num_train_timesteps(self) -> int:
        """Length T of the forward process."""
        return int(self.settings["num_train_timesteps"])

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        condition: torch.Tensor,
        null: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prediction of the trained weights (see :meth:`ConditionalUNet.forward`)."""
        return self.net(sample, timestep, condition, null)

    def sampling_net(self) -> ConditionalUNet:
        """The weights to sample with: the moving average when kept, else the trained ones."""
        return self.ema if self.ema is not None else self.net

    def train(self, mode: bool = True) -> DiffusionModel:
        """Train / eval mode of the trained weights; the average always stays in eval mode."""
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()
        return self

    @torch.no_grad()
    def update_ema(self) -> None:
        """One step of the moving average towards the trained weights (no-op without EMA)."""
        if self.ema is None:
            return
        n = int(self.ema_updates)
        decay = min(float(self.settings["ema_decay"]), (1 + n) / (10 + n))
        ema_params = list(self.ema.parameters())
        net_params = list(self.net.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in net_params], 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
            e.copy_(b)
        self.ema_updates += 1


def build_noise_scheduler(cfg: Mapping[str, Any]) -> Any:
    """The training :class:`~diffusers.DDPMScheduler` a ``model`` section describes."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=int(cfg["num_train_timesteps"]),
        beta_schedule=str(cfg["beta_schedule"]),
        beta_start=float(cfg["beta_start"]),
        beta_end=float(cfg["beta_end"]),
        prediction_type=str(cfg["prediction_type"]),
        clip_sample=True,
    )


def check_model_config(cfg: Mapping[str, Any]) -> None:
    """Refuse a ``model`` section that cannot build (a one-line error naming the key)."""
    n_levels = len(cfg["block_out_channels"])
    if n_levels < 1:
        raise MitokitError("model.block_out_channels must list at least one width")
    for key in ("down_block_types", "up_block_types"):
        if len(cfg[key]) != n_levels:
            raise MitokitError(
                f"model.{key} has {len(cfg[key])} blocks for {n_levels} block_out_channels"
            )
    size = check_int(cfg["sample_size"], "model.sample_size", minimum=8)
    if size % 2 ** (n_levels - 1):
        raise MitokitError(
            f"model.sample_size {size} must be divisible by 2^{n_levels - 1} "
            f"({n_levels} UNet levels)"
        )
    groups = check_int(cfg["norm_num_groups"], "model.norm_num_groups", minimum=1)
    bad = [c for c in cfg["block_out_channels"] if int(c) % groups]
    if bad:
        raise MitokitError(
            f"model.block_out_channels {bad} are not divisible by norm_num_groups {groups}"
        )
    check_int(cfg["num_train_timesteps"], "model.num_train_timesteps", minimum=2)
    check_fraction(cfg["cond_dropout"], "model.cond_dropout")
    check_fraction(cfg["cond_jitter"], "model.cond_jitter", high=0.5)
    check_fraction(cfg["ema_decay"], "model.ema_decay")
    if cfg["prediction_type"] not in PREDICTION_TYPES:
        raise MitokitError(
            f"model.prediction_type must be one of {', '.join(PREDICTION_TYPES)}, "
            f"got {cfg['prediction_type']!r}"
        )
    g = cfg["guidance"]
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
        raise MitokitError(f"model.guidance must be a number >= 0, got {g!r}")


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


def _column_values(table: Any, anns: Any, column: str) -> np.ndarray:
    extra = {a.id: a.extra for a in anns}
    values = []
    for oid in table.ids:
        raw = extra[oid].get(column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise input_error(
                table.source,
                f"object {oid!r} has no value in column {column!r} (data.condition); "
                f"use soft, majority or a column every object has",
            )
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            raw = raw.strip().lower() == "true"
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise input_error(
                table.source, f"column {column!r} of object {oid!r} is not a number: {raw!r}"
            ) from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise input_error(
                table.source,
                f"column {column!r} of object {oid!r} is {v}, outside [0, 1]: a condition must "
                "be a score in [0, 1]",
            )
        values.append(v)
    return np.asarray(values, dtype=np.float64)


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
            from mitokit.models.checkpoint import load_weights

            path = Path(cfg["weights"])
            state = load_weights(path)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise input_error(path, f"weights do not fit the model config: {first}") from None
        return model

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training (and, with ``folds >= 2``, validation) patches with their conditions.

        Raises:
            MitokitError: Missing labels, a patch not found, a condition column missing or
                outside [0, 1], bad settings.
        """
        from mitokit.data.datasets import PatchDataset
        from mitokit.io.annotations import read_annotations
        from mitokit.models.classifier.data import (
            PatchTransform,
            fold_split,
            read_patch_table,
            split_pool,
        )

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
        if cfg["condition"] == "soft":
            cond = table.score
        elif cfg["condition"] == "majority":
            cond = table.label.astype(np.float64)
        else:
            cond = _column_values(table, anns, cfg["condition"])
        pool = split_pool(table, cfg["split"], split_seed=split_seed)
        if n_max is not None and n_max < len(pool):
            rng = np.random.default_rng([split_seed, 1])
            pool = np.sort(rng.choice(pool, size=n_max, replace=False))
        tr, va = fold_split(
            table.label[pool], table.groups[pool], folds=folds, fold=fold, seed=split_seed
        )
        train_idx, val_idx = pool[tr], pool[va]

        def dataset(idx: np.ndarray, augment: bool) -> PatchDataset:
            # The flips / rotations are drawn in the loss from torch's generator (part of the
            # engine's saved state, so a resumed run repeats them); items carry the switch.
            ds = PatchDataset(
                [table.paths[i] for i in idx],
                {
                    "condition": cond[idx].astype(np.float32),
                    "label": table.label[idx],
                    "augment": np.full(len(idx), int(augment), dtype=np.int64),
                },
                transform=PatchTransform(crop=cfg["crop"], augment=False, seed=seed),
                cache=bool(cfg["cache"]),
            )
            ds.ids = [table.ids[i] for i in idx]  # type: ignore[attr-defined]
            ds.groups = [str(table.groups[i]) for i in idx]  # type: ignore[attr-defined]
            return ds

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


def jitter_conditions(c: torch.Tensor, width: float) -> torch.Tensor:
    """``c`` plus uniform noise in [-width, width], reflected back into [0, 1].

    Reflection (not clipping) keeps the end values from piling up: 0.1 - 0.3 gives 0.2,
    0.9 + 0.3 gives 0.8. ``width`` at most 0.5, so one reflection suffices; 0 returns ``c``.
    """
    if width <= 0:
        return c
    x = c + (torch.rand(c.shape, device=c.device) * 2 - 1) * width
    x = torch.where(x < 0, -x, x)
    return torch.where(x > 1, 2 - x, x).clamp(0.0, 1.0)


def random_dihedral(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each ``Bx3xSxS`` image (where ``mask``) in one of the 8 symmetries of the square.

    Quarter turns and a mirror drawn from torch's generator on ``x``'s device.
    """
    n = x.shape[0]
    k = torch.randint(0, 4, (n,), device=x.device)
    flip = torch.rand(n, device=x.device) < 0.5
    if mask is not None:
        k = torch.where(mask, k, torch.zeros_like(k))
        flip = flip & mask
    out = x.clone()
    for r in (1, 2, 3):
        sel = k == r
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def to_model_scale(images: torch.Tensor, size: int) -> torch.Tensor:
    """``Bx3xHxW`` images in [0, 1] as the model sees them: [-1, 1], resampled to ``size``."""
    x = images.float() * 2.0 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def from_model_scale(x: torch.Tensor) -> np.ndarray:
    """``Bx3xSxS`` model-scale images as ``(B, S, S, 3)`` uint8 (clipped, rounded)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


__all__ = [
    "MODEL_DEFAULTS",
    "PREDICTION_TYPES",
    "TASK",
    "TINY_MODEL",
    "ConditionalUNet",
    "DiffusionModel",
    "DiffusionTask",
    "build_noise_scheduler",
    "check_model_config",
    "from_model_scale",
    "load_diffusion",
    "jitter_conditions",
    "random_dihedral",
    "to_model_scale",
]

"""The conditional denoiser: a diffusers UNet conditioned on a score, its EMA and its schedule.

:class:`ConditionalUNet` embeds the score ``c`` in [0, 1] as a continuous value (a sinusoidal
projection and a small MLP, added to the timestep embedding), with a learned null embedding for
classifier-free guidance. :class:`DiffusionModel` holds the trained network, its exponential
moving average (a frozen copy updated by :meth:`DiffusionModel.update_ema`) and the training
noise scheduler (:func:`~mitokit.models.diffusion.schedule.build_noise_scheduler`). The
``model`` section's defaults are :data:`MODEL_DEFAULTS` (the first paper's network);
:data:`TINY_MODEL` is small enough for tests on CPU.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mitokit.errors import MitokitError
from mitokit.models._common import check_fraction, check_int
from mitokit.models.diffusion.schedule import build_noise_scheduler

PREDICTION_TYPES = ("epsilon", "v_prediction")


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

    def forward(self, *inputs: Any, **kw: Any) -> torch.Tensor:
        """Prediction of the trained weights.

        The inputs are those of :meth:`ConditionalUNet.forward`: ``sample``, ``timestep``,
        ``condition`` and optionally ``null``.
        """
        return self.net(*inputs, **kw)

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


__all__ = [
    "MODEL_DEFAULTS",
    "PREDICTION_TYPES",
    "TINY_MODEL",
    "ConditionalUNet",
    "DiffusionModel",
    "check_model_config",
]

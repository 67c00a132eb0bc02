"""The forward process and the image scale of the diffusion model.

:func:`build_noise_scheduler` makes the training :class:`~diffusers.DDPMScheduler` (a plain
object rebuilt from the ``model`` section, not weights); :func:`jitter_conditions` spreads the
training conditions, :func:`random_dihedral` flips / rotates training images on the device, and
:func:`to_model_scale` / :func:`from_model_scale` convert between images in [0, 1] and the
model's [-1, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812


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
    "build_noise_scheduler",
    "from_model_scale",
    "jitter_conditions",
    "random_dihedral",
    "to_model_scale",
]

"""Per-chain noise of the diffusion sampling loop: noise keys and coupled strides.

Randomness. Every chain has a noise key (a transition set, a cell): a row of
:func:`noise_table` holds the seed of its starting noise (column 0) and of the noise a
stochastic step draws at timestep ``g`` (column ``g + 1``). Chains with the same key therefore
get the same starting noise and the same per-step noise whatever batch they run in, how large
it is, and what else it holds: the conditions of one transition set differ only in their
condition. (The network's arithmetic may still round differently for another batch size, so
results are bit-identical for the same call, and equal up to rounding across batch sizes.)
DDIM (eta 0) and DPM-Solver++ are deterministic after the starting noise; DDPM and
SDE-DPM-Solver++ (:data:`~mitokit.interpret.sampling.STOCHASTIC`) draw their step noise from
the table.

Coupled strides. A stochastic step over several timesteps, ``t`` to ``t' < t - 1``, does not
draw one fresh noise: it combines the noises ``z_j`` the full chain draws at ``t, t - 1, ...,
t' + 1`` as the full chain would pass them on to ``t'`` with the clean image held fixed,
``z = sum_j w_j z_j / ||w||`` (:func:`interval_noise_weights`; ``w_j`` is step ``j``'s
posterior standard deviation times the posterior-mean coefficients of ``x`` of the steps after
it, and ``sum_j w_j^2`` is exactly the variance of the one step from ``t`` to ``t'``). A
weighted sum of independent standard normals scaled to unit variance is a standard normal, so
each strided chain is sampled exactly as before; what changes is that a 25-step chain is the
coarse view of the same 1000-step chain (one Brownian path, in SDE terms), so the two end
close together and a comparison of step counts measures discretisation rather than the noise
of independent draws. A stride of one draws ``z_t`` itself: DDPM's full chain is unchanged.
The price is the full chain's number of draws, made on the CPU in threads after the step's
network call is issued (on a GPU they can run while it computes; not measured there): a
40-timestep interval for 200 sets of 64 px takes about 0.6 s on two cores.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

__all__ = ["interval_noise", "interval_noise_weights", "noise_table", "start_noise"]


def noise_table(seed: int, keys: Sequence[int], num_train_timesteps: int) -> np.ndarray:
    """``(len(keys), T + 1)`` uint32 seeds: the starting noise and each timestep's noise.

    Row ``i`` depends only on ``(seed, keys[i])``.
    """
    rows = [
        np.random.SeedSequence([int(seed), int(k)]).generate_state(num_train_timesteps + 1)
        for k in keys
    ]
    return np.stack(rows) if rows else np.zeros((0, num_train_timesteps + 1), np.uint32)


def start_noise(table: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """``(B, *shape)`` standard normal noise, item ``b`` drawn from the seed ``table[b, 0]``."""
    out = [
        torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)))
        for s in table[:, 0]
    ]
    return torch.stack(out) if out else torch.zeros((0, *shape))


def _step_generators(table: np.ndarray, timestep: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in table[:, int(timestep) + 1]]


def _step_noise(table: np.ndarray, timestep: int, shape: Sequence[int]) -> torch.Tensor:
    """``(B, *shape)``: the noise timestep ``timestep`` draws (as the scheduler draws it from
    :func:`_step_generators`), each distinct seed drawn once."""
    seeds, inverse = np.unique(table[:, int(timestep) + 1], return_inverse=True)
    drawn = [
        torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds
    ]
    return torch.stack(drawn)[torch.as_tensor(inverse.reshape(-1))]


def interval_noise_weights(alphas_cumprod: Any, t: int, t_next: int) -> np.ndarray:
    """Weights of the full chain's noises in one stochastic step from ``t`` down to ``t_next``.

    Step ``j`` of the full chain (``j`` to ``j - 1``) adds ``sigma_j z_j`` (``sigma_j^2 =
    (1 - abar_{j-1}) / (1 - abar_j) * beta_j``, DDPM's posterior variance) and passes ``x`` on
    with the coefficient ``a_j = sqrt(1 - beta_j) (1 - abar_{j-1}) / (1 - abar_j)`` of its
    posterior mean (``abar_{-1} = 1``). With the clean image held fixed, the noise reaching
    ``t_next`` is ``sum_j w_j z_j``, ``w_j = sigma_j * prod(a_k, t_next < k < j)``, and
    ``sum_j w_j^2`` is the posterior variance of the single step from ``t`` to ``t_next``.

    Args:
        alphas_cumprod: The training schedule's ``abar`` (length ``T``).
        t: The step's timestep.
        t_next: The next timestep of the chain, below ``t`` (-1: the clean image).

    Returns:
        ``(t - t_next,)`` weights of ``z_t, z_{t-1}, ..., z_{t_next+1}``.
    """
    ac = np.asarray(torch.as_tensor(alphas_cumprod).double().cpu())
    if not -1 <= t_next < t < len(ac):
        raise ValueError(f"no step from timestep {t} to {t_next} in a {len(ac)}-step schedule")
    j = np.arange(t, t_next, -1)
    abar = ac[j]
    abar_prev = np.where(j > 0, ac[np.maximum(j - 1, 0)], 1.0)
    beta = 1.0 - abar / abar_prev
    sigma = np.sqrt((1.0 - abar_prev) / (1.0 - abar) * beta)
    coef = np.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar)
    # the noise of step j is passed on by the steps after it: coef[i + 1:] for j = t - i
    after = np.append(np.cumprod(coef[::-1])[::-1][1:], 1.0)
    return sigma * after


def interval_noise(
    table: np.ndarray, alphas_cumprod: Any, t: int, t_next: int, shape: Sequence[int]
) -> torch.Tensor:
    """``(B, *shape)`` standard normal noise of one step from ``t`` to ``t_next``: the full
    chain's noises ``z_t ... z_{t_next+1}`` of each row's seeds, combined with
    :func:`interval_noise_weights` and scaled to unit variance (``z_t`` itself for a stride of
    one, or where the step adds no noise)."""
    w = interval_noise_weights(alphas_cumprod, t, t_next) if t - t_next > 1 else np.ones(1)
    norm = float(np.sqrt(np.sum(w**2)))
    if len(w) == 1 or norm == 0.0:
        return _step_noise(table, t, shape)
    w = w / norm

    def chunk(start: int) -> torch.Tensor:
        part = torch.zeros((table.shape[0], *shape))
        for i in range(start, min(start + _NOISE_CHUNK, len(w))):
            if w[i] != 0.0:
                part += float(w[i]) * _step_noise(table, t - i, shape)
        return part

    # the draws are most of the work (as many as the full chain's): fixed chunks of timesteps
    # in threads (torch's generators release the GIL), summed in a fixed order so that the
    # result does not depend on the number of threads
    starts = range(0, len(w), _NOISE_CHUNK)
    parts = list(_noise_pool().map(chunk, starts)) if len(starts) > 1 else [chunk(0)]
    out = parts[0]
    for part in parts[1:]:
        out += part
    return out


#: Timesteps of the full chain one thread draws and sums (:func:`interval_noise`).
_NOISE_CHUNK = 8


@functools.cache
def _noise_pool() -> ThreadPoolExecutor:
    """The threads of :func:`interval_noise` (made once, on first use)."""
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))


def _ddpm_step_std(alphas_cumprod: torch.Tensor, t: int, t_next: int) -> float:
    """The standard deviation of diffusers' DDPM step (variance ``fixed_small``, floored)."""
    abar = float(alphas_cumprod[t])
    abar_next = float(alphas_cumprod[t_next]) if t_next >= 0 else 1.0
    var = (1.0 - abar_next) / (1.0 - abar) * (1.0 - abar / abar_next)
    return math.sqrt(max(var, 1e-20))

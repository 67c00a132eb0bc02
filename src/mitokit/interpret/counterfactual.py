"""Counterfactuals: what a real cell would look like as a mitosis, by noise level.

A real cell is taken part of the way into the diffusion and brought back with the condition
``c = 1`` (:func:`counterfactual`). The further it goes (the larger ``t``), the more the model
may change it: a cell that already resembles a mitotic figure needs little noise before the
classifier calls its counterfactual mitotic, an ordinary cell much more. The likeness index
(:func:`~mitokit.interpret.selection.likeness_index`) is the smallest ``t`` at which the
counterfactual scores >= 0.5 ("resembles") and >= 0.9 ("convincing").

``t`` counts forward noising steps of the training schedule: ``t = 0`` leaves the cell as it is
(the output is the input), ``t`` in ``1..T`` noises it to the schedule's timestep ``t - 1``
(``T``: the last, pure noise in practice). Two ways to get there:

- ``mode="noise"``: the forward process, ``scheduler.add_noise`` with random noise seeded by
  ``(seed, cell)``, then the reverse chain of any sampler from that exact level (the per-step
  noise of ``ddpm`` is keyed by the cell and the timestep, so the chains of one cell at different
  ``t`` share their noise where they overlap);
- ``mode="ddim_inversion"``: deterministic DDIM inversion of the cell to the level with a
  source condition (by default the null condition, the model's unconditional view; or the
  cell's own score when known), then DDIM denoising with ``c = 1``. Without noise the result
  depends on no seed, and with ``condition`` equal to the source condition it reconstructs the
  cell up to the inversion's approximation error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mitokit.errors import MitokitError
from mitokit.interpret import sampling as smp
from mitokit.interpret.outputs import write_counterfactuals

MODES = ("noise", "ddim_inversion")


@dataclass
class Counterfactuals:
    """Counterfactuals of cells over a grid of noise levels.

    Attributes:
        images: ``(n_cells, n_t, S, S, 3)`` uint8; column ``k`` is at ``t_grid[k]``.
        inputs: ``(n_cells, S, S, 3)`` uint8, the cells as the model saw them.
        t_grid: ``(n_t,)`` noise levels (forward steps; 0 = the input).
        mode: ``noise`` or ``ddim_inversion``.
        condition: The target condition.
        source_condition: The inversion's condition per cell (NaN: null), or None (noise mode).
        scheduler: Sampler of the reverse chains.
        steps: Its steps (stride ``T // steps``).
        guidance: Classifier-free guidance scale of the reverse chains.
        seed: The seed (noise mode).
        seconds: Wall time.
    """

    images: np.ndarray
    inputs: np.ndarray
    t_grid: np.ndarray
    mode: str
    condition: float
    source_condition: np.ndarray | None
    scheduler: str
    steps: int
    guidance: float
    seed: int
    seconds: float


def mode_name(mode: str) -> str:
    """``ddim-inversion`` / ``ddim_inversion`` -> ``ddim_inversion``; ``noise``."""
    name = str(mode).lower().replace("-", "_")
    if name not in MODES:
        raise MitokitError(f"unknown mode {mode!r}; choose noise or ddim-inversion")
    return name


def check_t_grid(t_grid: Sequence[int], num_train_timesteps: int) -> np.ndarray:
    """The t grid as sorted unique ints in ``[0, T]``."""
    t = np.asarray(t_grid, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise MitokitError("the t grid is empty")
    if not np.allclose(t, np.round(t)) or t.min() < 0 or t.max() > num_train_timesteps:
        raise MitokitError(
            f"t grid values must be integers in [0, {num_train_timesteps}], got {t.tolist()}"
        )
    return np.unique(np.round(t).astype(np.int64))


def _as_batch(images: Any, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Images (uint8 arrays or a ``(N, H, W, 3)`` array) in the model's scale, and as uint8."""
    from mitokit.data.datasets import to_tensor
    from mitokit.models.diffusion import from_model_scale, to_model_scale

    arrays = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    if not arrays:
        raise MitokitError("no images given")
    tensors = []
    for i, a in enumerate(arrays):
        arr = np.asarray(a)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise MitokitError(f"image {i} must be HxWx3 uint8, got {arr.dtype} {tuple(arr.shape)}")
        tensors.append(to_model_scale(to_tensor(arr)[None], size)[0])
    x = torch.stack(tensors)
    same = all(np.asarray(a).shape[:2] == (size, size) for a in arrays)
    inputs = np.stack([np.asarray(a) for a in arrays]) if same else from_model_scale(x)
    return x, inputs


def counterfactual(
    model: Any,
    images: Any,
    t_grid: Sequence[int],
    *,
    condition: float = 1.0,
    mode: str = "noise",
    seed: int = 0,
    scheduler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    source_condition: float | Sequence[float] | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    compile_net: bool = False,
    progress: bool = False,
) -> Counterfactuals:
    """Counterfactuals of real cells with condition ``condition`` over a grid of noise levels.

    Args:
        model: A :class:`~mitokit.models.diffusion.DiffusionModel` (its sampling weights).
        images: ``HxWx3`` uint8 cells (a list, or an ``(N, H, W, 3)`` array); resampled to the
            model's size when they differ (bilinear, antialiased, as in training).
        t_grid: Noise levels, integers in ``[0, T]`` (see the module docstring).
        condition: Target condition in [0, 1] (1: mitotic).
        mode: ``noise`` (forward noise, then any sampler) or ``ddim_inversion`` / ``ddim-inversion``
            (deterministic inversion, then DDIM).
        seed: Seed of the forward and per-step noise (noise mode).
        scheduler: Sampler of the reverse chain: ``ddpm`` (default in noise mode), ``ddim``,
            ``dpm-solver``, ``dpm-solver-sde``; inversion mode uses ``ddim`` (the only choice
            there).
        steps: Sampler steps over the whole schedule (stride ``T // steps``); default T for
            ddpm, 50 for ddim and dpm-solver-sde, 25 for dpm-solver.
        guidance: Classifier-free guidance scale of the reverse chain (None: the model's).
        source_condition: Inversion mode: the cells' own condition (one value, or one per
            cell; NaN entries take the null condition), or None for the null condition.
        batch_size: Cells per network call.
        device: ``cpu``, ``cuda`` or ``auto``.
        precision: ``fp32`` or ``bf16`` (the network under bf16 autocast; CUDA only).
        compile_net: Run the network through :func:`torch.compile` (see
            :func:`~mitokit.interpret.sampling.compiled`).
        progress: Show a progress bar on stderr.

    Returns:
        The :class:`Counterfactuals`; at ``t = 0`` each output equals its input.
    """
    name = mode_name(mode)
    c_target = _check_condition(condition)
    kind = _sampler_kind(name, scheduler)
    T = model.num_train_timesteps
    steps = smp.resolve_steps(kind, steps, T)
    ts = check_t_grid(t_grid, T)
    g = smp.resolve_guidance(model, guidance)
    model, net, dev = smp.sampling_net(model, device, precision, compile_net)
    x_all, inputs = _as_batch(images, model.sample_size)
    src = _source_conditions(source_condition, x_all.shape[0]) if name == "ddim_inversion" else None
    chains = _Chains(net, model, name, kind, steps, g, int(seed), c_target, ts, dev)
    return _run_chains(chains, x_all, inputs, src, batch_size=batch_size, progress=progress)


def _check_condition(condition: float) -> float:
    """The target condition as a float in [0, 1]."""
    c_target = float(condition)
    if not (math.isfinite(c_target) and 0.0 <= c_target <= 1.0):
        raise MitokitError(f"condition must lie in [0, 1], got {condition!r}")
    return c_target


def _sampler_kind(mode: str, scheduler: str | None) -> str:
    """The reverse chain's sampler: ``ddim`` for inversion mode, else ``scheduler`` (``ddpm``)."""
    if mode == "ddim_inversion":
        if scheduler is not None and smp.sampler_name(scheduler) != "ddim":
            raise MitokitError("ddim-inversion mode denoises with ddim; drop --scheduler")
        return "ddim"
    return smp.sampler_name(scheduler or "ddpm")


def _source_conditions(source_condition: float | Sequence[float] | None, n: int) -> np.ndarray:
    """``(n,)`` inversion conditions: one value or one per cell, NaN for the null condition."""
    src = np.full(n, np.nan)
    if source_condition is not None:
        s = np.asarray(source_condition, dtype=np.float64).reshape(-1)
        if s.size not in (1, n):
            raise MitokitError(f"{s.size} source conditions for {n} images")
        src = np.broadcast_to(s, (n,)).astype(np.float64).copy()
        bad = np.isfinite(src) & ((src < 0) | (src > 1))
        if bad.any():
            raise MitokitError("source conditions must lie in [0, 1] (or NaN for null)")
    return src


@dataclass
class _Chains:
    """What every chain of one :func:`counterfactual` call shares."""

    net: torch.nn.Module
    model: Any
    mode: str
    kind: str
    steps: int
    guidance: float
    seed: int
    condition: float
    t_grid: np.ndarray
    device: torch.device

    @property
    def positive(self) -> list[int]:
        """The noise levels above 0 (those that need a chain)."""
        return [int(t) for t in self.t_grid if t > 0]

    def network_calls(self) -> int:
        """Network calls per batch: every chain, plus the inversions in inversion mode."""
        T = self.model.num_train_timesteps
        positive = self.positive
        chain_len = {t: len(smp.timestep_sequence(t - 1, self.steps, T)) for t in positive}
        stride = max(1, T // self.steps)
        inv_len = sum(
            max(e for e in (t - 1 for t in positive) if e % stride == r) // stride + 1
            for r in {(t - 1) % stride for t in positive}
        )
        return sum(chain_len.values()) + (inv_len if self.mode == "ddim_inversion" else 0)


def _run_chains(
    chains: _Chains,
    x_all: torch.Tensor,
    inputs: np.ndarray,
    src: np.ndarray | None,
    *,
    batch_size: int,
    progress: bool,
) -> Counterfactuals:
    """Run the counterfactual chains of every cell, batch by batch."""
    n, size = x_all.shape[0], chains.model.sample_size
    out = np.empty((n, len(chains.t_grid), size, size, 3), dtype=np.uint8)
    bs = max(1, int(batch_size))
    sched = smp.make_scheduler(chains.model, chains.kind)
    t0 = time.perf_counter()
    with smp.progress_bar(
        total=math.ceil(n / bs) * chains.network_calls(),
        desc=f"counterfactuals ({chains.mode}, {chains.kind})",
        enabled=progress,
    ) as bar:
        for start in range(0, n, bs):
            idx = np.arange(start, min(start + bs, n))
            _run_batch(chains, sched, idx, x_all[idx], inputs, src, out, on_step=bar.update)
    return Counterfactuals(
        images=out,
        inputs=inputs,
        source_condition=src,
        seconds=time.perf_counter() - t0,
        t_grid=chains.t_grid,
        mode=chains.mode,
        condition=chains.condition,
        scheduler=chains.kind,
        steps=chains.steps,
        guidance=chains.guidance,
        seed=chains.seed,
    )


def _run_batch(
    chains: _Chains,
    sched: Any,
    idx: np.ndarray,
    x: torch.Tensor,
    inputs: np.ndarray,
    src: np.ndarray | None,
    out: np.ndarray,
    *,
    on_step: Any,
) -> None:
    """The counterfactuals of cells ``idx`` at every noise level, into ``out[idx]``."""
    from mitokit.models.diffusion import from_model_scale

    model, dev, T = chains.model, chains.device, chains.model.num_train_timesteps
    size, positive = model.sample_size, chains.positive
    x0 = x.to(dev)
    table = smp.noise_table(chains.seed, idx, T) if chains.mode == "noise" else None
    target = torch.full((len(idx),), chains.condition, device=dev)
    inverted: dict[int, torch.Tensor] = {}
    if chains.mode == "ddim_inversion" and positive:
        cond_src = torch.as_tensor(src[idx], dtype=torch.float32, device=dev)
        inverted = smp.ddim_invert(
            chains.net,
            x0,
            cond_src,
            model=model,
            ends=[t - 1 for t in positive],
            steps=chains.steps,
            on_step=on_step,
        )
    eps = smp.start_noise(table, (3, size, size)).to(dev) if table is not None else None
    for col, t in enumerate(chains.t_grid):
        if t == 0:
            out[idx, col] = inputs[idx]
            continue
        tau = int(t) - 1
        if chains.mode == "noise":
            ttensor = torch.full((len(idx),), tau, dtype=torch.long, device=dev)
            xt = model.noise_scheduler.add_noise(x0, eps, ttensor)
        else:
            xt = inverted[tau]
        res = smp.denoise(
            chains.net,
            xt,
            target,
            scheduler=sched,
            kind=chains.kind,
            steps=chains.steps,
            timesteps=smp.timestep_sequence(tau, chains.steps, T),
            guidance=chains.guidance,
            noise=table,
            on_step=on_step,
        )
        out[idx, col] = from_model_scale(res)


__all__ = ["MODES", "Counterfactuals", "check_t_grid", "counterfactual", "write_counterfactuals"]

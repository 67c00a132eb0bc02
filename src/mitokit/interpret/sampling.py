"""The sampling loop of the conditional diffusion model, written out (DESIGN habit 2).

The schedule is a plain diffusers scheduler object built from the training scheduler's config
(:func:`make_scheduler`: ``ddpm`` :class:`~diffusers.DDPMScheduler`, ``ddim``
:class:`~diffusers.DDIMScheduler` with eta 0, ``dpm-solver``
:class:`~diffusers.DPMSolverMultistepScheduler` (DPM-Solver++, an ODE solver) and
``dpm-solver-sde`` the same class as SDE-DPM-Solver++ (a second-order solver of DDPM's reverse
stochastic equation, with fresh noise each step)); the loop is ``set_timesteps``, then per timestep
one network call and ``step(...).prev_sample`` (:func:`denoise`).

Timesteps. Every chain runs over :func:`timestep_sequence`: from a start timestep ``tau`` down
in strides of ``T // steps`` (``T``: the training steps), ``tau, tau - s, tau - 2s, ...`` while
non-negative, the last step going to the clean image. Generation from pure noise starts at
``tau = T - 1`` (the "trailing" spacing: the full noise level the model was trained at); a
counterfactual starts exactly at the level its input was noised (or inverted) to, whichever the
sampler. ``steps = T`` with ``ddpm`` is the full ancestral sampler. The stride is an integer
(DDIM's step goes from ``t`` to ``t - T // steps``), so a chain from ``T - 1`` takes exactly
``steps`` network evaluations when ``steps`` divides ``T`` (25, 50, 100 ... of 1000) and
``(T - 1) // (T // steps) + 1`` otherwise (reported as ``nfe``).

Randomness. Every chain has a noise key (a transition set, a cell) whose row of
:func:`noise_table` seeds its starting noise and the noise of each stochastic step, so a chain
gets the same noise whatever batch it runs in; a stochastic step over several timesteps combines
the full chain's noises (coupled strides). Both are explained in :mod:`~mitokit.interpret.noise`.

Which sampler. The ODE solvers (DDIM, DPM-Solver++) reach DDPM's distribution only where the
probability-flow equation and the reverse SDE share their marginals. With classifier-free
guidance and the clean estimate clipped they need not: the guided prediction is not the score
of any distribution, and the clip acts on each equation differently. The stochastic samplers
solve DDPM's own equation with fewer, larger steps. On the AMi-Br CPU model, guidance 3, over
96 transition sets with coupled strides: SDE-DPM-Solver++ at 25 steps within 0.012 of the
DDPM-1000 score curve (standard error 0.012) and at 50 within 0.009 (0.006), where DDPM's own
25-step chain is 0.095 low (0.016); DPM-Solver++ sat +0.10 above DDPM-1000 at c = 0 at 25 and
50 steps, and DDIM within 0.05 (standard error 0.033: it shares only the starting noise).
For a fast sampler of the paper's DDPM, ``dpm-solver-sde`` at 25 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mitokit.errors import MitokitError
from mitokit.interpret.noise import (
    _ddpm_step_std,
    _step_generators,
    _step_noise,
    interval_noise,
    interval_noise_weights,
    noise_table,
    start_noise,
)

SAMPLERS = ("ddpm", "ddim", "dpm-solver", "dpm-solver-sde")
#: The samplers that draw fresh noise at every step (from the noise table).
STOCHASTIC = ("ddpm", "dpm-solver-sde")
#: Network precisions for sampling: float32, or bfloat16 autocast (CUDA only; the scheduler's
#: arithmetic stays in float32).
PRECISIONS = ("fp32", "bf16")
_ALIASES = {
    "dpm_solver": "dpm-solver",
    "dpmsolver": "dpm-solver",
    "dpm": "dpm-solver",
    "dpm_solver_sde": "dpm-solver-sde",
    "sde-dpmsolver++": "dpm-solver-sde",
    "dpm-sde": "dpm-solver-sde",
}
#: Steps used when none are given: the full chain for DDPM, the usual few for the others.
DEFAULT_STEPS = {"ddim": 50, "dpm-solver": 25, "dpm-solver-sde": 50}


def sampler_name(kind: str) -> str:
    """The canonical name of a sampler (``dpm_solver`` -> ``dpm-solver``).

    Raises:
        MitokitError: An unknown sampler.
    """
    name = _ALIASES.get(str(kind).lower(), str(kind).lower())
    if name not in SAMPLERS:
        raise MitokitError(f"unknown scheduler {kind!r}; choose one of {', '.join(SAMPLERS)}")
    return name


def make_scheduler(model: Any, kind: str) -> Any:
    """A fresh sampling scheduler built from the model's training scheduler config.

    Every sampler treats the predicted clean image alike: DDPM and DDIM clip it to
    ``[-r, r]`` when the training config says ``clip_sample`` (``r``: ``clip_sample_range``);
    DPM-Solver++ has no such option and is given thresholding with ``sample_max_value = r``,
    which (its threshold never falls below 1) is the same clip for ``r = 1``. Without it, a
    guided DPM-Solver chain runs off the data range where DDPM and DDIM do not, and their
    score curves part (on the AMi-Br CPU model, 16 sets, guidance 3: +0.14 at c = 0 without,
    +0.07 with).

    The clip is not neutral between samplers. DDPM's posterior mean and DPM-Solver++ build the
    next sample from the clipped clean image and the current sample; diffusers' DDIM step
    clips the clean image but keeps the network's own noise estimate. While the clip bites
    (strong guidance) the two deterministic samplers therefore follow different equations and
    do not converge to one another with more steps: on the AMi-Br CPU model, guidance 3, DDIM
    and DPM-Solver++ at 200 steps end 29 grey levels apart (mean absolute difference) with the
    clip and 0.5 without it.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    name = sampler_name(kind)
    config = model.noise_scheduler.config
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    algorithm = "sde-dpmsolver++" if name == "dpm-solver-sde" else "dpmsolver++"
    if config.get("clip_sample", False):
        return DPMSolverMultistepScheduler.from_config(
            config,
            algorithm_type=algorithm,
            thresholding=True,
            sample_max_value=float(config.get("clip_sample_range", 1.0)),
        )
    return DPMSolverMultistepScheduler.from_config(config, algorithm_type=algorithm)


class _Bf16Net(torch.nn.Module):
    """A denoiser run under CUDA bf16 autocast, its output back in float32."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = self.net(*args, **kwargs)
        return out.float()


def with_precision(net: torch.nn.Module, precision: str, device: torch.device) -> torch.nn.Module:
    """``net`` as is for ``fp32``; under bf16 autocast for ``bf16`` (which needs CUDA).

    Raises:
        MitokitError: An unknown precision, or ``bf16`` off CUDA.
    """
    name = str(precision).lower()
    if name not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise MitokitError(f"unknown precision {precision!r}; choose one of {choices}")
    if name == "fp32":
        return net
    if torch.device(device).type != "cuda":
        raise MitokitError("precision bf16 needs a CUDA device; use fp32 on the CPU")
    return _Bf16Net(net).eval()


def compiled(net: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``net`` through :func:`torch.compile` (one graph per batch shape) when ``enabled``.

    Compilation costs its first calls (about 50 s for the AMi-Br 32 px model on two CPU
    threads) and then runs every step faster (there: DDIM-25 on 48 sets 53 -> 34 s): worth it
    for long runs, not for a few sets.
    """
    return torch.compile(net, dynamic=False) if enabled else net


def sampling_net(
    model: Any, device: str | torch.device | None, precision: str, compile_net: bool
) -> tuple[Any, torch.nn.Module, torch.device]:
    """The model moved to ``device`` in eval mode, its sampling network and the device.

    The network is the model's sampling weights (:func:`with_precision`, :func:`compiled`).
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    net = compiled(with_precision(model.sampling_net(), precision, dev), compile_net)
    return model, net, dev


def resolve_steps(kind: str, steps: int | None, num_train_timesteps: int) -> int:
    """``steps`` checked against ``T``; the sampler's default when None."""
    name = sampler_name(kind)
    if steps is None:
        steps = num_train_timesteps if name == "ddpm" else DEFAULT_STEPS[name]
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise MitokitError(f"steps must be a positive integer, got {steps!r}")
    if steps > num_train_timesteps:
        raise MitokitError(
            f"steps {steps} exceed the {num_train_timesteps} timesteps the model was trained with"
        )
    return int(steps)


def timestep_sequence(start: int, steps: int, num_train_timesteps: int) -> list[int]:
    """Descending timesteps ``start, start - s, ...`` (>= 0) with stride ``s = T // steps``.

    Raises:
        MitokitError: ``start`` outside ``[0, T - 1]``.
    """
    if not 0 <= int(start) < num_train_timesteps:
        raise MitokitError(f"start timestep {start} outside [0, {num_train_timesteps - 1}]")
    stride = max(1, num_train_timesteps // int(steps))
    return list(range(int(start), -1, -stride))


def guided_prediction(
    net: torch.nn.Module,
    x: torch.Tensor,
    timestep: int,
    condition: torch.Tensor,
    guidance: float,
) -> torch.Tensor:
    """The network's output at ``timestep``, with classifier-free guidance when ``w != 1``.

    ``null + w * (cond - null)``: the conditional and the null predictions come from one batch
    of twice the size. Items whose condition is NaN (the null condition) are unaffected.
    """
    t = torch.tensor(int(timestep), device=x.device)
    if float(guidance) == 1.0 or bool(torch.isnan(condition).all()):
        return net(x, t, condition)
    n = x.shape[0]
    nulls = torch.full_like(condition, float("nan"))
    out = net(torch.cat([x, x]), t, torch.cat([condition, nulls]))
    cond, uncond = out[:n], out[n:]
    return uncond + float(guidance) * (cond - uncond)


def denoise(
    net: torch.nn.Module,
    sample: torch.Tensor,
    condition: torch.Tensor,
    *,
    scheduler: Any,
    kind: str,
    steps: int,
    timesteps: Sequence[int],
    guidance: float = 1.0,
    noise: np.ndarray | None = None,
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Run a chain from ``sample`` (at noise level ``timesteps[0]``) to a clean image.

    Args:
        net: The denoiser (``net(x, t, condition)``), in eval mode.
        sample: ``(B, 3, S, S)`` samples at timestep ``timesteps[0]``.
        condition: ``(B,)`` conditions (NaN: the null condition).
        scheduler: A scheduler from :func:`make_scheduler` of sampler ``kind``.
        kind: One of :data:`SAMPLERS`.
        steps: The sampler's step count (sets DDIM's stride ``T // steps``).
        timesteps: The chain, from :func:`timestep_sequence`.
        guidance: Classifier-free guidance scale (1: none).
        noise: ``(B, T + 1)`` seeds of the per-step noise (:func:`noise_table`); needed by
            the :data:`STOCHASTIC` samplers only.
        on_step: Called after each step (progress).

    Returns:
        ``(B, 3, S, S)`` images in the model's scale ([-1, 1]).
    """
    name = sampler_name(kind)
    ts = [int(t) for t in timesteps]
    if name == "ddim":
        scheduler.set_timesteps(int(steps))  # DDIM's step goes from t to t - T // steps
    else:
        scheduler.set_timesteps(timesteps=ts)
    if name in STOCHASTIC and noise is None:
        raise ValueError(f"the {name} sampler needs a noise table for its per-step noise")
    x = sample
    shape = tuple(sample.shape[1:])
    with torch.no_grad():
        for k, t in enumerate(ts):
            t_next = ts[k + 1] if k + 1 < len(ts) else -1
            out = guided_prediction(net, x, t, condition, guidance)
            # the step's noise is drawn while an accelerator still runs the network call
            z = None
            if name in STOCHASTIC and t - t_next > 1:
                z = interval_noise(noise, scheduler.alphas_cumprod, t, t_next, shape)
            if name == "ddpm":
                x = scheduler.step(out, t, x, generator=_step_generators(noise, t)).prev_sample
                if z is not None and t > 0:  # swap the z_t it drew for the interval's noise
                    z = z - _step_noise(noise, t, shape)
                    std = _ddpm_step_std(scheduler.alphas_cumprod, t, t_next)
                    x = x + std * z.to(x.device, x.dtype)
            elif name == "dpm-solver-sde":
                z = z if z is not None else _step_noise(noise, t, shape)
                x = scheduler.step(out, t, x, variance_noise=z.to(x.device)).prev_sample
            elif name == "ddim":
                x = scheduler.step(out, t, x, eta=0.0).prev_sample
            else:
                x = scheduler.step(out, t, x).prev_sample
            if on_step is not None:
                on_step()
    return x


def ddim_invert(
    net: torch.nn.Module,
    sample: torch.Tensor,
    condition: torch.Tensor,
    *,
    model: Any,
    ends: Sequence[int],
    steps: int,
    on_step: Callable[[], None] | None = None,
) -> dict[int, torch.Tensor]:
    """Deterministic DDIM inversion of clean images to each timestep in ``ends``.

    The inverse of :func:`denoise` with ``ddim``: the chain to ``tau`` runs up through
    ``r, r + s, ..., tau`` (``s = T // steps``, ``r = tau mod s``), each step a
    :class:`~diffusers.DDIMInverseScheduler` step from level ``g - s`` (the clean image below 0)
    to ``g``, with the network evaluated at the sample's current level ``max(g - s, 0)`` and
    the given condition (no guidance). Ends sharing a residue share one chain.

    Args:
        net: The denoiser, in eval mode.
        sample: ``(B, 3, S, S)`` clean images in the model's scale.
        condition: ``(B,)`` conditions of the inversion (NaN: the null condition).
        model: The :class:`~mitokit.models.diffusion.DiffusionModel` (its training schedule).
        ends: Timesteps to invert to, each in ``[0, T - 1]``.
        steps: DDIM steps over the whole range (stride ``T // steps``).
        on_step: Called after each step (progress).

    Returns:
        Timestep -> ``(B, 3, S, S)`` inverted samples.
    """
    from diffusers import DDIMInverseScheduler

    T = int(model.num_train_timesteps)
    inverse = DDIMInverseScheduler.from_config(model.noise_scheduler.config)
    inverse.set_timesteps(int(steps))
    stride = T // int(steps)
    wanted = sorted({int(e) for e in ends})
    for e in wanted:
        if not 0 <= e < T:
            raise MitokitError(f"inversion timestep {e} outside [0, {T - 1}]")
    out: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for residue in sorted({e % stride for e in wanted}):
            targets = [e for e in wanted if e % stride == residue]
            x = sample
            for g in range(residue, max(targets) + 1, stride):
                level = torch.tensor(max(g - stride, 0), device=x.device)
                eps = net(x, level, condition)
                x = inverse.step(eps, g, x).prev_sample
                if g in targets:
                    out[g] = x
                if on_step is not None:
                    on_step()
    return out


def resolve_guidance(model: Any, guidance: float | None) -> float:
    """The guidance scale: ``guidance``, or the model's setting when None; must be >= 0."""
    g = model.settings["guidance"] if guidance is None else guidance
    try:
        value = float(g)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise MitokitError(f"guidance must be a number >= 0, got {g!r}")
    return value


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; a clear error for CUDA without one."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MitokitError("device cuda requested but no CUDA device is available")
    return dev


def progress_bar(*, total: int, desc: str, enabled: bool) -> Any:
    """The tqdm bar of a sampling run (network calls done); silent unless ``enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


__all__ = [
    "DEFAULT_STEPS",
    "PRECISIONS",
    "SAMPLERS",
    "STOCHASTIC",
    "compiled",
    "ddim_invert",
    "denoise",
    "guided_prediction",
    "progress_bar",
    "interval_noise",
    "interval_noise_weights",
    "make_scheduler",
    "noise_table",
    "resolve_device",
    "resolve_guidance",
    "resolve_steps",
    "sampler_name",
    "sampling_net",
    "start_noise",
    "timestep_sequence",
    "with_precision",
]

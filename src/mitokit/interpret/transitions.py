"""Transitions: the same cell generated along a range of conditions, from negative to positive.

A transition set is one starting noise (and, for the stochastic samplers, one sequence of
per-step noise) denoised once per condition ``c`` of a grid (0, 0.1, ..., 1): the images of a set
differ only by the condition, so the set shows how the model changes a cell as its score rises.
Many sets run at once, sets x conditions in one batch (:func:`generate_transitions`). A patch
classifier ensemble then scores every image (:func:`score_transitions`); the score-vs-condition
curve, the good sets (:func:`~mitokit.interpret.selection.good_sets`) and the figures are written
by :func:`write_transitions`.
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
from mitokit.interpret.outputs import write_transitions


@dataclass
class Transitions:
    """Generated transition sets.

    Attributes:
        images: ``(n_sets, n_conditions, S, S, 3)`` uint8.
        conditions: ``(n_conditions,)`` the conditions, in column order.
        set_ids: ``(n_sets,)`` the sets' noise keys (set ``j`` is the same images whenever it
            is generated with the same seed, model and sampler).
        scheduler: Sampler name.
        steps: Sampler steps.
        guidance: Classifier-free guidance scale.
        seed: The seed.
        nfe: Network evaluations per image (steps, doubled under guidance).
        seconds: Wall time of the generation.
    """

    images: np.ndarray
    conditions: np.ndarray
    set_ids: np.ndarray
    scheduler: str
    steps: int
    guidance: float
    seed: int
    nfe: int
    seconds: float

    @property
    def n_sets(self) -> int:
        """Number of sets."""
        return int(self.images.shape[0])


def check_conditions(conditions: Sequence[float]) -> np.ndarray:
    """Conditions as a float array, each in [0, 1]."""
    c = np.asarray(conditions, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise MitokitError("no conditions given")
    if not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
        raise MitokitError(f"conditions must lie in [0, 1], got {c.tolist()}")
    return c


def generate_transitions(
    model: Any,
    n_sets: int,
    conditions: Sequence[float],
    *,
    scheduler: str = "ddpm",
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    first_set: int = 0,
    precision: str = "fp32",
    compile_net: bool = False,
    progress: bool = False,
) -> Transitions:
    """Generate ``n_sets`` transition sets over ``conditions``.

    Set ``j`` (``first_set <= j < first_set + n_sets``) starts from noise seeded by
    ``(seed, j)`` and, with ``ddpm``, draws its per-step noise from seeds of ``(seed, j)`` too
    (:func:`~mitokit.interpret.sampling.noise_table`); every condition of the set gets the same
    noise, so two equal conditions give equal images, and the result does not depend on
    ``batch_size`` (up to floating-point rounding: CPU kernels may round differently for other
    batch sizes, a +-1 grey level here and there; the same call gives the same bytes).

    Args:
        model: A :class:`~mitokit.models.diffusion.DiffusionModel` (its sampling weights, the
            moving average, are used).
        n_sets: Number of sets.
        conditions: Conditions in [0, 1], one image per set each.
        scheduler: ``ddpm`` (stochastic; default steps T), ``ddim`` (deterministic, eta 0;
            default 50), ``dpm-solver`` (DPM-Solver++ 2M; default 25) or ``dpm-solver-sde``
            (SDE-DPM-Solver++ 2M, stochastic; default 50).
        steps: Sampler steps (stride ``T // steps``, from ``T - 1``).
        guidance: Classifier-free guidance scale; None: the model's setting (1 = none).
        seed: Seed of all noise.
        batch_size: Images per network call (sets per batch: ``batch_size // n_conditions``,
            at least one); guidance doubles the network batch.
        device: ``cpu``, ``cuda`` or ``auto``.
        first_set: Key of the first set (to continue or shard a generation).
        precision: ``fp32`` or ``bf16`` (the network under bf16 autocast; CUDA only).
        compile_net: Run the network through :func:`torch.compile` (see
            :func:`~mitokit.interpret.sampling.compiled`).
        progress: Show a progress bar on stderr.

    Returns:
        The :class:`Transitions`.
    """
    if isinstance(n_sets, bool) or not isinstance(n_sets, (int, np.integer)) or n_sets < 1:
        raise MitokitError(f"n_sets must be a positive integer, got {n_sets!r}")
    cond = check_conditions(conditions)
    name = smp.sampler_name(scheduler)
    T = model.num_train_timesteps
    steps = smp.resolve_steps(name, steps, T)
    g = smp.resolve_guidance(model, guidance)
    model, net, dev = smp.sampling_net(model, device, precision, compile_net)
    set_ids = np.arange(int(first_set), int(first_set) + int(n_sets))
    return _generate(
        net, model, set_ids, cond, name, steps, g, int(seed), int(batch_size), dev, progress
    )


def _generate(
    net: torch.nn.Module,
    model: Any,
    set_ids: np.ndarray,
    cond: np.ndarray,
    name: str,
    steps: int,
    g: float,
    seed: int,
    batch_size: int,
    dev: torch.device,
    progress: bool,
) -> Transitions:
    """Denoise every set at every condition, ``batch_size // len(cond)`` sets per batch."""
    from mitokit.models.diffusion import from_model_scale

    T = model.num_train_timesteps
    timesteps = smp.timestep_sequence(T - 1, steps, T)
    size = model.sample_size
    k = len(cond)
    n_sets = len(set_ids)
    per_batch = max(1, batch_size // k)
    images = np.empty((n_sets, k, size, size, 3), dtype=np.uint8)
    sched = smp.make_scheduler(model, name)
    t0 = time.perf_counter()
    with smp.progress_bar(
        total=math.ceil(n_sets / per_batch) * len(timesteps),
        desc=f"transitions ({name}, {len(timesteps)} steps)",
        enabled=progress,
    ) as bar:
        for start in range(0, n_sets, per_batch):
            ids = set_ids[start : start + per_batch]
            table = np.repeat(smp.noise_table(seed, ids, T), k, axis=0)
            x = smp.start_noise(table, (3, size, size)).to(dev) * sched.init_noise_sigma
            c = torch.as_tensor(np.tile(cond, len(ids)), dtype=torch.float32, device=dev)
            out = smp.denoise(
                net,
                x,
                c,
                scheduler=sched,
                kind=name,
                steps=steps,
                timesteps=timesteps,
                guidance=g,
                noise=table,
                on_step=bar.update,
            )
            images[start : start + len(ids)] = from_model_scale(out).reshape(
                len(ids), k, size, size, 3
            )
    seconds = time.perf_counter() - t0
    return Transitions(
        images=images,
        conditions=cond,
        set_ids=set_ids,
        scheduler=name,
        steps=steps,
        guidance=g,
        seed=seed,
        nfe=len(timesteps) * (2 if g != 1.0 else 1),
        seconds=seconds,
    )


def score_images(
    classifier: torch.nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 64,
    tta: bool = False,
    crop: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Classifier scores of ``(..., S, S, 3)`` uint8 images, in the images' leading shape.

    ``crop``: the classifier's training centre crop, applied when the images are larger.
    """
    from mitokit.models.classifier import predict_images

    arr = np.asarray(images)
    flat = arr.reshape(-1, *arr.shape[-3:])
    use_crop = crop if crop is not None and crop < min(arr.shape[-3:-1]) else None
    scores = predict_images(
        classifier,
        list(flat),
        batch_size=batch_size,
        tta=tta,
        crop=use_crop,
        device=smp.resolve_device(device),
    )
    return scores.reshape(arr.shape[:-3])


def score_transitions(
    transitions: Transitions,
    classifier: torch.nn.Module,
    *,
    batch_size: int = 64,
    tta: bool = False,
    crop: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``(n_sets, n_conditions)`` scores of the generated images by a classifier (ensemble)."""
    return score_images(
        classifier, transitions.images, batch_size=batch_size, tta=tta, crop=crop, device=device
    )


__all__ = [
    "Transitions",
    "check_conditions",
    "generate_transitions",
    "score_images",
    "score_transitions",
    "write_transitions",
]

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

import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.errors import MitokitError
from mitokit.interpret import sampling as smp

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
    from tqdm import tqdm

    from mitokit.models.diffusion import from_model_scale

    name = mode_name(mode)
    c_target = float(condition)
    if not (math.isfinite(c_target) and 0.0 <= c_target <= 1.0):
        raise MitokitError(f"condition must lie in [0, 1], got {condition!r}")
    if name == "ddim_inversion":
        if scheduler is not None and smp.sampler_name(scheduler) != "ddim":
            raise MitokitError("ddim-inversion mode denoises with ddim; drop --scheduler")
        kind = "ddim"
    else:
        kind = smp.sampler_name(scheduler or "ddpm")
    T = model.num_train_timesteps
    steps = smp.resolve_steps(kind, steps, T)
    ts = check_t_grid(t_grid, T)
    g = smp.resolve_guidance(model, guidance)
    dev = smp.resolve_device(device)
    model = model.to(dev).eval()
    net = smp.compiled(smp.with_precision(model.sampling_net(), precision, dev), compile_net)
    size = model.sample_size
    x_all, inputs = _as_batch(images, size)
    n = x_all.shape[0]
    src = None
    if name == "ddim_inversion":
        src = np.full(n, np.nan)
        if source_condition is not None:
            s = np.asarray(source_condition, dtype=np.float64).reshape(-1)
            if s.size not in (1, n):
                raise MitokitError(f"{s.size} source conditions for {n} images")
            src = np.broadcast_to(s, (n,)).astype(np.float64).copy()
            bad = np.isfinite(src) & ((src < 0) | (src > 1))
            if bad.any():
                raise MitokitError("source conditions must lie in [0, 1] (or NaN for null)")
    out = np.empty((n, len(ts), size, size, 3), dtype=np.uint8)
    positive = [int(t) for t in ts if t > 0]
    chain_len = {t: len(smp.timestep_sequence(t - 1, steps, T)) for t in positive}
    stride = max(1, T // steps)
    inv_len = sum(
        max(e for e in (t - 1 for t in positive) if e % stride == r) // stride + 1
        for r in {(t - 1) % stride for t in positive}
    )
    bs = max(1, int(batch_size))
    per_batch = sum(chain_len.values()) + (inv_len if name == "ddim_inversion" else 0)
    sched = smp.make_scheduler(model, kind)
    t0 = time.perf_counter()
    with tqdm(
        total=math.ceil(n / bs) * per_batch,
        desc=f"counterfactuals ({name}, {kind})",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, n, bs):
            idx = np.arange(start, min(start + bs, n))
            x0 = x_all[idx].to(dev)
            table = smp.noise_table(seed, idx, T) if name == "noise" else None
            target = torch.full((len(idx),), c_target, device=dev)
            inverted: dict[int, torch.Tensor] = {}
            if name == "ddim_inversion" and positive:
                cond_src = torch.as_tensor(src[idx], dtype=torch.float32, device=dev)
                inverted = smp.ddim_invert(
                    net,
                    x0,
                    cond_src,
                    model=model,
                    ends=[t - 1 for t in positive],
                    steps=steps,
                    on_step=bar.update,
                )
            eps = smp.start_noise(table, (3, size, size)).to(dev) if table is not None else None
            for col, t in enumerate(ts):
                if t == 0:
                    out[idx, col] = inputs[idx]
                    continue
                tau = int(t) - 1
                if name == "noise":
                    ttensor = torch.full((len(idx),), tau, dtype=torch.long, device=dev)
                    xt = model.noise_scheduler.add_noise(x0, eps, ttensor)
                else:
                    xt = inverted[tau]
                res = smp.denoise(
                    net,
                    xt,
                    target,
                    scheduler=sched,
                    kind=kind,
                    steps=steps,
                    timesteps=smp.timestep_sequence(tau, steps, T),
                    guidance=g,
                    noise=table,
                    on_step=bar.update,
                )
                out[idx, col] = from_model_scale(res)
    return Counterfactuals(
        images=out,
        inputs=inputs,
        t_grid=ts,
        mode=name,
        condition=c_target,
        source_condition=src,
        scheduler=kind,
        steps=steps,
        guidance=g,
        seed=int(seed),
        seconds=time.perf_counter() - t0,
    )


def write_counterfactuals(
    out: str | os.PathLike,
    result: Counterfactuals,
    ids: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    thresholds: tuple[float, float] = (0.5, 0.9),
    labels: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    figure_workers: int | None = None,
) -> dict[str, Any]:
    """Write counterfactuals (and their likeness indices) into the folder ``out``.

    Files::

        images/<id>_t0100.png   one PNG per cell and noise level
        strips/<id>.png          the cell's strip: columns = t, scores printed
        likeness.csv             id, score_t<t> per t, t_resembles, t_convincing (with scores)
        likeness.png             per label group, the fraction of cells reached by each t
        summary.json             settings, and with scores how many cells reach each threshold

    ``t_resembles`` / ``t_convincing``: the smallest t scoring >= ``thresholds[0]`` /
    ``thresholds[1]``; empty when never reached. With ``labels`` (each cell's label, e.g. its
    rater vote fraction; NaN where unknown) likeness.csv gains a ``label`` column and the
    summary Spearman's correlation of each index with the label, and, with t = 0 in the grid,
    the same over the cells whose input scores below each threshold and the input score's own
    correlation (:func:`~mitokit.interpret.selection.likeness_correlations`).
    ``figure_workers``: processes drawing the strips (None: as many as
    :func:`~mitokit.interpret.figures.figure_workers` decides; 0: here).

    Returns:
        The summary.
    """
    from PIL import Image

    from mitokit.interpret.figures import likeness_figure, write_grid_figures
    from mitokit.interpret.selection import (
        likeness_correlations,
        likeness_curves,
        likeness_index,
    )

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    ids = [str(i) for i in ids]
    if len(ids) != result.images.shape[0]:
        raise ValueError(f"{len(ids)} ids for {result.images.shape[0]} cells")
    safe = _safe_names(ids)
    ts = result.t_grid
    width = max(4, len(str(int(ts.max()))))
    strips = []
    for i, name in enumerate(safe):
        for k, t in enumerate(ts):
            Image.fromarray(result.images[i, k]).save(out / "images" / f"{name}_t{t:0{width}d}.png")
        kwargs = {
            "images": result.images[i : i + 1],
            "col_labels": ["input" if t == 0 else f"t={t}" for t in ts],
            "scores": None if scores is None else scores[i : i + 1],
            "title": f"{ids[i]} -> c={result.condition:g} ({result.mode.replace('_', ' ')})",
        }
        strips.append((out / "strips" / f"{name}.png", kwargs))
    write_grid_figures(strips, workers=figure_workers)
    summary: dict[str, Any] = {
        **(meta or {}),
        "n_cells": len(ids),
        "t_grid": [int(t) for t in ts],
        "mode": result.mode,
        "condition": result.condition,
        "source_condition": "null"
        if result.source_condition is not None and np.isnan(result.source_condition).all()
        else (None if result.source_condition is None else "given"),
        "scheduler": result.scheduler,
        "steps": result.steps,
        "guidance": result.guidance,
        "seed": result.seed,
        "seconds": round(result.seconds, 3),
        "scored": scores is not None,
    }
    if scores is not None:
        li = likeness_index(scores, ts, thresholds=thresholds)
        cols = [f"score_t{int(t)}" for t in ts]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        lab = None
        if labels is not None:
            lab = np.asarray(labels, dtype=np.float64).ravel()
            if lab.size != len(ids):
                raise ValueError(f"{lab.size} labels for {len(ids)} cells")
            if not np.isfinite(lab).any():
                lab = None
        writer.writerow(
            ["id", *([] if lab is None else ["label"]), *cols, "t_resembles", "t_convincing"]
        )
        for i, oid in enumerate(ids):
            writer.writerow(
                [
                    oid,
                    *([] if lab is None else ["" if not np.isfinite(lab[i]) else f"{lab[i]:.6g}"]),
                    *(f"{s:.6g}" for s in scores[i]),
                    *("" if not np.isfinite(v) else str(int(v)) for v in li[i]),
                ]
            )
        (out / "likeness.csv").write_text(buf.getvalue(), encoding="utf-8")
        summary["thresholds"] = {"resembles": thresholds[0], "convincing": thresholds[1]}
        summary["n_resembles"] = int(np.isfinite(li[:, 0]).sum())
        summary["n_convincing"] = int(np.isfinite(li[:, 1]).sum())
        summary["median_t_resembles"] = _nan_median(li[:, 0])
        summary["median_t_convincing"] = _nan_median(li[:, 1])
        likeness_figure(
            likeness_curves(li, ts, lab),
            out / "likeness.png",
            thresholds=thresholds,
            title=f"{len(ids)} cells -> c={result.condition:g}",
        )
        if lab is not None:
            corr = likeness_correlations(scores, ts, lab, thresholds=thresholds)
            summary["spearman_vs_label"] = corr["all"]
            if "beyond_input" in corr:
                summary["spearman_vs_label_beyond_input"] = corr["beyond_input"]
                summary["spearman_input_score_vs_label"] = corr["input_score"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _nan_median(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if v.size else None


def _safe_names(ids: Sequence[str]) -> list[str]:
    """File-name-safe, unique versions of ids."""
    import re

    out, seen = [], set()
    for i, oid in enumerate(ids):
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", oid).strip("._") or f"cell{i}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
    return out


__all__ = ["MODES", "Counterfactuals", "check_t_grid", "counterfactual", "write_counterfactuals"]

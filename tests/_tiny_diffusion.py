"""Helpers of the diffusion tests: a tiny conditional UNet and a few synthetic cell patches."""

from __future__ import annotations

from pathlib import Path

import torch

from mitokit.engines.task import get_task
from mitokit.models.diffusion import TINY_MODEL

#: 16x16 images and a 100-step schedule keep every sampling chain short on CPU.
TINY = {**TINY_MODEL, "sample_size": 16, "num_train_timesteps": 100}


def tiny_model(seed: int = 0, **overrides):
    """A randomly initialised tiny :class:`~mitokit.models.diffusion.DiffusionModel`."""
    torch.manual_seed(seed)
    return get_task("diffusion").build_model({**TINY, **overrides}).eval()


def write_cells(root: Path, n: int = 8, size: int = 32, seed: int = 0) -> Path:
    """``n`` synthetic cell patches with rater votes (``mitokit synth patches``); the labels."""
    from mitokit.data.synthetic import generate_patches
    from mitokit.data.synthetic.export import write_patch_dataset

    batch = generate_patches(n, seed=seed, size=size)
    root.mkdir(parents=True, exist_ok=True)
    write_patch_dataset(root, batch.images, batch.cells, seed=seed)
    return root / "labels.csv"

"""Ensembles: the mean score of N seeds of a model, loaded together or configured for training.

:class:`PatchEnsemble` averages its members' scores (the first paper's scorer, which the
diffusion work relies on); :func:`load_ensemble` loads saved models (seed folders expanded by
:func:`~mitokit.models.checkpoint.expand_checkpoints`) as one; :func:`ensemble_configs` makes
the per-seed configs that train one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mitokit.errors import MitokitError, input_error
from mitokit.models.checkpoint import expand_checkpoints, load_model
from mitokit.models.classifier.model import model_scores
from mitokit.models.classifier.patch_task import PATCH_CLASSIFIER


class PatchEnsemble(nn.Module):
    """Average of the scores of several models (sigmoid probabilities for classifiers).

    Every member must give the same kind of score (all logits, or all values).

    Args:
        models: The members (:class:`~mitokit.models.backbones.ResNetScorer`).

    Raises:
        MitokitError: No member, or members of different output kinds.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise MitokitError("an ensemble needs at least one model")
        kinds = {getattr(m, "output", "logit") for m in models}
        if len(kinds) > 1:
            raise MitokitError(f"ensemble members give different outputs: {sorted(kinds)}")
        self.members = nn.ModuleList(models)
        self.output = kinds.pop()

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean score of the members: probabilities for classifiers, values for regressors."""
        return torch.stack([model_scores(m, x) for m in self.members]).mean(dim=0)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Same as calling the ensemble: it already averages scores."""
        return self(x)


def load_ensemble(
    folders: Sequence[str | os.PathLike],
    *,
    expect_task: str | tuple[str, ...] | None = PATCH_CLASSIFIER,
    map_location: str | torch.device = "cpu",
    fold_bn: bool = True,
    backend: str = "torch",
    threads: int | None = None,
) -> tuple[PatchEnsemble, list[dict[str, Any]]]:
    """Load saved models (folders, or folders of seed folders) as one ensemble.

    Args:
        folders: Model folders written by :func:`mitokit.models.checkpoint.save_model`.
        expect_task: Task(s) the models must be of (None: any, but all the same).
        map_location: Device.
        fold_bn: Fold each member's batch norm into its convolutions
            (:func:`mitokit.models.inference.fold_batchnorm`): the same scores up to float
            rounding, faster. Off for a model that is to be trained further.
        backend: ``torch``, or ``onnx`` / ``onnx-int8``: each member runs its own graph in
            ONNX Runtime on the CPU (:func:`mitokit.models.backend.use_backend`, ``threads``
            intra-op threads), cached in its folder.

    Returns:
        (the ensemble in eval mode, the members' configs).

    Raises:
        MitokitError: A model of another task (``"is a 'tile_regressor' model, expected
            'patch_classifier'"``), or members of different tasks.
    """
    models, cfgs = [], []
    for folder in expand_checkpoints(folders):
        model, cfg = load_model(
            folder, expect_task=expect_task, map_location=map_location, fold_bn=fold_bn
        )
        if cfgs and cfg["task"] != cfgs[0]["task"]:
            raise input_error(
                folder, f"is a {cfg['task']!r} model; the first model is {cfgs[0]['task']!r}"
            )
        if backend != "torch":
            from mitokit.models.backend import use_backend

            model = use_backend(model, folder, cfg, backend, threads=threads)
        models.append(model)
        cfgs.append(cfg)
    return PatchEnsemble(models).eval(), cfgs


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def ensemble_configs(
    cfg: Mapping[str, Any],
    n: int = 3,
    *,
    seed_key: str = "train.seed",
    out_key: str = "train.out",
) -> list[dict[str, Any]]:
    """Per-seed copies of a training config for an ensemble of ``n`` models.

    Copy ``i`` gets seed ``base + i`` (base: the config's ``train.seed``, 0 when unset) and,
    when the config names an output folder, ``<out>/seed<i>``; everything else is unchanged, so
    the members differ only in their seed (initialisation, batch order, augmentation; the
    train / validation split has its own ``data.split_seed`` and stays the same). Train each
    with :func:`mitokit.engines.train.train`, then :func:`load_ensemble` on ``<out>``.

    Args:
        cfg: A config mapping (sections ``task``, ``model``, ``data``, ``optim``, ``train``).
        n: Number of members (3 in the first paper).
        seed_key: Dotted path of the seed.
        out_key: Dotted path of the output folder.

    Raises:
        MitokitError: ``n < 1`` or a seed that is not an integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MitokitError(f"an ensemble needs n >= 1 models, got {n!r}")
    base = _get(cfg, seed_key)
    base = 0 if base is None else base
    if isinstance(base, bool) or not isinstance(base, int):
        raise MitokitError(f"{seed_key} must be an integer, got {base!r}")
    out_dir = _get(cfg, out_key)
    configs = []
    for i in range(n):
        c = copy.deepcopy(dict(cfg))
        _set(c, seed_key, base + i)
        if out_dir is not None:
            _set(c, out_key, str(Path(out_dir) / f"seed{i}"))
        configs.append(c)
    return configs


__all__ = ["PatchEnsemble", "ensemble_configs", "load_ensemble"]

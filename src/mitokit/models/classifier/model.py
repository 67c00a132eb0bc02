"""The classifiers' network: a ResNet with one output, and how its scores are read.

The patch classifier, BC, Reg and Reg-NS are all :class:`~mitokit.models.backbones.ResNetScorer`
networks with one output (:func:`build_scorer`): a logit for the classifiers (score = its
sigmoid), a value for the regressor (score = the predicted tile score). Backbones and initial
weights: :mod:`mitokit.models.backbones` (never downloaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mitokit.models.backbones import ARCHS, ResNetScorer, build_resnet, load_init_weights


def build_scorer(cfg: Mapping[str, Any], *, output: str) -> ResNetScorer:
    """A ResNet with one output, from a complete ``model`` section.

    Args:
        cfg: ``arch``, ``weights`` (a local file or None), ``input_size``, ``dropout``.
        output: ``"logit"`` (classifiers) or ``"value"`` (regressors).
    """
    return build_resnet(
        cfg["arch"],
        out_features=1,
        weights=cfg["weights"],
        input_size=cfg["input_size"],
        dropout=cfg["dropout"],
        output=output,
    )


def model_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scores of a batch: ``model.scores`` where it has one, else the sigmoid of its output."""
    if hasattr(model, "scores"):
        return model.scores(x)
    return torch.sigmoid(model(x))


__all__ = [
    "ARCHS",
    "ResNetScorer",
    "build_resnet",
    "build_scorer",
    "load_init_weights",
    "model_scores",
]

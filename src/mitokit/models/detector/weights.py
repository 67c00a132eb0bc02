"""Initial weights of a detector from a local file: a whole detector or a ResNet backbone only.

Read without running code (:func:`~mitokit.models.backbones.read_state_dict`); never downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mitokit.errors import input_error
from mitokit.models.backbones import describe_mismatch, read_state_dict

if TYPE_CHECKING:
    from mitokit.models.detector.model import MitosisDetector


def load_detector_weights(model: MitosisDetector, path: str | Path) -> dict[str, Any]:
    """Load a local state dict into ``model``: a whole detector, or a ResNet backbone only.

    A file with ``rpn.`` or ``roi_heads.`` keys is a detector (torchvision's names, e.g. a
    mitokit detector's ``model.safetensors`` or a torchvision Faster R-CNN of the same arch);
    its box predictor is skipped when its class count differs. Any other file is a ResNet
    state dict (torchvision's names, optionally prefixed ``module.`` / ``backbone.`` /
    ``body.`` ..., or a mitokit classifier's ``features.``) loaded into the backbone; its
    ``fc`` is ignored.

    Returns:
        ``{"kind": "detector" | "backbone", "loaded": n_tensors, "skipped": [keys]}``.

    Raises:
        MitokitError: An unreadable file, or keys that are missing, unexpected or of the wrong
            shape (the message names the file and the first such key).
    """
    from mitokit.models.backbones import _strip_prefix

    state = read_state_dict(path)
    if any(k.startswith("module.") for k in state) and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith(("rpn.", "roi_heads.")) for k in state):
        own = model.state_dict()
        skipped = [
            k
            for k in state
            if k.startswith("roi_heads.box_predictor.")
            and k in own
            and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        state = {k: v for k, v in state.items() if k not in skipped}
        own_check = {k: v for k, v in own.items() if k not in skipped}
        problem = describe_mismatch(
            own_check, state, f"a {model.arch} Faster R-CNN", ignore_batch_counts=True
        )
        target: nn.Module = model
        kind = "detector"
    else:
        if any(k.startswith("features.") for k in state):  # a mitokit ResNetScorer
            state = {
                k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")
            }
        state = _strip_prefix(state)
        if state and all(k.startswith("body.") for k in state):
            state = {k[len("body.") :]: v for k, v in state.items()}
        skipped = [k for k in state if k.startswith("fc.")]
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        target = model.backbone.body
        own = target.state_dict()
        problem = describe_mismatch(
            own, state, f"a {model.arch} backbone", ignore_batch_counts=True
        )
        kind = "backbone"
    if problem:
        raise input_error(path, problem)
    with torch.no_grad():
        own = target.state_dict()
        target.load_state_dict(
            {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}, strict=False
        )
    return {"kind": kind, "loaded": len(state), "skipped": skipped}

"""ResNet backbones for the classifiers and regressors: built offline, initialised locally.

:func:`build_resnet` makes a torchvision ResNet-18/34/50 with its last layer replaced, wrapped in
:class:`ResNetScorer`, which carries the preprocessing inside the network so that a checkpoint
holds everything a prediction needs:

1. resize: the input (float ``Bx3xHxW`` in [0, 1], any ``H x W``) is resampled to
   ``input_size x input_size`` with bilinear interpolation (antialiased when shrinking); the
   first paper's 64 x 64 cell patches are resampled to 256 this way. ``input_size=None`` keeps
   the input as it is.
2. ImageNet normalisation (mean 0.485/0.456/0.406, std 0.229/0.224/0.225).
3. the ResNet trunk, dropout, and a linear head with ``out_features`` outputs (``(B,)`` when it
   is 1).

Initial weights are random (torchvision's initialisation under the caller's torch seed) or come
from a local file the user names; nothing is ever downloaded (torchvision is always called with
``weights=None``). A weights file is read without running code: ``.safetensors`` through
:func:`safetensors.torch.load_file`, ``.pt`` / ``.pth`` / ``.bin`` through
``torch.load(weights_only=True)``, which unpickles tensors and plain containers only and refuses
any other object. The file holds a ResNet state dict (torchvision's key names, optionally
prefixed ``module.``, ``backbone.``, ``features.`` or ``model.``, or nested under a
``state_dict`` / ``model`` key); its ``fc`` layer is loaded when its shape fits the head and
skipped otherwise (an ImageNet file's 1000-class ``fc``), in which case the head keeps its
random initialisation. Any other missing, unexpected or mis-shaped key is an error naming the
file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mitokit.errors import MitokitError, input_error

ARCHS = ("resnet18", "resnet34", "resnet50")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PREFIXES = ("module.", "backbone.", "features.", "model.")
_HEAD_KEYS = ("fc.weight", "fc.bias")


class ResNetScorer(nn.Module):
    """A ResNet with resize and normalisation inside, and a linear head.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        out_features: Outputs of the head.
        input_size: Side the input is resampled to, or None to keep the input size.
        dropout: Dropout probability before the head.
        output: What the outputs are: ``"logit"`` (a probability after a sigmoid) or
            ``"value"`` (a regression target); :meth:`scores` follows it.

    Attributes:
        features: The torchvision ResNet with ``fc`` replaced by an identity.
        fc: The head.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        *,
        out_features: int = 1,
        input_size: int | None = 256,
        dropout: float = 0.0,
        output: str = "logit",
    ) -> None:
        super().__init__()
        import torchvision

        if arch not in ARCHS:
            raise MitokitError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
        if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
            raise MitokitError(f"out_features must be a positive integer, got {out_features!r}")
        if input_size is not None and (
            isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16
        ):
            raise MitokitError(f"input_size must be an integer >= 16 or null, got {input_size!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= float(dropout) < 1.0):
            raise MitokitError(f"dropout must be in [0, 1), got {dropout!r}")
        if output not in ("logit", "value"):
            raise MitokitError(f"output must be 'logit' or 'value', got {output!r}")
        self.arch = arch
        self.input_size = input_size
        self.out_features = out_features
        self.output = output
        self.features = getattr(torchvision.models, arch)(weights=None)
        width = self.features.fc.in_features
        self.features.fc = nn.Identity()
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(width, out_features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize to ``input_size`` and normalise; ``x`` is float ``Bx3xHxW`` in [0, 1]."""
        return (self.resize_input(x) - self.mean) / self.std

    def resize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (float ``Bx3xHxW`` in [0, 1]) resized to ``input_size`` where it has another
        size (antialiased when shrinking); as it is when ``input_size`` is None."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise MitokitError(f"expected a Bx3xHxW batch, got shape {tuple(x.shape)}")
        x = x.float()
        if self.input_size is not None and tuple(x.shape[-2:]) != (
            self.input_size,
            self.input_size,
        ):
            shrink = min(x.shape[-2:]) > self.input_size
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            )
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (logits or values): ``(B,)`` for one output, ``(B, K)`` otherwise."""
        out = self.fc(self.dropout(self.features(self.preprocess(x))))
        return out.squeeze(-1) if self.out_features == 1 else out

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores: sigmoid probabilities for a ``"logit"`` model, raw values otherwise."""
        out = self(x)
        return torch.sigmoid(out) if self.output == "logit" else out


def build_resnet(
    arch: str = "resnet18",
    *,
    out_features: int = 1,
    weights: str | os.PathLike | None = None,
    input_size: int | None = 256,
    dropout: float = 0.0,
    output: str = "logit",
) -> ResNetScorer:
    """A :class:`ResNetScorer`, randomly initialised or from a local weights file.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        out_features: Outputs of the head.
        weights: A local ``.safetensors`` / ``.pt`` / ``.pth`` ResNet state dict (for example
            ImageNet weights saved earlier), or None for random weights. Never downloaded.
        input_size: Side the input is resampled to inside the model (None: no resampling).
        dropout: Dropout before the head.
        output: ``"logit"`` or ``"value"`` (see :class:`ResNetScorer`).

    Raises:
        MitokitError: Bad settings, or a weights file that is missing, unreadable or does not
            fit the architecture (the message names the file).
    """
    model = ResNetScorer(
        arch, out_features=out_features, input_size=input_size, dropout=dropout, output=output
    )
    if weights is not None:
        load_init_weights(model, weights)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file, without running code from it.

    ``.safetensors`` files are read with safetensors; ``.pt``, ``.pth``, ``.bin`` and ``.ckpt``
    with ``torch.load(weights_only=True)``. A dict nesting the weights under ``state_dict`` or
    ``model`` is unwrapped.

    Raises:
        MitokitError: Missing file, unknown extension, unreadable file or non-tensor values.
    """
    p = Path(path)
    if not p.is_file():
        raise input_error(p, "weights file not found")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise input_error(p, f"unreadable safetensors file ({exc})") from None
    elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
        import pickle

        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise input_error(
                p, f"unreadable weights file (only plain tensors are loaded): {first}"
            ) from None
    else:
        raise input_error(
            p, f"unknown weights file type {suffix or '(none)'!r}; use .safetensors, .pt or .pth"
        )
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state:
        raise input_error(p, "not a state dict (expected a mapping of names to tensors)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise input_error(p, f"not a state dict: {bad[0]!r} is not a tensor")
    return {str(k): v for k, v in state.items()}


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def describe_mismatch(
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    what: str,
    *,
    ignore_batch_counts: bool = False,
) -> str | None:
    """``None`` when ``state`` fits ``own``; otherwise the first problems, in words.

    A key of ``own`` ending in ``num_batches_tracked`` may be missing from ``state``; with
    ``ignore_batch_counts`` such a key of ``state`` may also be absent from ``own``. The message
    reads ``weights do not fit <what>: ...``.
    """
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [
        k
        for k in state
        if k not in own and not (ignore_batch_counts and k.endswith("num_batches_tracked"))
    ]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (first {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first {unexpected[0]!r})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} keys of the wrong shape (first {k!r}: "
            f"{tuple(state[k].shape)} vs {tuple(own[k].shape)})"
        )
    return f"weights do not fit {what}: {'; '.join(parts)}" if parts else None


def load_init_weights(model: ResNetScorer, path: str | os.PathLike) -> dict[str, Any]:
    """Load a local ResNet state dict into ``model`` as its initial weights.

    The trunk must match exactly; the file's ``fc`` is loaded into the head when its shape fits
    and skipped otherwise (the head then keeps its random initialisation).

    Returns:
        ``{"loaded": n_tensors, "head": "loaded" | "skipped" | "absent"}``.

    Raises:
        MitokitError: The file is unreadable, or a trunk key is missing, unexpected or of the
            wrong shape (the message names the file and the first such key).
    """
    state = _strip_prefix(read_state_dict(path))
    if any(k.startswith("features.") for k in state):
        # A mitokit checkpoint: trunk under ``features.``, the head and buffers at the top.
        state = {
            (k[len("features.") :] if k.startswith("features.") else f"top:{k}"): v
            for k, v in state.items()
            if k not in ("mean", "std")
        }
        for key in _HEAD_KEYS:
            if f"top:{key}" in state:
                state[key] = state.pop(f"top:{key}")
    head = {k: state.pop(k) for k in _HEAD_KEYS if k in state}
    own = model.features.state_dict()
    problem = describe_mismatch(own, state, f"a {model.arch} backbone")
    if problem:
        raise input_error(path, problem)
    with torch.no_grad():
        model.features.load_state_dict(
            {k: v.to(own[k].dtype) for k, v in state.items()}, strict=False
        )
        head_state = model.fc.state_dict()
        fits = len(head) == 2 and all(
            tuple(head[f"fc.{k}"].shape) == tuple(v.shape) for k, v in head_state.items()
        )
        if fits:
            model.fc.load_state_dict({k: head[f"fc.{k}"] for k in head_state})
    return {
        "loaded": len(state) + (2 if fits else 0),
        "head": "loaded" if fits else ("skipped" if head else "absent"),
    }


__all__ = [
    "ARCHS",
    "ResNetScorer",
    "build_resnet",
    "describe_mismatch",
    "load_init_weights",
    "read_state_dict",
]

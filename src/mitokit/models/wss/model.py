"""The weak localiser's network: ResNet-18 to ``layer3``, a 1 x 1 instance map, aggregations.

:class:`WeakLocaliser` (the network, its image-logit aggregations and test-time views) and
:func:`build_weak_localiser` (its builder, random or from a local ResNet-18 file), with the
settings they accept. The formulation as a whole is described in :mod:`mitokit.models.wss`.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mitokit.errors import MitokitError
from mitokit.models._common import check_int
from mitokit.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from mitokit.models.wss.postprocess import TTA_VIEWS, upsample_map

WEAK_LOCALISER = "weak_localiser"
AGGREGATIONS = ("max", "mean", "embedding_mean", "embedding_max", "attention")
ATTENTIONS = ("gated", "plain")
THRESHOLD_RULES = ("roc", "max_f1", "fixed")
OFFSET_RULES = ("rot180", "none")
POINT_RULES = ("components", "peaks")
WIDTH = 256  # channels of ResNet-18's layer3
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


class WeakLocaliser(nn.Module):
    """ResNet-18 up to ``layer3``, a 1 x 1 instance classifier and an aggregation (see module).

    Args:
        aggregation: One of :data:`AGGREGATIONS`.
        attention: ``gated`` or ``plain`` (the ``attention`` aggregation only).
        attention_dim: Hidden size of the attention network.
        threshold: Initial value of the localisation threshold buffer.
        threshold_rule: How evaluation re-chooses the threshold: one of
            :data:`THRESHOLD_RULES` (``fixed`` keeps ``threshold``).
        offset_rule: ``rot180``: evaluation re-estimates the map offset
            (:func:`estimate_map_offset`); ``none``: the offset stays zero.
        tta: Test-time views averaged by :meth:`localise`: a key of :data:`TTA_VIEWS`.
        points_rule: How maps become points (:func:`map_to_points`): one of
            :data:`POINT_RULES`; :meth:`min_distance_px` gives the peak distance.
        peak_distance_um: Smallest distance between two peaks (``peaks`` only), micrometres.

    Attributes:
        features: The truncated trunk (torchvision layer names).
        classifier: The 1 x 1 convolution, 256 -> 1.
        threshold: Scalar buffer: the map threshold points are extracted at.
        offset: Buffer ``(dx, dy)``: the learned displacement (pixels) of the map's response
            from the object, undone by :meth:`localise`.
        threshold_rule: The rule (a plain attribute; it comes from the config).
        offset_rule: Likewise.
    """

    def __init__(
        self,
        *,
        aggregation: str = "max",
        attention: str = "gated",
        attention_dim: int = 128,
        threshold: float = 0.5,
        threshold_rule: str = "roc",
        offset_rule: str = "rot180",
        tta: str = "none",
        points_rule: str = "components",
        peak_distance_um: float = 4.0,
    ) -> None:
        super().__init__()
        import torchvision

        if aggregation not in AGGREGATIONS:
            raise MitokitError(
                f"model.aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}"
            )
        if attention not in ATTENTIONS:
            raise MitokitError(
                f"model.attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}"
            )
        if threshold_rule not in THRESHOLD_RULES:
            raise MitokitError(
                f"model.threshold must be one of {', '.join(THRESHOLD_RULES)}, "
                f"got {threshold_rule!r}"
            )
        if offset_rule not in OFFSET_RULES:
            raise MitokitError(
                f"model.offset must be one of {', '.join(OFFSET_RULES)}, got {offset_rule!r}"
            )
        if tta not in TTA_VIEWS:
            raise MitokitError(f"model.tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
        if points_rule not in POINT_RULES:
            raise MitokitError(
                f"model.points must be one of {', '.join(POINT_RULES)}, got {points_rule!r}"
            )
        if (
            isinstance(peak_distance_um, bool)
            or not isinstance(peak_distance_um, numbers.Real)
            or not (math.isfinite(peak_distance_um) and peak_distance_um > 0)
        ):
            raise MitokitError(
                f"model.peak_distance_um must be a positive number, got {peak_distance_um!r}"
            )
        self.points_rule = points_rule
        self.peak_distance_um = float(peak_distance_um)
        dim = check_int(attention_dim, "model.attention_dim", minimum=1)
        self.tta = tta
        self.aggregation = aggregation
        self.threshold_rule = threshold_rule
        self.offset_rule = offset_rule
        self.attention = attention
        net = torchvision.models.resnet18(weights=None)
        self.features = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in _TRUNK))
        self.classifier = nn.Conv2d(WIDTH, 1, kernel_size=1)
        if aggregation == "attention":
            self.attention_v = nn.Linear(WIDTH, dim)
            self.attention_u = nn.Linear(WIDTH, dim) if attention == "gated" else None
            self.attention_w = nn.Linear(dim, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("offset", torch.zeros(2))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Models saved before the offset existed load with a zero offset.
        state_dict.setdefault(prefix + "offset", torch.zeros(2))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``layer3`` embeddings ``(B, 256, ceil(H/16), ceil(W/16))`` of a batch in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise MitokitError(f"expected a Bx3xHxW batch, got shape {tuple(x.shape)}")
        return self.features((x.float() - self.mean) / self.std)

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image logits ``(B,)`` and instance logits ``(B, h, w)`` (stride 16)."""
        feats = self.embed(x)
        logits = self.classifier(feats)[:, 0]
        return self.aggregate(feats, logits), logits

    def aggregate(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The image logit ``(B,)`` from embeddings ``(B, C, h, w)`` and instance logits."""
        flat = logits.flatten(1).float()
        if self.aggregation == "max":
            return flat.amax(dim=1)
        if self.aggregation == "mean":
            # logit(mean sigmoid) = log(sum sigmoid(l)) - log(sum sigmoid(-l)), in log space.
            return torch.logsumexp(F.logsigmoid(flat), 1) - torch.logsumexp(F.logsigmoid(-flat), 1)
        if self.aggregation == "embedding_mean":
            pooled = feats.mean(dim=(2, 3))
        elif self.aggregation == "embedding_max":
            pooled = feats.amax(dim=(2, 3))
        else:
            h = feats.flatten(2).transpose(1, 2)  # (B, K, C)
            pooled = (self.attention_weights(h).unsqueeze(-1) * h).sum(dim=1)
        weight = self.classifier.weight.view(1, -1)
        return F.linear(pooled, weight, self.classifier.bias).squeeze(-1)

    def attention_weights(self, h: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, K)`` (summing to 1) over the locations ``h`` ``(B, K, C)``."""
        if self.aggregation != "attention":
            raise MitokitError(f"a {self.aggregation!r} model has no attention")
        a = torch.tanh(self.attention_v(h))
        if self.attention_u is not None:
            a = a * torch.sigmoid(self.attention_u(h))
        return torch.softmax(self.attention_w(a).squeeze(-1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image logits ``(B,)``."""
        return self.forward_maps(x)[0]

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Image probabilities ``(B,)``."""
        return torch.sigmoid(self(x))

    def localise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image probabilities ``(B,)`` and heatmaps ``(B, H, W)``: the upsampled sigmoid map.

        The map is moved by the stored ``offset`` (see :func:`upsample_map`). With ``tta`` the
        image is also read turned (and flipped); each view's map is moved by the offset in the
        view's own frame (where the network learned it), turned back, and the probabilities and
        maps of the views are averaged.
        """
        views = TTA_VIEWS[getattr(self, "tta", "none")]
        probs = heat = None
        for turns, flip in views:
            v = torch.rot90(x, turns, (-2, -1)) if turns else x
            v = v.flip(-1) if flip else v
            image, logits = self.forward_maps(v)
            h = upsample_map(torch.sigmoid(logits.float()), v.shape[-2:], offset=self.offset)
            h = h.flip(-1) if flip else h
            h = torch.rot90(h, -turns, (-2, -1)) if turns else h
            p = torch.sigmoid(image.float())
            probs, heat = (p, h) if probs is None else (probs + p, heat + h)
        return probs / len(views), heat / len(views)

    def min_distance_px(self, mpp: float | None) -> float | None:
        """The peak distance in pixels at ``mpp`` (None for ``components``).

        Raises:
            MitokitError: ``peaks`` without a pixel size.
        """
        if self.points_rule != "peaks":
            return None
        if mpp is None or not float(mpp) > 0:
            raise MitokitError(
                f"model.points peaks needs the pixel size of the map (mpp), got {mpp!r}"
            )
        return self.peak_distance_um / float(mpp)


def build_weak_localiser(*, weights: str | None = None, **settings: Any) -> WeakLocaliser:
    """A :class:`WeakLocaliser`, random or with its trunk from a local ResNet-18 file.

    ``settings`` are the keyword arguments of :class:`WeakLocaliser` (``aggregation``,
    ``attention``, ``threshold`` ...), with its defaults. The weights file is checked and read
    by :func:`~mitokit.models.backbones.load_init_weights` into a full ResNet-18, whose
    ``conv1`` ... ``layer3`` are then copied (``layer4`` and ``fc`` are not used). Never
    downloaded.

    Raises:
        MitokitError: Bad settings, or a weights file that is missing, unreadable or not a
            ResNet-18 (the message names the file).
    """
    model = WeakLocaliser(**settings)
    if weights is not None:
        from mitokit.models.backbones import build_resnet

        full = build_resnet("resnet18", weights=weights, input_size=None)
        state = {
            k: v for k, v in full.features.state_dict().items() if k.split(".", 1)[0] in _TRUNK
        }
        model.features.load_state_dict(state)
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model

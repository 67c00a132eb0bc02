"""Weakly supervised mitosis localisation from image-level labels (the second paper).

Importing this module registers the training task ``weak_localiser`` with the engine
(:func:`mitokit.engines.task.register_task`) and its slide predictor
(:func:`mitokit.models.predictors.register_predictor`).

Model (:class:`WeakLocaliser`): a torchvision ResNet-18 truncated after its third block
(``layer3``: 256 channels, stride 16), then a 1 x 1 convolution giving one logit per location of
the ``ceil(H / 16) x ceil(W / 16)`` map; its sigmoid is the instance (location) score. The image
logit aggregates the map, by ``aggregation``:

- ``max`` (default): the largest instance logit, so the image probability is the largest
  instance probability (max-pooling MIL);
- ``mean``: the image probability is the mean instance probability (computed as a logit in log
  space, so the BCE stays exact and stable);
- ``embedding_mean`` / ``embedding_max``: the ``layer3`` embeddings are pooled over the locations
  (mean / channel-wise max) and classified by the same 1 x 1 convolution used as a linear layer
  (for the mean this equals the mean instance logit);
- ``attention``: attention-based MIL (Ilse et al., ICML 2018): weights ``a_k = softmax_k(w^T
  (tanh(V h_k) * sigmoid(U h_k)))`` (``attention: gated``) or ``softmax_k(w^T tanh(V h_k))``
  (``plain``), pooled embedding ``sum_k a_k h_k``, classified by the same linear layer.

The loss is the BCE of the image logit against the image label. Whatever the aggregation, the
localisation map is the sigmoid of the instance logits. Weights are random (torchvision's
initialisation under the engine's seed) or a local ResNet-18 file (``model.weights``, read by
:func:`mitokit.models.backbones.load_init_weights`; its ``layer4`` and ``fc`` are dropped);
nothing is downloaded. Inputs are float ``Bx3xHxW`` in [0, 1]; ImageNet normalisation happens
inside the model, and no resampling: the pixel size stays the training one (``data.mpp``).

Localisation (:func:`map_to_points`): the sigmoid map is upsampled bilinearly to the input size
(:func:`upsample_map`: each location on the pixel its receptive field is centred on),
thresholded (``score >= threshold``), and by ``model.points``:

- ``components`` (default, the paper's): each 8-connected component
  (:func:`scipy.ndimage.label`) becomes one point: its centroid weighted by the map values, and
  as score the component's *maximum* map value;
- ``peaks``: the local maxima of the map above the threshold at least
  ``model.peak_distance_um`` apart (default 4 um, one map location at 0.25 um/px) split the
  components by a watershed of the map, and each basin becomes one point (weighted centroid,
  maximum as score): neighbouring mitoses whose responses merge above the threshold, which
  components count once, give one point each.

Points are continuous pixel coordinates (pixel ``(row i, column j)`` covers ``[j, j + 1) x [i,
i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``). The threshold is chosen on the validation
images at each evaluation and stored in the model as the buffer ``threshold`` (so it is saved
with the weights), by ``model.threshold``:

- ``roc``: the ROC operating point (Youden's J) of the image-level validation probabilities,
  :func:`mitokit.metrics.classification.best_threshold`;
- ``max_f1``: the threshold of highest pooled point F1 on the validation images with known truth
  points, among 0.05, 0.10 ... 0.95 (ROC where no validation image has truth points);
- ``fixed``: ``model.fixed_threshold``.

Map offset (``model.offset``): trained from image labels only, the map must fire somewhere in
a positive image, and the network may learn to fire a fixed distance away from the mitosis (in
its own frame: flips and rotations in training do not remove it; on generated tiles 10-45 px,
which costs most points their match). With ``rot180`` (default) each evaluation re-estimates this
displacement from the positive validation images alone: the map's peak of an image and of the
image turned by 180 degrees (turned back) lie at ``x + d`` and ``x - d``
(:func:`estimate_map_offset`). It is stored as the buffer ``offset`` and undone when the map is
upsampled (:func:`upsample_map`), before the threshold is chosen; ``none`` keeps it zero.

Test-time views (``model.tta``: ``none``, ``rot180`` or ``dihedral``):
:meth:`WeakLocaliser.localise` reads each image also turned by 180 degrees (or in all 8 turns and
flips), moves each view's map by the offset in the view's own frame, turns it back and
averages maps and probabilities. Evaluation then chooses the threshold on these averages, as
prediction will see them.

Without a usable validation set (no validation images, or one class only for ``roc``) the
threshold keeps its previous value (initially ``fixed_threshold``).

Data (``data`` section):

- ``labels``: a synthetic tiles folder (``mitokit synth tiles``: ``images/``,
  ``image_labels.csv``, and ``centroids.csv`` used as evaluation truth); or a CSV with columns
  ``image,label`` (label 0/1); or any label file :func:`~mitokit.io.annotations.read_annotations`
  reads, where an image is positive when it holds at least one ``mitosis`` object and those
  objects' centres are the evaluation truth. Images are found as in
  :mod:`mitokit.models.tasks_tile` (``images`` or ``images/`` beside the label file).
- ``points``: a label file of truth mitoses for evaluation only (overrides the above); never
  used for training.
- train / validation split by image (``val_fraction``, ``val_images``, ``split_seed``; see
  :func:`~mitokit.models.tasks_tile.split_images`).
- ``input_size``: side of the square training crops, taken at random positions when an image is
  bigger (its label is the whole image's, so a crop may miss the image's mitosis: choose the
  images' size where possible) and padded with white when smaller; null trains on whole images.
  Validation always uses whole images. Slides are read in tiles of ``input_size`` pixels (250
  when null).
- ``mpp``: microns per pixel of the images (default 0.25, saved with the model so slides are read
  at that resolution); ``radius_um``: matching radius of the point F1 (7.5 um, 30 px at 0.25).
- ``augment``: HED jitter and random flips / 90-degree rotations of the training crops.

Validation figures (``evaluate``): ``loss`` (image BCE), image ``auc``, ``balanced_accuracy``,
``tpr``, ``fpr`` (image probability >= 0.5), ``ece``, the chosen ``threshold`` and, where truth
points are known, ``point_precision``, ``point_recall``, ``point_f1`` at that threshold (matched
one-to-one within ``radius_um`` by :func:`mitokit.metrics.detection.match_points`).
"""

from __future__ import annotations

import csv
import math
import numbers
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import Dataset

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.models._common import (
    WorkerDraws,
    binary_metrics,
    check_fraction,
    check_int,
    evaluating,
    merge_section,
    random_dihedral,
)
from mitokit.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from mitokit.models.predictors import TilePrediction, model_mpp, register_predictor
from mitokit.types import MITOSIS

WEAK_LOCALISER = "weak_localiser"
AGGREGATIONS = ("max", "mean", "embedding_mean", "embedding_max", "attention")
ATTENTIONS = ("gated", "plain")
THRESHOLD_RULES = ("roc", "max_f1", "fixed")
OFFSET_RULES = ("rot180", "none")
POINT_RULES = ("components", "peaks")
#: Test-time views of ``model.tta``: (quarter turns, horizontal flip) of each view.
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "rot180": ((0, False), (2, False)),
    "dihedral": tuple((k, f) for f in (False, True) for k in range(4)),
}
#: Thresholds tried by the ``max_f1`` rule.
F1_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))
STRIDE = 16
WIDTH = 256  # channels of ResNet-18's layer3
DEFAULT_TILE = 250  # slide tile side when data.input_size is null
IMAGE_LABELS = "image_labels.csv"
TRUTH_POINTS = "centroids.csv"
_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


# --------------------------------------------------------------------------------------------
# Model


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


def upsample_map(
    prob: torch.Tensor,
    size: Sequence[int],
    stride: int = STRIDE,
    offset: Sequence[float] | torch.Tensor = (0.0, 0.0),
) -> torch.Tensor:
    """A ``(B, h, w)`` (or ``(h, w)``) map of a stride-``stride`` network resized to ``size``.

    Map location ``(k, l)`` is placed where its receptive field is centred: on pixel ``(row k *
    stride, column l * stride)``. Every stride-2 layer of the ResNet trunk (7 x 7 / padding 3,
    3 x 3 / padding 1, 1 x 1 / padding 0) keeps output ``i`` centred on input ``2 i``, so the
    centres sit on the pixel grid's multiples of the stride, not in the middle of each
    ``stride x stride`` block. Between centres the map is interpolated bilinearly; past the last
    centre (the bottom and right ``H - stride (h - 1) - 1`` rows and columns) it is held
    constant. Resizing the map to the image as one picture (``align_corners=False``) would move
    every point half a stride (8 px) down and right.

    ``offset`` ``(dx, dy)`` (pixels) moves every location by ``(-dx, -dy)``: to pixel ``(k *
    stride - dy, l * stride - dx)``, the map held constant past the first and last centres. It
    undoes a response the network learned to give ``(dx, dy)`` away from the object (see
    :func:`estimate_map_offset`).
    """
    single = prob.ndim == 2
    batch = (prob[None] if single else prob)[:, None].float()
    hw = (int(size[0]), int(size[1]))
    h, w = batch.shape[-2:]
    span = (stride * (h - 1) + 1, stride * (w - 1) + 1)
    if span[0] > hw[0] or span[1] > hw[1]:
        raise MitokitError(
            f"a {h} x {w} map of stride {stride} does not fit an image of {hw[0]} x {hw[1]} px"
        )
    dx, dy = (float(v) for v in offset)

    # Pixel (i, j) reads the map at ((i + dy) / stride, (j + dx) / stride), in grid_sample's
    # align_corners=True coordinates (-1 = first location, 1 = last); border values are held.
    def axis(n_px: int, n_map: int, d: float) -> torch.Tensor:
        pos = (torch.arange(n_px, dtype=torch.float64, device=batch.device) + d) / stride
        return (2 * pos / (n_map - 1) - 1 if n_map > 1 else pos * 0).float()

    gy, gx = torch.meshgrid(axis(hw[0], h, dy), axis(hw[1], w, dx), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(batch.shape[0], -1, -1, -1)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0] if single else out[:, 0]


def _peak_point(heat: np.ndarray) -> np.ndarray:
    """The weighted centroid ``(x, y)`` of the half-maximum component holding a map's maximum."""
    from scipy import ndimage

    top = np.unravel_index(int(np.argmax(heat)), heat.shape)
    labels, _ = ndimage.label(heat >= 0.5 * heat[top], structure=np.ones((3, 3), dtype=bool))
    cy, cx = ndimage.center_of_mass(np.maximum(heat, 1e-12), labels, labels[top])
    return np.array([cx + 0.5, cy + 0.5])


def estimate_map_offset(
    maps: Sequence[torch.Tensor],
    rotated_maps: Sequence[torch.Tensor],
    sizes: Sequence[Sequence[int]],
    *,
    stride: int = STRIDE,
    min_images: int = 3,
) -> tuple[float, float] | None:
    """The displacement ``(dx, dy)`` of a localiser's response from its object, without points.

    A map trained with image-level labels only must fire *somewhere* for a positive image; the
    network may learn to fire a fixed distance ``d`` (in its own frame) away from the mitosis,
    since no loss term asks otherwise, and flip / rotation augmentation does not remove it.
    Such a ``d`` shows itself without truth points: for an image with one object at ``x``, the
    map's peak lies at ``x + d``, while the map of the image turned by 180 degrees, turned
    back, peaks at ``x - d``. Half their difference estimates ``d``; the median over images is
    robust to images whose two peaks fall on different objects.

    Args:
        maps: Instance maps ``(h, w)`` (probabilities) of positive images.
        rotated_maps: The maps of the same images turned by 180 degrees (not turned back).
        sizes: ``(H, W)`` of each image.
        stride: The maps' stride.
        min_images: Fewest images for an estimate.

    Returns:
        ``(dx, dy)`` in pixels (median over images), or None with fewer than ``min_images``.
    """
    pairs = []
    for m, r, hw in zip(maps, rotated_maps, sizes, strict=True):
        up = upsample_map(m.float(), hw, stride).cpu().numpy()
        back = torch.rot90(upsample_map(r.float(), hw, stride), 2, (0, 1)).cpu().numpy()
        pairs.append((_peak_point(up) - _peak_point(back)) / 2)
    if len(pairs) < min_images:
        return None
    dx, dy = np.median(np.asarray(pairs), axis=0)
    return float(dx), float(dy)


def build_weak_localiser(
    *,
    aggregation: str = "max",
    attention: str = "gated",
    attention_dim: int = 128,
    weights: str | None = None,
    threshold: float = 0.5,
    threshold_rule: str = "roc",
    offset_rule: str = "rot180",
    tta: str = "none",
    points_rule: str = "components",
    peak_distance_um: float = 4.0,
) -> WeakLocaliser:
    """A :class:`WeakLocaliser`, random or with its trunk from a local ResNet-18 file.

    The file is checked and read by :func:`~mitokit.models.backbones.load_init_weights` into a
    full ResNet-18, whose ``conv1`` ... ``layer3`` are then copied (``layer4`` and ``fc`` are not
    used). Never downloaded.

    Raises:
        MitokitError: Bad settings, or a weights file that is missing, unreadable or not a
            ResNet-18 (the message names the file).
    """
    model = WeakLocaliser(
        aggregation=aggregation,
        attention=attention,
        attention_dim=attention_dim,
        threshold=threshold,
        threshold_rule=threshold_rule,
        offset_rule=offset_rule,
        tta=tta,
        points_rule=points_rule,
        peak_distance_um=peak_distance_um,
    )
    if weights is not None:
        from mitokit.models.backbones import build_resnet

        full = build_resnet("resnet18", weights=weights, input_size=None)
        state = {
            k: v for k, v in full.features.state_dict().items() if k.split(".", 1)[0] in _TRUNK
        }
        model.features.load_state_dict(state)
    return model


# --------------------------------------------------------------------------------------------
# Map -> points


def map_to_points(
    heatmap: Any, threshold: float, *, min_distance_px: float | None = None
) -> np.ndarray:
    """Points of a heatmap: one per 8-connected component of ``heatmap >= threshold``, or, with
    ``min_distance_px``, one per local peak.

    Components (``min_distance_px`` None, :data:`POINT_RULES` ``components``): each component
    becomes its map-weighted centroid. Peaks (``peaks``): the local maxima of the map at or above
    the threshold, at least ``min_distance_px`` apart (:func:`skimage.feature.peak_local_max`;
    a component without one gets its maximum), split each component among its peaks by a
    watershed of the map (:func:`skimage.segmentation.watershed`), and each basin becomes its
    map-weighted centroid: two mitoses whose responses merge above the threshold still give
    two points.

    Args:
        heatmap: ``(H, W)`` map in [0, 1] at the input's resolution (array or tensor).
        threshold: Map threshold (inclusive).
        min_distance_px: Smallest distance between two peaks (pixels); None: components.

    Returns:
        ``(N, 3)`` float64 ``x, y, score``: the map-weighted centroid of each component (or
        basin) in pixel coordinates (pixel centres at ``index + 0.5``) and its maximum, highest
        score first.
    """
    from scipy import ndimage

    heat = heatmap.detach().cpu().numpy() if torch.is_tensor(heatmap) else heatmap
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2:
        raise MitokitError(f"a heatmap must be 2-D, got shape {heat.shape}")
    mask = heat >= float(threshold)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if min_distance_px is not None:
        labels, n = _peak_basins(heat, labels, n, float(min_distance_px))
    index = np.arange(1, n + 1)
    weights = np.maximum(heat, 1e-12)  # a zero threshold keeps zero-valued pixels: still weighted
    centres = np.asarray(ndimage.center_of_mass(weights, labels, index), dtype=np.float64)
    peaks = np.asarray(ndimage.maximum(heat, labels, index), dtype=np.float64)
    points = np.column_stack([centres[:, 1] + 0.5, centres[:, 0] + 0.5, peaks])
    return points[np.argsort(-points[:, 2], kind="stable")]


def _peak_basins(
    heat: np.ndarray, components: np.ndarray, n: int, min_distance_px: float
) -> tuple[np.ndarray, int]:
    """The thresholded components split into watershed basins around peaks ``>= min_distance``
    apart; every component keeps at least one basin (around its maximum)."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not (math.isfinite(min_distance_px) and min_distance_px > 0):
        raise MitokitError(f"min_distance_px must be a positive number, got {min_distance_px!r}")
    found = peak_local_max(
        heat,
        min_distance=max(1, int(round(min_distance_px))),
        labels=components,
        exclude_border=False,
    )
    missing = np.setdiff1d(np.arange(1, n + 1), components[tuple(found.T)])
    extra = ndimage.maximum_position(heat, components, missing) if len(missing) else []
    seeds = np.concatenate([found.reshape(-1, 2), np.asarray(extra, dtype=int).reshape(-1, 2)])
    markers = np.zeros(heat.shape, dtype=np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    basins = watershed(-heat, markers, mask=components > 0, connectivity=2)
    return basins, len(seeds)


def point_counts(
    pred_xy: np.ndarray, truth_xy: np.ndarray, *, radius_px: float
) -> tuple[int, int, int]:
    """TP, FP, FN of one image (optimal one-to-one matching within ``radius_px``)."""
    from mitokit.metrics.detection import match_points

    m = match_points(pred_xy, truth_xy, radius_px=radius_px)
    return len(m.pairs), len(m.unmatched_pred), len(m.unmatched_truth)


def pooled_point_scores(
    maps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    threshold: float,
    radius_px: float,
    min_distance_px: float | None = None,
) -> dict[str, float]:
    """Point precision, recall and F1 pooled over images (micro, as MIDOG) at one threshold.

    Args:
        maps: Heatmaps ``(H, W)`` at the input resolution.
        truths: ``(n, 2)`` truth points per image.
        threshold: Map threshold.
        radius_px: Matching radius in pixels.
        min_distance_px: Peak distance of :func:`map_to_points` (None: components).
    """
    from mitokit.metrics.detection import precision_recall_f1

    tp = fp = fn = 0
    for heat, truth in zip(maps, truths, strict=True):
        pts = map_to_points(heat, threshold, min_distance_px=min_distance_px)[:, :2]
        a, b, c = point_counts(pts, truth, radius_px=radius_px)
        tp, fp, fn = tp + a, fp + b, fn + c
    p, r, f = precision_recall_f1(tp, fp, fn)
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


# --------------------------------------------------------------------------------------------
# Data


def read_image_labels(path: str | Path) -> dict[str, int]:
    """An ``image,label`` CSV (label 0 or 1; ``#`` lines skipped) as ``{image: label}``.

    Raises:
        MitokitError: Missing file, no ``image`` / ``label`` column, a label that is not 0 or 1,
            a repeated image, or no rows (the message names the file and the line).
    """
    p = Path(path)
    if not p.is_file():
        raise input_error(p, "image-label file not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise input_error(p, f"unreadable image-label file ({exc})") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    lines = [(i, ln) for i, ln in lines if not ln.lstrip().startswith("#")]
    if not lines:
        raise input_error(p, "empty image-label file")
    rows = list(csv.reader([ln for _, ln in lines]))
    header = [h.strip().lower() for h in rows[0]]
    if "image" not in header or "label" not in header:
        raise input_error(p, f"expected columns image,label, got {','.join(rows[0])!r}")
    ci, cl = header.index("image"), header.index("label")
    out: dict[str, int] = {}
    for (line, _), row in zip(lines[1:], rows[1:], strict=True):
        if len(row) <= max(ci, cl):
            raise input_error(p, f"line {line}: expected {len(header)} fields, got {len(row)}")
        image, raw = row[ci].strip(), row[cl].strip().lower()
        value = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}.get(raw)
        if value is None:
            raise input_error(p, f"line {line}: label must be 0 or 1, got {row[cl]!r}")
        if not image:
            raise input_error(p, f"line {line}: empty image name")
        if image in out:
            raise input_error(p, f"line {line}: image {image!r} is listed twice")
        out[image] = value
    if not out:
        raise input_error(p, "no images listed")
    return out


def _is_image_label_table(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    cols = {c.strip().lower() for c in next(csv.reader([line]))}
                    return {"image", "label"} <= cols and not cols & {"x", "x1", "id"}
    except (OSError, UnicodeDecodeError):
        return False
    return False


def _mitosis_centres(anns: Any, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Centres of the ``mitosis`` objects per image (by id, else by file basename)."""
    from mitokit.io.annotations import canonical_class

    by_name = {Path(i).name: i for i in image_ids}
    found: dict[str, list[tuple[float, float]]] = {i: [] for i in image_ids}
    for ann in anns:
        if canonical_class(ann.label) != MITOSIS:
            continue
        image = ann.image if ann.image in found else by_name.get(Path(str(ann.image)).name)
        if image is not None:
            found[image].append(tuple(ann.center))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in found.items()}


class WeakSource:
    """Images with image-level labels and, where known, truth points (evaluation only).

    Attributes:
        labels_file: The file the image labels came from.
        paths: Image id -> image file.
        sizes: Image id -> (width, height).
        labels: Image id -> 0 / 1.
        points: Image id -> ``(n, 2)`` truth points, for the images whose truth is known.
        points_file: The file the truth points came from, or None.
    """

    def __init__(
        self,
        labels_file: Path,
        paths: Mapping[str, Path],
        sizes: Mapping[str, tuple[int, int]],
        labels: Mapping[str, int],
        points: Mapping[str, np.ndarray],
        points_file: Path | None,
    ) -> None:
        self.labels_file = labels_file
        self.paths = dict(paths)
        self.sizes = dict(sizes)
        self.labels = dict(labels)
        self.points = dict(points)
        self.points_file = points_file

    @property
    def image_ids(self) -> list[str]:
        """Image ids, sorted."""
        return sorted(self.paths)


def read_weak_source(
    labels: str | Path, *, images: str | Path | None = None, points: str | Path | None = None
) -> WeakSource:
    """Read image-level labels (and truth points) as the ``data`` section describes.

    Raises:
        MitokitError: A missing or unreadable file, an image not found, or no image.
    """
    from mitokit.io.annotations import AnnotationSet, ImageInfo, read_annotations
    from mitokit.models.tasks_tile import read_tile_source

    p = Path(labels)
    truth_file = Path(points) if points is not None else None
    if p.is_dir():
        if not (p / IMAGE_LABELS).is_file():
            from mitokit.models.tasks_tile import resolve_labels

            p = resolve_labels(p)  # a folder of other label files (consensus ...)
        else:
            p = p / IMAGE_LABELS
            if truth_file is None and (p.parent / TRUTH_POINTS).is_file():
                truth_file = p.parent / TRUTH_POINTS
    elif not p.is_file():
        raise input_error(p, "label file not found")
    if _is_image_label_table(p):
        image_labels = read_image_labels(p)
        listed = AnnotationSet(images={i: ImageInfo(i) for i in image_labels})
        source = read_tile_source(p, images=images, annotations=listed)
        truth = {}
    else:
        source = read_tile_source(p, images=images)
        truth = _mitosis_centres(source.annotations, source.image_ids)
        image_labels = {i: int(len(truth[i]) > 0) for i in source.image_ids}
    if truth_file is not None:
        truth = _mitosis_centres(read_annotations(truth_file), source.image_ids)
    return WeakSource(p, source.paths, source.sizes, image_labels, truth, truth_file)


class WeakImageDataset(Dataset):
    """Images with their image label; random crops and augmentation for training.

    Items: ``image`` (float ``3xHxW`` in [0, 1]), ``label`` (float32 0/1), ``image_id``,
    ``points`` (float32 ``(n, 2)`` truth points in the item's pixels; empty when unknown, and
    always for training crops), ``has_points`` (bool) and ``radius_px`` (float32).

    Args:
        source: The images and labels.
        image_ids: The images of this split.
        crop: Side of a random square crop (training), or None for whole images.
        augment: HED jitter and random flips / rotations.
        hed_sigma: HED jitter scale half-width.
        hed_bias: HED jitter shift half-width.
        radius_px: Matching radius of the point evaluation.
        mpp: Microns per pixel of the images (for the peak distance of the points).
        draws: Seeded generator of the crops and augmentations.
    """

    def __init__(
        self,
        source: WeakSource,
        image_ids: Sequence[str],
        *,
        crop: int | None = None,
        augment: bool = False,
        hed_sigma: float = 0.05,
        hed_bias: float = 0.01,
        radius_px: float = 30.0,
        mpp: float = 0.25,
        draws: WorkerDraws | None = None,
    ) -> None:
        from mitokit.data.stain import HEDJitter
        from mitokit.models.tasks_tile import _ImageOpener

        self.ids = list(image_ids)
        self.labels = [int(source.labels[i]) for i in self.ids]
        self.points = [source.points.get(i) for i in self.ids]
        self.opener = _ImageOpener({i: source.paths[i] for i in self.ids})
        self.crop = crop
        self.augment = bool(augment)
        self.radius_px = float(radius_px)
        self.mpp = float(mpp)
        self.draws = draws if draws is not None else WorkerDraws(0)
        self.colour = HEDJitter(hed_sigma, hed_bias, seed=self.draws.rng) if augment else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from mitokit.data.arrays import crop_padded
        from mitokit.data.datasets import to_tensor

        rng = self.draws.get()  # reseeds first in a new worker (shared with the colour jitter)
        arr = self.opener(self.ids[index])
        truth = self.points[index]
        if self.crop is not None:
            h, w = arr.shape[:2]
            x0 = int(rng.integers(0, w - self.crop + 1)) if w > self.crop else 0
            y0 = int(rng.integers(0, h - self.crop + 1)) if h > self.crop else 0
            arr = crop_padded(arr, x0, y0, self.crop, self.crop)
            truth = None  # training crops carry no truth (and need none)
        if self.colour is not None:
            arr = self.colour(arr)
        if self.augment and arr.shape[0] == arr.shape[1]:
            arr = random_dihedral(arr, rng)
            truth = None
        pts = np.zeros((0, 2), np.float32) if truth is None else truth.astype(np.float32)
        return {
            "image": to_tensor(arr),
            "label": torch.tensor(float(self.labels[index]), dtype=torch.float32),
            "image_id": self.ids[index],
            "points": torch.from_numpy(pts.reshape(-1, 2)),
            "has_points": truth is not None,
            "radius_px": torch.tensor(self.radius_px, dtype=torch.float32),
            "mpp": torch.tensor(self.mpp, dtype=torch.float64),
        }


def collate_images(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch: images stacked when they share a size (else a list), points as a list."""
    images = [it["image"] for it in items]
    same = all(im.shape == images[0].shape for im in images)
    return {
        "image": torch.stack(images) if same else images,
        "label": torch.stack([it["label"] for it in items]),
        "image_id": [it["image_id"] for it in items],
        "points": [it["points"] for it in items],
        "has_points": torch.tensor([bool(it["has_points"]) for it in items]),
        "radius_px": torch.stack([it["radius_px"] for it in items]),
        "mpp": torch.stack([it["mpp"] for it in items]),
    }


def batch_maps(
    model: WeakLocaliser, images: torch.Tensor | list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Image logits ``(B,)`` and instance logit maps (one ``(h, w)`` per image) of a batch."""
    if isinstance(images, torch.Tensor):
        logits, maps = model.forward_maps(images.to(device))
        return logits, list(maps)
    outs = [model.forward_maps(im[None].to(device)) for im in images]
    return torch.cat([o[0] for o in outs]), [o[1][0] for o in outs]


# --------------------------------------------------------------------------------------------
# Task


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@register_task(WEAK_LOCALISER)
class WeakLocaliserTask:
    """Image-level BCE training of :class:`WeakLocaliser`; localisation evaluated on points."""

    name = WEAK_LOCALISER
    model_defaults: Mapping[str, Any] = {
        "weights": None,
        "aggregation": "max",
        "attention": "gated",
        "attention_dim": 128,
        "threshold": "roc",
        "fixed_threshold": 0.5,
        "offset": "rot180",
        "tta": "none",
        "points": "components",
        "peak_distance_um": 4.0,
    }
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "points": None,
        "input_size": None,
        "mpp": 0.25,
        "radius_um": 7.5,
        "val_fraction": 0.2,
        "val_images": None,
        "split_seed": 0,
        "augment": True,
        "hed_sigma": 0.05,
        "hed_bias": 0.01,
        "n_max": None,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> WeakLocaliser:
        """The weak localiser, random or with a local ResNet-18 trunk."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_weak_localiser(
            aggregation=cfg["aggregation"],
            attention=cfg["attention"],
            attention_dim=cfg["attention_dim"],
            weights=cfg["weights"],
            threshold=check_fraction(cfg["fixed_threshold"], "model.fixed_threshold"),
            threshold_rule=cfg["threshold"],
            offset_rule=cfg["offset"],
            tta=cfg["tta"],
            points_rule=cfg["points"],
            peak_distance_um=cfg["peak_distance_um"],
        )

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training images (random crops, augmented) and whole validation images, by image.

        Raises:
            MitokitError: Missing labels or images, bad settings, or a training split of one
                class only.
        """
        from mitokit.metrics.detection import radius_to_px

        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError(
                "data.labels is required (a `mitokit synth tiles` folder, an image,label CSV "
                "or a label file with points)"
            )
        crop = check_int(cfg["input_size"], "data.input_size", minimum=32, allow_none=True)
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        val_fraction = check_fraction(cfg["val_fraction"], "data.val_fraction", high=0.9)
        for key in ("mpp", "radius_um"):
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise MitokitError(f"data.{key} must be a positive number, got {v!r}")
        radius_px = radius_to_px(radius_um=float(cfg["radius_um"]), mpp=float(cfg["mpp"]))

        source = read_weak_source(cfg["labels"], images=cfg["images"], points=cfg["points"])
        ids = source.image_ids[:n_max] if n_max else source.image_ids
        from mitokit.models.tasks_tile import split_images

        try:
            train_ids, val_ids = split_images(
                ids, val_fraction=val_fraction, val_images=cfg["val_images"], seed=split_seed
            )
        except MitokitError as exc:
            raise input_error(source.labels_file, str(exc)) from None
        n_pos = sum(source.labels[i] for i in train_ids)
        if n_pos in (0, len(train_ids)):
            kind = "positive" if n_pos == 0 else "negative"
            raise input_error(source.labels_file, f"no {kind} image among the training images")
        draws = WorkerDraws(seed)
        train = WeakImageDataset(
            source,
            train_ids,
            crop=crop,
            augment=bool(cfg["augment"]),
            hed_sigma=float(cfg["hed_sigma"]),
            hed_bias=float(cfg["hed_bias"]),
            radius_px=radius_px,
            mpp=float(cfg["mpp"]),
            draws=draws,
        )
        val = (
            WeakImageDataset(source, val_ids, radius_px=radius_px, mpp=float(cfg["mpp"]))
            if val_ids
            else None
        )
        info = {
            "labels": str(source.labels_file),
            "points": None if source.points_file is None else str(source.points_file),
            "input_size": crop,
            "radius_px": radius_px,
            "train_images": train_ids,
            "val_images": val_ids,
            "n_train": len(train_ids),
            "n_val": len(val_ids),
            "n_train_positive": int(n_pos),
            "n_val_positive": int(sum(source.labels[i] for i in val_ids)),
            "n_val_with_points": int(sum(i in source.points for i in val_ids)),
        }
        return TaskData(train=train, val=val, collate=collate_images, info=info)

    def loss(
        self, model: nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE of the image logits against the image labels."""
        images = batch["image"]
        if isinstance(images, torch.Tensor):
            logits = model(images.to(device))
        else:
            logits = torch.cat([model(im[None].to(device)) for im in images])
        target = batch["label"].to(device).float()
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        return loss, {"bce": float(loss.detach()), "positive_share": float(target.mean())}

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device) -> dict[str, float]:
        """Image BCE, AUC, balanced accuracy; the map offset and threshold; point F1 if known.

        With ``offset_rule`` ``rot180`` the positive validation images are also read turned by
        180 degrees and the model's ``offset`` is re-estimated (:func:`estimate_map_offset`:
        image labels only) before the threshold is chosen on the moved maps.
        """
        module = _unwrap(model)
        calibrate = getattr(module, "offset_rule", "none") == "rot180"
        logits, labels, radius, mpp = [], [], 30.0, 0.25
        pointed: list[tuple[torch.Tensor, tuple[int, int], np.ndarray]] = []
        positive: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = []
        with evaluating(module):
            for batch in loader:
                images = batch["image"]
                z, lmaps = batch_maps(module, images, device)
                logits.append(z.float().cpu())
                labels.append(batch["label"].float().cpu())
                keep = [k for k in range(len(lmaps)) if float(batch["label"][k]) > 0.5]
                if calibrate and keep:
                    turned = [torch.rot90(images[k], 2, (-2, -1)) for k in keep]
                    if isinstance(images, torch.Tensor):
                        turned = torch.stack(turned)
                    _, rmaps = batch_maps(module, turned, device)
                    for k, r in zip(keep, rmaps, strict=True):
                        size = tuple(images[k].shape[-2:])
                        positive.append((torch.sigmoid(lmaps[k].float()).cpu(), r, size))
                for k, m in enumerate(lmaps):
                    if bool(batch["has_points"][k]):
                        truth = batch["points"][k].cpu().numpy().astype(np.float64)
                        pointed.append((m.float().cpu(), tuple(images[k].shape[-2:]), truth))
                radius = float(batch["radius_px"][0])
                mpp = float(batch["mpp"][0])
        if not logits:
            return {"loss": math.nan, "auc": math.nan, "balanced_accuracy": math.nan}
        if calibrate:
            estimate = estimate_map_offset(
                [p for p, _, _ in positive],
                [torch.sigmoid(r.float()).cpu() for _, r, _ in positive],
                [hw for _, _, hw in positive],
            )
            if estimate is not None:  # too few positive images: keep the previous offset
                with torch.no_grad():
                    module.offset.copy_(torch.tensor(estimate))
        offset = module.offset.detach().cpu()
        truths = [t for _, _, t in pointed]
        z, y = torch.cat(logits), torch.cat(labels)
        loss = float(F.binary_cross_entropy_with_logits(z, y))
        probs = torch.sigmoid(z).numpy().astype(np.float64)
        if getattr(module, "tta", "none") == "none":
            maps = [
                upsample_map(torch.sigmoid(m), hw, offset=offset).numpy() for m, hw, _ in pointed
            ]
        else:  # threshold and point F1 on the maps and probabilities prediction will give
            probs, maps = self._tta_pass(module, loader, device)
        out: dict[str, float] = {"loss": loss}
        out.update(binary_metrics(y.numpy(), probs, threshold=0.5))
        spacing = module.min_distance_px(mpp)
        threshold = self._choose_threshold(
            module, y.numpy(), probs, maps, truths, radius, min_distance_px=spacing
        )
        with torch.no_grad():
            module.threshold.fill_(threshold)
        out["threshold"] = threshold
        out["offset_x"], out["offset_y"] = (float(v) for v in offset)
        if maps:
            scores = pooled_point_scores(
                maps, truths, threshold=threshold, radius_px=radius, min_distance_px=spacing
            )
            out.update({f"point_{k}": float(scores[k]) for k in ("precision", "recall", "f1")})
        out["n"] = int(len(y))
        return out

    @staticmethod
    def _tta_pass(
        module: WeakLocaliser, loader: Any, device: torch.device
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Image probabilities of all images and maps of those with points, through ``localise``."""
        probs, maps = [], []
        with evaluating(module):
            for batch in loader:
                images = batch["image"]
                singles = (
                    [images] if isinstance(images, torch.Tensor) else [im[None] for im in images]
                )
                outs = [module.localise(im.to(device)) for im in singles]
                p = torch.cat([o[0] for o in outs]).float().cpu()
                heat = [h for o in outs for h in o[1].float().cpu()]
                probs.append(p)
                maps += [h.numpy() for k, h in enumerate(heat) if bool(batch["has_points"][k])]
        return torch.cat(probs).numpy().astype(np.float64), maps

    def _choose_threshold(
        self,
        model: WeakLocaliser,
        y: np.ndarray,
        probs: np.ndarray,
        maps: list[np.ndarray],
        truths: list[np.ndarray],
        radius: float,
        *,
        min_distance_px: float | None = None,
    ) -> float:
        from mitokit.metrics.classification import best_threshold

        rule = getattr(model, "threshold_rule", "roc")
        if rule == "fixed":
            return float(model.threshold)
        if rule == "max_f1":
            if maps:
                f1 = [
                    pooled_point_scores(
                        maps, truths, threshold=t, radius_px=radius, min_distance_px=min_distance_px
                    )["f1"]
                    for t in F1_GRID
                ]
                return float(F1_GRID[int(np.argmax(f1))])
            warnings.warn(
                "threshold max_f1: no validation image has truth points; using the ROC point",
                stacklevel=2,
            )
        if y.min() == y.max():
            return float(model.threshold)  # one class only: keep the previous threshold
        return float(best_threshold(y, probs))


# --------------------------------------------------------------------------------------------
# Slide predictor


class WeakLocaliserPredictor:
    """Points and a heatmap per tile from a trained weak localiser (the Predictor contract).

    ``predict`` gives, per tile, the points of :func:`map_to_points` at ``threshold`` by the
    model's point rule (tile pixels), the image probability as ``tile_score`` and the upsampled
    sigmoid map as ``heatmap`` (at the tile's resolution).

    Attributes:
        tile_size: ``data.input_size`` of the training run (250 when it was null).
        tile_multiple: 16, the map's stride: the model reads tiles of any multiple of it.
        threshold: The map threshold: the model's stored one unless set (the slide engine sets
            an explicit threshold here: ``thresholds_maps``).
        mpp: ``data.mpp`` of the training run.
    """

    thresholds_maps = True

    def __init__(self, model: nn.Module, cfg: Mapping[str, Any], device: torch.device) -> None:
        data = (cfg.get("extra") or {}).get("data") or {}
        self.task = cfg["task"]
        self.tile_size = int(data.get("input_size") or DEFAULT_TILE)
        self.tile_multiple = STRIDE  # fully convolutional: any multiple of the stride fits
        self.mpp = model_mpp(dict(cfg))
        self.device = torch.device(device)
        self.model = _unwrap(model).to(self.device).eval()
        self.threshold = float(self.model.threshold)

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        """Predictions for a ``Bx3xHxW`` float batch in [0, 1]."""
        probs, heat = self.model.localise(batch.to(self.device))
        probs = probs.float().cpu().numpy()
        heat = heat.float().cpu().numpy()
        return [
            TilePrediction(
                points=map_to_points(
                    h, self.threshold, min_distance_px=self.model.min_distance_px(self.mpp)
                ),
                tile_score=float(p),
                heatmap=h.astype(np.float32),
            )
            for p, h in zip(probs, heat, strict=True)
        ]


@register_predictor(WEAK_LOCALISER)
def _predictor_factory(
    model: nn.Module, cfg: dict[str, Any], device: torch.device
) -> WeakLocaliserPredictor:
    return WeakLocaliserPredictor(model, cfg, device)


__all__ = [
    "AGGREGATIONS",
    "F1_GRID",
    "STRIDE",
    "THRESHOLD_RULES",
    "TTA_VIEWS",
    "WEAK_LOCALISER",
    "WeakImageDataset",
    "WeakLocaliser",
    "WeakLocaliserPredictor",
    "WeakLocaliserTask",
    "WeakSource",
    "OFFSET_RULES",
    "POINT_RULES",
    "build_weak_localiser",
    "collate_images",
    "estimate_map_offset",
    "map_to_points",
    "pooled_point_scores",
    "read_image_labels",
    "read_weak_source",
    "upsample_map",
]

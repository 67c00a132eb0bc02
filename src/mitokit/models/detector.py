"""The detection formulation of the crowd-label study (third paper): Det, Det-NS, Det-WL, Det-NS-WL.

Importing this module registers the task ``detector`` with the engine and its
:class:`~mitokit.models.predictors.Predictor` for slide inference.

Model: torchvision's Faster R-CNN with a ResNet-FPN backbone (:func:`build_detector`) and two
classes (background, mitosis), built offline (``weights=None``; initial weights only from a local
file). Two changes to torchvision's detector, both invisible in its state dict (so torchvision
and mitokit detector weights load into each other):

- :class:`TileTransform`: with ``min_size: null`` (the default) tiles keep their size; torchvision
  would resample a 250-pixel tile to 800. The ImageNet normalisation stays inside the model.
- :class:`WeightedRoIHeads`: the box head's classification loss weights each sampled proposal
  by the agreement of the box it matches (``targets[i]["weights"]``; background proposals
  weigh 1): ``sum_j w_j CE_j / n`` over the ``n`` sampled proposals, so weights of 1 give
  torchvision's loss exactly. This is Det-WL (``agreement_weighted: true``); boxes are never
  duplicated. The box regression and the RPN losses are unweighted.

The four variants are one task with two switches: ``data.negative_ratio`` (0: positive tiles
only, Det; >= 1: that many negative tiles per positive draw, Det-NS) and
``model.agreement_weighted`` (Det-WL, Det-NS-WL).

Detection contract (DESIGN.md): images ``list[Tensor 3xHxW in [0, 1]]``; targets
``list[dict(boxes float [K, 4] xyxy, labels int64 [K], weights float [K])]``; training returns
a loss dict, eval per-image dicts with ``boxes``, ``labels`` and ``scores``. A tile without
objects has ``boxes`` of shape ``(0, 4)`` and trains as background.

Model section (``model``):

- ``arch``: ``resnet50`` (the papers'), ``resnet34`` or ``resnet18`` (lighter, for CPU).
- ``weights``: null (random) or a local ``.safetensors`` / ``.pt`` / ``.pth`` file, read
  without running code: a whole detector's state dict (torchvision's key names, e.g. a
  mitokit detector or a torchvision Faster R-CNN; a box predictor of another class count is
  skipped) or a backbone-only ResNet state dict (ImageNet weights; its ``fc`` is ignored).
- ``norm``: ``batch`` (trainable batch norm; needed to train from random weights, where a
  frozen identity norm lets a ResNet-50's activations grow until the loss diverges) or
  ``frozen`` (``FrozenBatchNorm2d``, torchvision's set-up for fine-tuning ImageNet weights).
  Either way validation leaves the weights and statistics untouched (see ``evaluate``).
- ``trainable_layers``: ResNet stages trained, counted from the top (0-5, as torchvision);
  null: 3 with a weights file, 5 without. Batch norms of frozen stages stay in eval mode.
- ``agreement_weighted``: weight the classification loss by agreement (WL).
- ``min_size`` / ``max_size``: torchvision's resizing (null: keep the tile size).
- ``box_score_thresh``, ``box_nms_thresh``, ``box_detections_per_img``: inference settings;
  ``centre_suppression`` (default true): after the box NMS (by IoU), a detection whose centre
  lies inside a higher-scoring kept box, or whose box holds that box's centre, is dropped
  (:func:`suppress_centres`): a small box nested in a large one on the same figure has a low
  IoU with it and survives the NMS, yet counts the figure twice as a point;
  ``box_batch_size_per_image``: proposals sampled per tile for the box head's loss;
  ``rpn_post_nms_top_n_test``: proposals the box head scores per tile at inference.

Data section (``data``): the labels and images are those of the tile formulations
(:mod:`mitokit.models.tasks_tile`: a label file :func:`~mitokit.io.annotations.read_annotations`
reads, or a ``mitokit synth tiles`` folder, whose ``crowd.json`` is used), cut into
``tile_size`` tiles at ``stride``, split by image, drawn events-first with ``negative_ratio``
negative tiles per positive draw (:class:`~mitokit.data.sampling.EventTileSampler`), augmented
by HED jitter and flips / quarter turns (boxes follow). Further keys:

- ``mpp`` (0.25): microns per pixel of the images; saved with the model so slide inference
  reads slides at the training resolution.
- ``point_box_um`` (12.5): side of the square box a point-only label gets (50 px at 0.25).
- ``min_box_fraction`` (0.2): a box clipped by the tile stays a target only when more than this
  fraction of it is inside (every box whose centre is inside is kept).
- ``val_labels``: the truth of the validation F1 (default: the training labels), e.g. a
  ``consensus.json``; objects of class mitosis with an agreement of at least
  ``val_min_agreement`` (0.5; objects without an agreement count) are true.
- ``match_radius_um`` (7.5, MIDOG) and ``f1_threshold`` (0.5) of the validation F1.

Validation (``evaluate``): the detection losses, computed in training mode (torchvision returns
losses only there) with every batch norm in eval mode and the random proposal sampling under a
fixed, forked seed, so the pass changes neither the model nor any random stream; then box
centres in eval mode matched one-to-one within ``match_radius_um`` to the truth centres inside
each tile (:func:`~mitokit.metrics.detection.evaluate_points`, every tile counted on its own):
precision, recall and F1 at ``f1_threshold``, and the best F1 over score thresholds with its
threshold (:func:`~mitokit.metrics.detection.sweep_thresholds`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet, read_annotations
from mitokit.models._common import (
    WorkerDraws,
    apply_dihedral,
    check_fraction,
    check_int,
    dihedral_boxes,
    draw_dihedral,
    evaluating,
    merge_section,
)
from mitokit.models.backbones import ARCHS, IMAGENET_MEAN, IMAGENET_STD, read_state_dict
from mitokit.models.predictors import TilePrediction, model_mpp, register_predictor
from mitokit.models.tasks_tile import (
    _ImageOpener,
    event_tile_training_set,
    grid_tiles,
    read_tile_source,
    resolve_labels,
    split_images,
)
from mitokit.types import MITOSIS

DETECTOR = "detector"
NORMS = ("batch", "frozen")
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # torchvision's training order


# --------------------------------------------------------------------------------------------
# Model


def weighted_fastrcnn_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: Sequence[torch.Tensor],
    regression_targets: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's Fast R-CNN loss with a weight per sampled proposal on its classification.

    Args:
        class_logits: ``(N, C)`` logits of the sampled proposals of all images.
        box_regression: ``(N, 4 C)`` box deltas.
        labels: Per image, the class of each sampled proposal (0 = background).
        regression_targets: Per image, ``(n_i, 4)`` encoded targets.
        weights: Per image, the weight of each sampled proposal.

    Returns:
        ``(classification, box)``: ``sum_j w_j CE_j / N`` (torchvision's mean cross entropy
        when every weight is 1) and torchvision's unweighted smooth-L1 box loss.
    """
    labels_all = torch.cat(list(labels), dim=0)
    targets_all = torch.cat(list(regression_targets), dim=0)
    w = torch.cat(list(weights), dim=0).to(class_logits.dtype)
    ce = F.cross_entropy(class_logits, labels_all, reduction="none")
    classification = (w * ce).sum() / labels_all.numel()
    positive = torch.where(labels_all > 0)[0]
    n = class_logits.shape[0]
    deltas = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box_loss = F.smooth_l1_loss(
        deltas[positive, labels_all[positive]],
        targets_all[positive],
        beta=1 / 9,
        reduction="sum",
    )
    return classification, box_loss / labels_all.numel()


class WeightedRoIHeads(RoIHeads):
    """torchvision's box head whose classification loss weighs proposals by box agreement.

    Args:
        *args: :class:`torchvision.models.detection.roi_heads.RoIHeads`'s box arguments.
        agreement_weighted: Use the targets' ``weights``; False gives torchvision's loss.
        **kwargs: Further ``RoIHeads`` arguments.
    """

    def __init__(self, *args: Any, agreement_weighted: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agreement_weighted = bool(agreement_weighted)

    def select_training_samples(  # type: ignore[override]
        self,
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None,
    ) -> tuple[
        list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list
    ]:
        """torchvision's sampling, plus the weight of each sampled proposal.

        A foreground proposal takes the ``weights`` entry of the ground-truth box it matched
        (1 when the target has no ``weights`` or weighting is off); background proposals 1.
        """
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(
            proposals, targets
        )
        weights: list[torch.Tensor] = []
        for target, idx, lab in zip(targets or [], matched_idxs, labels, strict=True):
            w = torch.ones(lab.shape, dtype=torch.float32, device=lab.device)
            gt_w = target.get("weights")
            if self.agreement_weighted and gt_w is not None and gt_w.numel():
                fg = lab > 0
                w[fg] = gt_w.to(device=w.device, dtype=w.dtype)[idx[fg]]
            weights.append(w)
        return proposals, matched_idxs, labels, regression_targets, weights

    def forward(  # type: ignore[override]
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Boxes only (no masks, no keypoints): losses in training, detections otherwise."""
        if targets is not None:
            for t in targets:
                if not t["boxes"].is_floating_point():
                    raise TypeError(f"target boxes must be float, got {t['boxes'].dtype}")
                if t["labels"].dtype != torch.int64:
                    raise TypeError(f"target labels must be int64, got {t['labels'].dtype}")
        if self.training:
            proposals, _, labels, regression_targets, weights = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            cls_loss, box_loss = weighted_fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets, weights
            )
            return [], {"loss_classifier": cls_loss, "loss_box_reg": box_loss}
        boxes, scores, classes = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes
        )
        result = [
            {"boxes": b, "labels": c, "scores": s}
            for b, s, c in zip(boxes, scores, classes, strict=True)
        ]
        return result, {}


class TileTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform that can leave the image size alone.

    Args:
        min_size: torchvision's ``min_size``, or None to keep every image's size (tiles are
            then only normalised and padded to a multiple of 32 for the batch).
        max_size: torchvision's ``max_size`` (default 1333) when ``min_size`` is given.
    """

    def __init__(self, min_size: int | None = None, max_size: int | None = None) -> None:
        super().__init__(
            800 if min_size is None else int(min_size),
            1333 if max_size is None else int(max_size),
            list(IMAGENET_MEAN),
            list(IMAGENET_STD),
        )
        self.keep_size = min_size is None

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The image as it is with ``min_size=None``; torchvision's resizing otherwise."""
        if self.keep_size:
            return image, target
        return super().resize(image, target)


class MitosisDetector(FasterRCNN):
    """Faster R-CNN on a ResNet-FPN with :class:`TileTransform` and :class:`WeightedRoIHeads`.

    Built by :func:`build_detector`; ``train()`` keeps the batch norms of frozen backbone
    stages in eval mode, so their statistics stay what the weights file gave.

    Attributes:
        arch: The ResNet.
        norm: ``batch`` or ``frozen``.
        trainable_layers: ResNet stages trained (0-5).
    """

    def __init__(
        self,
        arch: str,
        *,
        norm: str,
        trainable_layers: int,
        agreement_weighted: bool,
        min_size: int | None,
        max_size: int | None,
        box_score_thresh: float,
        box_nms_thresh: float,
        box_detections_per_img: int,
        box_batch_size_per_image: int,
        rpn_post_nms_top_n_test: int,
        centre_suppression: bool = True,
    ) -> None:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
        from torchvision.ops.misc import FrozenBatchNorm2d

        backbone = resnet_fpn_backbone(
            backbone_name=arch,
            weights=None,
            norm_layer=nn.BatchNorm2d if norm == "batch" else FrozenBatchNorm2d,
            trainable_layers=trainable_layers,
        )
        super().__init__(
            backbone,
            num_classes=2,
            box_score_thresh=box_score_thresh,
            box_nms_thresh=box_nms_thresh,
            box_detections_per_img=box_detections_per_img,
            box_batch_size_per_image=box_batch_size_per_image,
            rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        )
        old = self.roi_heads
        self.roi_heads = WeightedRoIHeads(
            old.box_roi_pool,
            old.box_head,
            old.box_predictor,
            old.proposal_matcher.high_threshold,
            old.proposal_matcher.low_threshold,
            old.fg_bg_sampler.batch_size_per_image,
            old.fg_bg_sampler.positive_fraction,
            old.box_coder.weights,
            old.score_thresh,
            old.nms_thresh,
            old.detections_per_img,
            agreement_weighted=agreement_weighted,
        )
        self.transform = TileTransform(min_size, max_size)
        self.centre_suppression = bool(centre_suppression)
        self.arch = arch
        self.norm = norm
        self.trainable_layers = int(trainable_layers)
        trained = set(_STAGES[: self.trainable_layers])
        if self.trainable_layers == 5:
            trained.add("bn1")
        body = self.backbone.body
        self._frozen_norms = [
            m
            for name, child in body.named_children()
            if name not in trained
            for m in child.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]

    def train(self, mode: bool = True) -> MitosisDetector:
        """Train / eval mode; batch norms of frozen backbone stages always evaluate."""
        super().train(mode)
        for m in self._frozen_norms:
            m.eval()
        return self


def build_detector(
    arch: str = "resnet50",
    *,
    weights: str | Path | None = None,
    norm: str = "batch",
    trainable_layers: int | None = None,
    agreement_weighted: bool = False,
    min_size: int | None = None,
    max_size: int | None = None,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    box_batch_size_per_image: int = 512,
    rpn_post_nms_top_n_test: int = 1000,
    centre_suppression: bool = True,
) -> MitosisDetector:
    """A two-class Faster R-CNN ResNet-FPN, random or initialised from a local file.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        weights: A local detector or backbone state dict (see :func:`load_detector_weights`),
            or None for random weights. Never downloaded.
        norm: ``batch`` or ``frozen`` (see the module docstring).
        trainable_layers: ResNet stages trained from the top (0-5); None: 3 with ``weights``,
            5 without (as torchvision).
        agreement_weighted: Weight the box classification loss by the targets' ``weights``.
        min_size: torchvision's resize target, or None to keep the input size.
        max_size: torchvision's ``max_size`` (with ``min_size``).
        box_score_thresh: Detections below this score are dropped.
        box_nms_thresh: IoU of the non-maximum suppression of detections.
        box_detections_per_img: Most detections kept per image.
        box_batch_size_per_image: Proposals sampled per image for the box head's loss.
        rpn_post_nms_top_n_test: Proposals per image the box head scores at inference (the
            box head's cost grows with it; a few hundred suffice for mitoses on a tile).
        centre_suppression: Drop detections centred inside a higher-scoring one (or holding
            its centre) after the NMS: :func:`suppress_centres`, applied by :func:`detect`.

    Raises:
        MitokitError: Bad settings, or a weights file that is missing, unreadable or does not
            fit (the message names the file).
    """
    if arch not in ARCHS:
        raise MitokitError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if norm not in NORMS:
        raise MitokitError(f"model.norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if trainable_layers is None:
        trainable_layers = 5 if weights is None else 3
    layers = check_int(trainable_layers, "model.trainable_layers", minimum=0)
    if layers > 5:
        raise MitokitError(f"model.trainable_layers must be in [0, 5], got {layers}")
    if not isinstance(agreement_weighted, bool):
        raise MitokitError(
            f"model.agreement_weighted must be true or false, got {agreement_weighted!r}"
        )
    if not isinstance(centre_suppression, bool):
        raise MitokitError(
            f"model.centre_suppression must be true or false, got {centre_suppression!r}"
        )
    min_size = check_int(min_size, "model.min_size", minimum=16, allow_none=True)
    max_size = check_int(max_size, "model.max_size", minimum=16, allow_none=True)
    if max_size is not None and min_size is None:
        raise MitokitError("model.max_size needs model.min_size (null keeps the tile size)")
    model = MitosisDetector(
        arch,
        norm=norm,
        trainable_layers=layers,
        agreement_weighted=agreement_weighted,
        min_size=min_size,
        max_size=max_size,
        box_score_thresh=check_fraction(box_score_thresh, "model.box_score_thresh", high=0.999),
        box_nms_thresh=check_fraction(box_nms_thresh, "model.box_nms_thresh", low=0.01),
        box_detections_per_img=check_int(
            box_detections_per_img, "model.box_detections_per_img", minimum=1
        ),
        box_batch_size_per_image=check_int(
            box_batch_size_per_image, "model.box_batch_size_per_image", minimum=1
        ),
        rpn_post_nms_top_n_test=check_int(
            rpn_post_nms_top_n_test, "model.rpn_post_nms_top_n_test", minimum=1
        ),
        centre_suppression=centre_suppression,
    )
    if weights is not None:
        load_detector_weights(model, weights)
    return model


def _describe_mismatch(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str
) -> str | None:
    """``None`` when ``state`` fits ``own``; otherwise the first problems, in words."""
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
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
        problem = _describe_mismatch(own_check, state, f"a {model.arch} Faster R-CNN")
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
        problem = _describe_mismatch(own, state, f"a {model.arch} backbone")
        kind = "backbone"
    if problem:
        raise input_error(path, problem)
    with torch.no_grad():
        own = target.state_dict()
        target.load_state_dict(
            {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}, strict=False
        )
    return {"kind": kind, "loaded": len(state), "skipped": skipped}


# --------------------------------------------------------------------------------------------
# Prediction and point scores


def box_centres(result: Mapping[str, torch.Tensor]) -> np.ndarray:
    """``(N, 3)`` float64 ``x, y, score`` of a detector's per-image result (box centres)."""
    boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = result["scores"].detach().float().cpu().numpy().reshape(-1)
    centres = np.column_stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, scores]
    )
    return centres.astype(np.float64).reshape(-1, 3)


def detect(
    model: nn.Module,
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Box centres with scores of each image: ``(N, 3)`` arrays of ``x, y, score``.

    Args:
        model: A detector (run in eval mode without gradients; its mode is restored).
        images: ``3xHxW`` float tensors in [0, 1] (a ``Bx3xHxW`` batch is split).
        device: Where to run (default: where the model is).
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    with evaluating(model):
        outs = model([im.to(dev) for im in images])
    if getattr(getattr(model, "module", model), "centre_suppression", False):  # DDP: .module
        outs = [suppress_centres(o) for o in outs]
    return [box_centres(o) for o in outs]


def suppress_centres(result: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detector's per-image result without detections centred on a better one.

    Greedy, highest score first: a detection is dropped when its box centre lies inside a kept
    box or a kept box's centre lies inside its box (edges inclusive). Boxes nested on one
    figure, which the IoU-based NMS keeps when their sizes differ, then give one point.

    Args:
        result: ``boxes`` (``[N, 4]`` ``x1, y1, x2, y2``), ``scores`` and any other per-box
            entries (``labels``), as torchvision's detectors return them.

    Returns:
        The same entries, kept boxes only, highest score first.
    """
    boxes, scores = result["boxes"], result["scores"]
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].detach().float().cpu()
    centres = (b[:, :2] + b[:, 2:]) / 2
    # inside[i, j]: the centre of i lies in the box of j
    inside = (
        (centres[:, None, 0] >= b[None, :, 0])
        & (centres[:, None, 0] <= b[None, :, 2])
        & (centres[:, None, 1] >= b[None, :, 1])
        & (centres[:, None, 1] <= b[None, :, 3])
    )
    clash = (inside | inside.T).numpy()
    dropped = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):  # one vector OR per kept box, not one lookup per pair
        if not dropped[i]:
            keep.append(i)
            dropped |= clash[i]
    kept = order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]
    return {k: v[kept] for k, v in result.items()}


def point_scores(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    *,
    radius_px: float,
    threshold: float,
) -> dict[str, float]:
    """Point precision, recall and F1 of scored points against true points, image by image.

    Args:
        pred: Image key -> ``(N, 3)`` ``x, y, score``.
        truth: Image key -> ``(M, 2)`` ``x, y``.
        radius_px: Matching radius in pixels (one-to-one, optimal; see
            :func:`~mitokit.metrics.detection.match_points`).
        threshold: Score threshold of ``precision``, ``recall`` and ``f1``.

    Returns:
        ``precision``, ``recall``, ``f1`` (pooled over images), ``tp``, ``fp``, ``fn``,
        ``best_f1`` and ``best_threshold`` over every score threshold (the F1 at
        ``threshold`` and NaN when there is no prediction), ``n_truth`` and ``n_pred``.
    """
    from mitokit.io.annotations import Annotation, ImageInfo
    from mitokit.metrics.detection import default_thresholds, evaluate_points, sweep_thresholds

    keys = sorted(set(pred) | set(truth))
    p_anns, t_anns = [], []
    for key in keys:
        for i, (x, y, s) in enumerate(np.asarray(pred.get(key, np.zeros((0, 3)))).reshape(-1, 3)):
            p_anns.append(
                Annotation(f"{key}/p{i}", key, point=(float(x), float(y)), score=float(s))
            )
        for j, (x, y) in enumerate(np.asarray(truth.get(key, np.zeros((0, 2)))).reshape(-1, 2)):
            t_anns.append(Annotation(f"{key}/t{j}", key, point=(float(x), float(y))))
    images = {k: ImageInfo(k) for k in keys}
    p_set, t_set = AnnotationSet(p_anns, dict(images)), AnnotationSet(t_anns, dict(images))
    at = evaluate_points(p_set, t_set, radius_px=radius_px, threshold=threshold)
    if p_anns:  # the observed scores, and ``threshold`` (which may keep none)
        grid = np.append(default_thresholds([a.score for a in p_anns]), float(threshold))
        sweep = sweep_thresholds(p_set, t_set, radius_px=radius_px, thresholds=grid)
        best_f1, best_t = sweep.best_f1, sweep.best_threshold
    else:
        best_f1, best_t = at.f1, math.nan
    return {
        "precision": at.precision,
        "recall": at.recall,
        "f1": at.f1,
        "tp": float(at.tp),
        "fp": float(at.fp),
        "fn": float(at.fn),
        "best_f1": float(best_f1),
        "best_threshold": float(best_t),
        "n_truth": float(len(t_anns)),
        "n_pred": float(len(p_anns)),
    }


class DetectorPredictor:
    """Slide inference with a detector: box centres as points, the best score as tile score."""

    def __init__(self, model: nn.Module, cfg: dict[str, Any], device: torch.device) -> None:
        data = (cfg.get("extra") or {}).get("data") or {}
        self.task = cfg["task"]
        self.tile_size = int(data.get("tile_size") or 250)
        self.mpp = model_mpp(cfg)
        self.device = device
        self.model = model.to(device).eval()

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        """Points (``x, y, score`` in tile pixels) and tile score of each tile of the batch."""
        out = []
        for points in detect(self.model, batch, device=self.device):
            score = float(points[:, 2].max()) if len(points) else 0.0
            out.append(TilePrediction(points=points, tile_score=score))
        return out


@register_predictor(DETECTOR)
def _predictor(model: nn.Module, cfg: dict[str, Any], device: torch.device) -> DetectorPredictor:
    return DetectorPredictor(model, cfg, device)


# --------------------------------------------------------------------------------------------
# Data


class DetectionTileDataset(Dataset):
    """Tiles with boxes, labels and weights, optionally flipped / turned with their boxes.

    Items: ``image`` (float ``3xHxW``), ``boxes`` (float32 ``[K, 4]`` tile pixels), ``labels``
    (int64 ``[K]``, 1), ``weights`` (float32 ``[K]``, the agreements), ``image_id``, ``tile``
    (int64 ``[4]``, level-0 box), ``index`` and, with ``truth``, ``truth`` (float32 ``[M, 2]``:
    the true centres inside the tile, in tile pixels).

    Args:
        tiles: The :class:`~mitokit.data.datasets.TileDataset` read from.
        flips: Random flips / quarter turns of square tiles (boxes follow).
        draws: The seeded generator of the flips (shared with the tiles' colour jitter).
        truth: Image id -> ``(M, 2)`` level-0 centres of the true objects (validation).
        radius_px: Matching radius of the validation F1, in pixels.
        threshold: Score threshold of the validation F1.
    """

    def __init__(
        self,
        tiles: Any,
        *,
        flips: bool = False,
        draws: WorkerDraws | None = None,
        truth: Mapping[str, np.ndarray] | None = None,
        radius_px: float = 30.0,
        threshold: float = 0.5,
    ) -> None:
        self.tiles = tiles
        self.flips = bool(flips)
        self.draws = draws if draws is not None else WorkerDraws(0)
        self.truth = None if truth is None else {k: np.asarray(v) for k, v in truth.items()}
        self.radius_px = float(radius_px)
        self.threshold = float(threshold)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.draws.get()  # reseeds first in a new worker (shared with the colour jitter)
        item = self.tiles[index]
        image, boxes = item["image"], item["boxes"]
        h, w = image.shape[-2:]
        if self.flips and h == w:
            k, flip = draw_dihedral(rng)
            arr = apply_dihedral(image.permute(1, 2, 0).numpy(), k, flip)
            image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            moved = dihedral_boxes(boxes.numpy(), k, flip, width=w, height=h)
            boxes = torch.as_tensor(moved, dtype=torch.float32).reshape(-1, 4)
        out = {
            "image": image,
            "boxes": boxes,
            "labels": item["labels"],
            "weights": item["weights"],
            "image_id": item["image_id"],
            "tile": item["tile"],
            "index": item["index"],
        }
        if self.truth is not None:
            x1, y1, x2, y2 = (float(v) for v in item["tile"])
            pts = self.truth.get(str(item["image_id"]), np.zeros((0, 2))).reshape(-1, 2)
            inside = (pts[:, 0] >= x1) & (pts[:, 0] < x2) & (pts[:, 1] >= y1) & (pts[:, 1] < y2)
            local = pts[inside] - np.array([x1, y1])
            out["truth"] = torch.as_tensor(local, dtype=torch.float32).reshape(-1, 2)
        return out


def truth_centres(annotations: AnnotationSet, *, min_agreement: float) -> dict[str, np.ndarray]:
    """Image id -> ``(M, 2)`` centres of the mitoses with agreement >= ``min_agreement``.

    Objects without an agreement (consensus labels) count.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    for ann in annotations:
        if ann.label != MITOSIS:
            continue
        if ann.agreement is not None and ann.agreement < min_agreement:
            continue
        out.setdefault(ann.image, []).append(ann.center)
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in out.items()}


def _targets_to(targets: Sequence[Mapping[str, Any]], device: torch.device) -> list[dict]:
    """The tensors the detector reads (``weights`` 1 where a target has none), on ``device``."""
    out = []
    for t in targets:
        boxes = t["boxes"].to(device).float().reshape(-1, 4)
        weights = t.get("weights")
        if weights is None:
            weights = torch.ones(len(boxes))
        out.append(
            {
                "boxes": boxes,
                "labels": t["labels"].to(device).long(),
                "weights": weights.to(device).float(),
            }
        )
    return out


@register_task(DETECTOR)
class DetectorTask:
    """Det / Det-NS / Det-WL / Det-NS-WL: Faster R-CNN on tiles drawn events-first."""

    name = DETECTOR
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet50",
        "weights": None,
        "norm": "batch",
        "trainable_layers": None,
        "agreement_weighted": False,
        "min_size": None,
        "max_size": None,
        "box_score_thresh": 0.05,
        "box_nms_thresh": 0.5,
        "box_detections_per_img": 100,
        "box_batch_size_per_image": 512,
        "rpn_post_nms_top_n_test": 1000,
        "centre_suppression": True,
    }
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "mpp": 0.25,
        "point_box_um": 12.5,
        "tile_size": 250,
        "stride": 125,
        "min_box_fraction": 0.2,
        "default_agreement": 1.0,
        "negative_ratio": 0,
        "val_fraction": 0.2,
        "val_images": None,
        "split_seed": 0,
        "epoch_length": None,
        "augment": True,
        "hed_sigma": 0.05,
        "hed_bias": 0.01,
        "n_max": None,
        "val_labels": None,
        "val_min_agreement": 0.5,
        "match_radius_um": 7.5,
        "f1_threshold": 0.5,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> nn.Module:
        """The detector of the ``model`` section (see the module docstring)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_detector(**cfg)

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Tiles of the training images drawn events-first; every tile of the validation images.

        Raises:
            MitokitError: Missing labels or images, bad settings, or no event (or, with
                negatives asked for, no negative tile) among the training tiles.
        """
        from mitokit.data.datasets import TileDataset, collate_detection
        from mitokit.metrics.detection import radius_to_px

        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError("data.labels is required (boxes or points, optionally agreement)")
        tile_size = check_int(cfg["tile_size"], "data.tile_size", minimum=16)
        stride = check_int(cfg["stride"], "data.stride", minimum=1)
        ratio = check_int(cfg["negative_ratio"], "data.negative_ratio", minimum=0)
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        epoch_length = check_int(
            cfg["epoch_length"], "data.epoch_length", minimum=1, allow_none=True
        )
        val_fraction = check_fraction(cfg["val_fraction"], "data.val_fraction", high=0.9)
        mpp = _positive(cfg["mpp"], "data.mpp")
        point_box = _positive(cfg["point_box_um"], "data.point_box_um") / mpp
        radius = radius_to_px(_positive(cfg["match_radius_um"], "data.match_radius_um"), mpp=mpp)
        min_fraction = check_fraction(cfg["min_box_fraction"], "data.min_box_fraction", high=0.99)
        f1_threshold = check_fraction(cfg["f1_threshold"], "data.f1_threshold")
        min_agreement = check_fraction(cfg["val_min_agreement"], "data.val_min_agreement")

        source = read_tile_source(cfg["labels"], images=cfg["images"])
        ids = source.image_ids[:n_max] if n_max else source.image_ids
        train_ids, val_ids = split_images(
            ids, val_fraction=val_fraction, val_images=cfg["val_images"], seed=split_seed
        )
        opener = _ImageOpener(source.paths)
        common = {
            "point_box_size": point_box,
            "label": MITOSIS,
            "default_agreement": float(cfg["default_agreement"]),
            "min_box_fraction": min_fraction,
        }
        train_base, sampler, draws = event_tile_training_set(
            source,
            train_ids,
            opener,
            common,
            tile_size=tile_size,
            stride=stride,
            cfg=cfg,
            ratio=ratio,
            epoch_length=epoch_length,
            seed=seed,
        )
        train = DetectionTileDataset(train_base, flips=bool(cfg["augment"]), draws=draws)
        val = None
        val_tiles = grid_tiles(source, val_ids, tile_size=tile_size, stride=stride)
        truth_source = source.labels
        if val_tiles:
            if cfg["val_labels"] is None:
                truth_anns = source.annotations
            else:
                truth_source = resolve_labels(cfg["val_labels"])
                truth_anns = read_annotations(truth_source)
            val = DetectionTileDataset(
                TileDataset(val_tiles, opener, source.annotations, **common),
                truth=truth_centres(truth_anns, min_agreement=min_agreement),
                radius_px=radius,
                threshold=f1_threshold,
            )
        info = {
            "labels": str(source.labels),
            "val_truth": str(truth_source),
            "negative_ratio": ratio,
            "tile_size": tile_size,
            "stride": stride,
            "mpp": mpp,
            "point_box_px": point_box,
            "match_radius_px": radius,
            "train_images": train_ids,
            "val_images": val_ids,
            "n_train_tiles": len(train_base.tiles),
            "n_val_tiles": len(val_tiles),
            "n_events": int(sampler.n_events),
            "n_negative_tiles": int(len(sampler.negative_tiles)),
            "epoch_length": int(sampler.epoch_length),
        }
        return TaskData(
            train=train, val=val, train_sampler=sampler, collate=collate_detection, info=info
        )

    def loss(
        self, model: nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of torchvision's four detection losses (the box classification weighted)."""
        images, targets = batch
        losses = model([im.to(device) for im in images], _targets_to(targets, device))
        total = sum(losses.values())
        figures = {k: float(v.detach()) for k, v in losses.items()}
        figures["boxes_per_tile"] = float(np.mean([len(t["boxes"]) for t in targets]))
        return total, figures

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device) -> dict[str, float]:
        """Mean detection loss (and its parts); point precision, recall, F1 and best F1."""
        dataset = getattr(loader, "dataset", None)
        radius = float(getattr(dataset, "radius_px", 30.0))
        threshold = float(getattr(dataset, "threshold", 0.5))
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        n_batches = 0
        pred: dict[str, np.ndarray] = {}
        truth: dict[str, np.ndarray] = {}
        was = model.training
        try:
            for b, (images, targets) in enumerate(loader):
                ims = [im.to(device) for im in images]
                with torch.no_grad(), _loss_mode(model, device, seed=b):
                    losses = model(ims, _targets_to(targets, device))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_batches += 1
                for t, points in zip(targets, detect(model, ims, device=device), strict=True):
                    key = f"{t['image_id']}#{int(t['index'])}"
                    pred[key] = points
                    truth[key] = t["truth"].double().numpy() if "truth" in t else np.zeros((0, 2))
        finally:
            model.train(was)
        if n_batches == 0:
            return {"loss": math.nan, "f1": math.nan, "best_f1": math.nan}
        out = {k: v / n_batches for k, v in sums.items()}
        out["loss"] = float(sum(out[k] for k in sums))
        scores = point_scores(pred, truth, radius_px=radius, threshold=threshold)
        out.update({k: scores[k] for k in ("precision", "recall", "f1", "best_f1")})
        out["best_threshold"] = scores["best_threshold"]
        out["n_truth"] = scores["n_truth"]
        out["n_tiles"] = float(len(pred))
        return out


@contextlib.contextmanager
def _loss_mode(model: nn.Module, device: torch.device, *, seed: int) -> Iterator[None]:
    """Training mode with every batch norm evaluating and proposal sampling under a fixed seed.

    torchvision returns losses only in training mode; this makes that pass side-effect free:
    no batch-norm statistic moves and the global random streams (CPU, and the device's) come
    out as they went in. The model is left in eval mode.
    """
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.default_generator.manual_seed(int(seed))
        if dev.type == "cuda":
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(int(seed))
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        try:
            yield
        finally:
            model.eval()


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MitokitError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise MitokitError(f"{name} must be a positive number, got {value!r}")
    return v


__all__ = [
    "DETECTOR",
    "DetectionTileDataset",
    "DetectorPredictor",
    "DetectorTask",
    "MitosisDetector",
    "TileTransform",
    "WeightedRoIHeads",
    "box_centres",
    "suppress_centres",
    "build_detector",
    "detect",
    "load_detector_weights",
    "point_scores",
    "truth_centres",
    "weighted_fastrcnn_loss",
]

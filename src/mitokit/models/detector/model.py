"""The detector's network: torchvision's Faster R-CNN with the weighted RoI heads, and its builder.

:class:`MitosisDetector` is a two-class Faster R-CNN on a ResNet-FPN with :class:`TileTransform`
(tiles keep their size) and :class:`WeightedRoIHeads` (the box classification loss weighted by
agreement, Det-WL); :func:`build_detector` checks the ``model`` settings and builds it. See
:mod:`mitokit.models.detector` for the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from mitokit.errors import MitokitError
from mitokit.models._common import check_fraction, check_int
from mitokit.models.backbones import ARCHS, IMAGENET_MEAN, IMAGENET_STD
from mitokit.models.detector.weights import load_detector_weights

NORMS = ("batch", "frozen")
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # torchvision's training order


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
    layers, min_size, max_size = _check_layout(
        arch,
        weights=weights,
        norm=norm,
        trainable_layers=trainable_layers,
        agreement_weighted=agreement_weighted,
        centre_suppression=centre_suppression,
        min_size=min_size,
        max_size=max_size,
    )
    model = MitosisDetector(
        arch,
        norm=norm,
        trainable_layers=layers,
        agreement_weighted=agreement_weighted,
        min_size=min_size,
        max_size=max_size,
        **_box_settings(
            box_score_thresh=box_score_thresh,
            box_nms_thresh=box_nms_thresh,
            box_detections_per_img=box_detections_per_img,
            box_batch_size_per_image=box_batch_size_per_image,
            rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        ),
        centre_suppression=centre_suppression,
    )
    if weights is not None:
        load_detector_weights(model, weights)
    return model


def _check_layout(
    arch: str,
    *,
    weights: str | Path | None,
    norm: str,
    trainable_layers: int | None,
    agreement_weighted: bool,
    centre_suppression: bool,
    min_size: int | None,
    max_size: int | None,
) -> tuple[int, int | None, int | None]:
    """The checked network settings of :func:`build_detector`: ``(layers, min_size, max_size)``.

    ``layers`` is ``trainable_layers`` with None resolved (3 with ``weights``, 5 without).

    Raises:
        MitokitError: The first bad setting, in the order of the arguments.
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
    return layers, min_size, max_size


def _box_settings(
    *,
    box_score_thresh: float,
    box_nms_thresh: float,
    box_detections_per_img: int,
    box_batch_size_per_image: int,
    rpn_post_nms_top_n_test: int,
) -> dict[str, Any]:
    """The checked box head and RPN settings of :func:`build_detector`, as its keywords.

    Raises:
        MitokitError: The first bad setting, in the order of the arguments.
    """
    return {
        "box_score_thresh": check_fraction(box_score_thresh, "model.box_score_thresh", high=0.999),
        "box_nms_thresh": check_fraction(box_nms_thresh, "model.box_nms_thresh", low=0.01),
        "box_detections_per_img": check_int(
            box_detections_per_img, "model.box_detections_per_img", minimum=1
        ),
        "box_batch_size_per_image": check_int(
            box_batch_size_per_image, "model.box_batch_size_per_image", minimum=1
        ),
        "rpn_post_nms_top_n_test": check_int(
            rpn_post_nms_top_n_test, "model.rpn_post_nms_top_n_test", minimum=1
        ),
    }
